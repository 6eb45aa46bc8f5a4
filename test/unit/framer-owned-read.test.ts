import { describe, expect, it } from 'vitest';
import { MIN_READ_BYTES, MessageFramer, READ_SLAB_BYTES, type BackendMessage } from '../../src/protocol';
import { ProtocolError } from '../../src/errors';

/** One backend message on the wire: code, length word, body. */
function wire(code: number, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = code;
  h.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}

/** Deterministic pseudo-random integers (xorshift), so a failure reproduces. */
function rng(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/** Feeds `stream` through the owned-read API in reads of random size, as a socket would. */
function readOwned(framer: MessageFramer, stream: Buffer, seed: number): BackendMessage[] {
  const rand = rng(seed);
  const out: BackendMessage[] = [];
  let off = 0;
  while (off < stream.length) {
    const target = framer.readBuffer();
    expect(target.length).toBe(MIN_READ_BYTES);
    const n = Math.min(1 + rand(target.length), stream.length - off);
    stream.copy(target, 0, off, off + n);
    off += n;
    framer.received(n);
    for (let m = framer.next(); m; m = framer.next()) out.push(m);
  }
  return out;
}

describe('MessageFramer owned-read mode (socket reads into framer memory)', () => {
  it('returns every message intact, across reads and slab boundaries, and bodies stay valid after later reads', () => {
    const rand = rng(7);
    const messages: { code: number; body: Buffer }[] = [];
    for (let i = 0; i < 400; i++) {
      const len = i % 50 === 0 ? 0 : i % 97 === 0 ? 200_000 : 1 + rand(40_000);
      const body = Buffer.alloc(len);
      for (let j = 0; j < len; j += 997) body[j] = (i + j) & 0xff;
      messages.push({ code: 0x64, body });
    }
    const stream = Buffer.concat(messages.map((m) => wire(m.code, m.body)));
    expect(stream.length).toBeGreaterThan(4 * READ_SLAB_BYTES);
    const framer = new MessageFramer();
    const got = readOwned(framer, stream, 99);
    expect(got).toHaveLength(messages.length);
    // Compared only at the end: a body handed out early must not have been overwritten by later reads.
    for (let i = 0; i < messages.length; i++) {
      expect(got[i]!.code).toBe(0x64);
      expect(got[i]!.body.equals(messages[i]!.body)).toBe(true);
    }
    expect(framer.bufferedBytes).toBe(0);
    expect(framer.midMessage).toBe(false);
  });

  it('a message longer than a slab is assembled whole', () => {
    const body = Buffer.alloc(3 * READ_SLAB_BYTES + 123, 0x5a);
    const framer = new MessageFramer();
    const got = readOwned(framer, Buffer.concat([wire(0x64, body), wire(0x63, Buffer.alloc(0))]), 3);
    expect(got.map((m) => m.code)).toEqual([0x64, 0x63]);
    expect(got[0]!.body.equals(body)).toBe(true);
  });

  it('a length word above maxMessageBytes fails at the header (PROTOCOL_MESSAGE_TOO_LONG), and keeps failing', () => {
    const framer = new MessageFramer({ maxMessageBytes: 1024 });
    const target = framer.readBuffer();
    wire(0x64, Buffer.alloc(2048)).copy(target, 0, 0, 5);
    framer.received(5);
    expect(() => framer.next()).toThrow(ProtocolError);
    try {
      framer.next();
    } catch (e) {
      expect((e as ProtocolError).code).toBe('PROTOCOL_MESSAGE_TOO_LONG');
    }
    // Asking for more read memory after the failure does not throw (the socket is destroyed by the caller).
    expect(framer.readBuffer().length).toBe(MIN_READ_BYTES);
  });

  it('takeReceived hands out what arrived (for pg before the takeover) and the framer then starts after it', () => {
    const framer = new MessageFramer();
    const first = wire(0x5a, Buffer.from('I'));
    let target = framer.readBuffer();
    first.copy(target);
    framer.received(first.length);
    const taken = framer.takeReceived();
    expect(taken.equals(first)).toBe(true);
    expect(framer.bufferedBytes).toBe(0);
    const second = wire(0x64, Buffer.from('abc'));
    target = framer.readBuffer();
    second.copy(target);
    framer.received(second.length);
    const m = framer.next();
    expect(m?.body.toString()).toBe('abc');
    expect(taken.equals(first)).toBe(true);
  });

  describe('slab leases', () => {
    /** 600 messages of 1..40000 bytes with recognisable contents: several READ_SLAB_BYTES slabs. */
    function workload(seed: number): Buffer[] {
      const rand = rng(seed);
      const bodies: Buffer[] = [];
      for (let i = 0; i < 600; i++) {
        const len = 1 + rand(40_000);
        const body = Buffer.alloc(len);
        for (let j = 0; j < len; j += 13) body[j] = (i * 7 + j) & 0xff;
        bodies.push(body);
      }
      return bodies;
    }

    /**
     * Feeds the bodies in random reads; `onMessage` decides per body (lease or not) and may release
     * earlier leases. Returns each body's slab (its ArrayBuffer) in order.
     */
    function run(
      framer: MessageFramer,
      bodies: Buffer[],
      seed: number,
      onMessage: (m: BackendMessage, index: number) => void,
    ): ArrayBufferLike[] {
      const stream = Buffer.concat(bodies.map((b) => wire(0x64, b)));
      const rand = rng(seed);
      const slabs: ArrayBufferLike[] = [];
      let off = 0;
      while (off < stream.length) {
        const target = framer.readBuffer();
        const n = Math.min(1 + rand(target.length), stream.length - off);
        stream.copy(target, 0, off, off + n);
        off += n;
        framer.received(n);
        for (let m = framer.next(); m; m = framer.next()) {
          slabs.push(m.body.buffer);
          onMessage(m, slabs.length - 1);
        }
      }
      return slabs;
    }

    /** The slabs that bodies came from again after bodies from another slab came in between. */
    function reusedSlabs(slabs: ArrayBufferLike[]): Set<ArrayBufferLike> {
      const seen = new Set<ArrayBufferLike>();
      const reused = new Set<ArrayBufferLike>();
      for (let i = 0; i < slabs.length; i++) {
        if (i > 0 && slabs[i] === slabs[i - 1]) continue;
        if (seen.has(slabs[i]!)) reused.add(slabs[i]!);
        seen.add(slabs[i]!);
      }
      return reused;
    }

    it('a slab whose every body was released is read into again', () => {
      const bodies = workload(3);
      const framer = new MessageFramer();
      const copies: Buffer[] = [];
      const slabs = run(framer, bodies, 5, (m) => {
        const release = framer.leaseLast();
        expect(release).toBeTypeOf('function');
        copies.push(Buffer.from(m.body)); // the consumer copies, then releases
        release!();
        release!(); // twice is harmless
      });
      expect(copies).toHaveLength(bodies.length);
      for (let i = 0; i < bodies.length; i++) expect(copies[i]!.equals(bodies[i]!)).toBe(true);
      expect(framer.slabsReused).toBeGreaterThan(5);
      expect(reusedSlabs(slabs).size).toBeGreaterThan(0);
    });

    it('a body held (leased and not released, or never leased) is never overwritten, and its slab never reused', () => {
      const bodies = workload(11);
      const framer = new MessageFramer();
      const rand = rng(13);
      const held = new Map<number, Buffer>();
      const pending: { release: () => void; at: number }[] = [];
      const slabs = run(framer, bodies, 17, (m, i) => {
        const choice = rand(200);
        if (choice === 0) {
          held.set(i, m.body); // never leased
        } else if (choice === 1) {
          framer.leaseLast(); // leased, never released
          held.set(i, m.body);
        } else {
          // Released a little later, as a consumer with a queue would.
          pending.push({ release: framer.leaseLast()!, at: i + 1 + rand(40) });
          while (pending.length > 0 && pending[0]!.at <= i) pending.shift()!.release();
          pending.sort((a, b) => a.at - b.at);
        }
      });
      expect(held.size).toBeGreaterThan(3);
      for (const [i, body] of held) expect(body.equals(bodies[i]!)).toBe(true);
      // Once reads moved on from a held body's slab, no later body comes from that slab.
      for (const i of held.keys()) {
        let j = i;
        while (j < slabs.length && slabs[j] === slabs[i]) j++;
        expect(slabs.indexOf(slabs[i]!, j)).toBe(-1);
      }
      expect(reusedSlabs(slabs).size).toBeGreaterThan(0); // slabs without held bodies were reused
    });

    it('without leases nothing is reused; push mode has no leases', () => {
      const framer = new MessageFramer();
      run(framer, workload(19), 23, () => undefined);
      expect(framer.slabsReused).toBe(0);
      const pushed = new MessageFramer();
      pushed.push(wire(0x64, Buffer.from('abc')));
      expect(pushed.next()?.body.toString()).toBe('abc');
      expect(pushed.leaseLast()).toBeUndefined();
    });
  });
});
