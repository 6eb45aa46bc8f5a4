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
});
