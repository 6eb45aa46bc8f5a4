import { describe, expect, it } from 'vitest';
import { MessageFramer, type BackendMessage } from '../../src/protocol';
import { ProtocolError } from '../../src/errors';
import { fixtureIndex, loadFixture } from './protocol-fixtures';

function frameChunks(chunks: Buffer[], maxMessageBytes?: number): BackendMessage[] {
  const f = new MessageFramer(maxMessageBytes ? { maxMessageBytes } : {});
  const out: BackendMessage[] = [];
  for (const c of chunks) {
    f.push(c);
    for (let m = f.next(); m; m = f.next()) out.push(m);
  }
  if (f.midMessage || f.bufferedBytes !== 0) throw new Error('framer left bytes over');
  return out;
}

function sameMessages(a: BackendMessage[], b: BackendMessage[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.code !== b[i]!.code || !a[i]!.body.equals(b[i]!.body)) return false;
  }
  return true;
}

/** Deterministic pseudo-random offsets (xorshift), so a failure reproduces. */
function offsets(n: number, count: number, seed = 12345): number[] {
  let x = seed;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.push(Math.abs(x) % n);
  }
  return out;
}

describe('MessageFramer on captured streams', () => {
  for (const fx of fixtureIndex()) {
    describe(fx.file, () => {
      const bytes = loadFixture(fx.file);
      const whole = frameChunks([bytes]);

      it('frames the whole stream into the recorded number of messages, re-encoding to the same bytes', () => {
        expect(whole.length).toBe(fx.messages);
        const reencoded = Buffer.concat(
          whole.map((m) => {
            const h = Buffer.alloc(5);
            h[0] = m.code;
            h.writeInt32BE(m.body.length + 4, 1);
            return Buffer.concat([h, m.body]);
          }),
        );
        expect(reencoded.equals(bytes)).toBe(true);
      });

      it('gives the same messages fed byte by byte', () => {
        const chunks: Buffer[] = [];
        for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1));
        expect(sameMessages(frameChunks(chunks), whole)).toBe(true);
      });

      it('gives the same messages split in two at every offset (large streams: near boundaries and sampled)', () => {
        let splits: number[];
        if (bytes.length <= 16_384) {
          splits = Array.from({ length: bytes.length + 1 }, (_, i) => i);
        } else {
          const s = new Set<number>();
          for (let i = 0; i <= 2048; i++) {
            s.add(i);
            s.add(bytes.length - i);
          }
          let pos = 0;
          for (const m of whole) {
            for (let d = -8; d <= 8; d++) s.add(pos + d);
            pos += 5 + m.body.length;
          }
          for (const o of offsets(bytes.length, 1000)) s.add(o);
          splits = [...s].filter((i) => i >= 0 && i <= bytes.length);
        }
        for (const at of splits) {
          const got = frameChunks([bytes.subarray(0, at), bytes.subarray(at)]);
          if (!sameMessages(got, whole)) throw new Error(`split at ${at} differs`);
        }
      });

      it('gives the same messages in random-sized chunks', () => {
        const chunks: Buffer[] = [];
        let pos = 0;
        for (const len of offsets(997, 100000, 777)) {
          if (pos >= bytes.length) break;
          chunks.push(bytes.subarray(pos, pos + len + 1));
          pos += len + 1;
        }
        expect(sameMessages(frameChunks(chunks), whole)).toBe(true);
      });
    });
  }
});

describe('MessageFramer bounds', () => {
  it('rejects a declared length above maxMessageBytes as soon as the header is complete, before buffering', () => {
    const f = new MessageFramer({ maxMessageBytes: 1024 });
    const header = Buffer.from([0x64, 0x7f, 0xff, 0xff, 0xff]); // CopyData of ~2 GiB
    f.push(header.subarray(0, 3));
    expect(f.next()).toBeUndefined();
    f.push(header.subarray(3));
    const err = (() => {
      try {
        f.next();
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('PROTOCOL_MESSAGE_TOO_LONG');
    // It stays failed.
    expect(() => f.next()).toThrow(ProtocolError);
  });

  it('accepts a message exactly at maxMessageBytes and refuses one byte more', () => {
    const ok = Buffer.alloc(5 + 100);
    ok[0] = 0x64;
    ok.writeInt32BE(104, 1);
    expect(frameChunks([ok], 100)).toHaveLength(1);
    const tooLong = Buffer.alloc(5 + 101);
    tooLong[0] = 0x64;
    tooLong.writeInt32BE(105, 1);
    const f = new MessageFramer({ maxMessageBytes: 100 });
    f.push(tooLong.subarray(0, 5));
    expect(() => f.next()).toThrow(expect.objectContaining({ code: 'PROTOCOL_MESSAGE_TOO_LONG' }));
  });

  it('rejects a length word below 4 as malformed', () => {
    const f = new MessageFramer();
    f.push(Buffer.from([0x5a, 0, 0, 0, 3, 0x49]));
    expect(() => f.next()).toThrow(expect.objectContaining({ code: 'PROTOCOL_MALFORMED_MESSAGE' }));
  });

  it('reports a stream cut mid-message', () => {
    const f = new MessageFramer();
    f.push(Buffer.from([0x64, 0, 0, 0, 20, 1, 2, 3]));
    expect(f.next()).toBeUndefined();
    expect(f.midMessage).toBe(true);
    expect(f.bufferedBytes).toBe(8);
  });

  it('keeps bodies intact after later chunks arrive (no buffer reuse)', () => {
    const f = new MessageFramer();
    const mk = (fill: number, n: number): Buffer => {
      const b = Buffer.alloc(5 + n, fill);
      b[0] = 0x64;
      b.writeInt32BE(n + 4, 1);
      return b;
    };
    const stream = Buffer.concat([mk(1, 10), mk(2, 30), mk(3, 10)]);
    const kept: BackendMessage[] = [];
    // Split so that the second message spans chunks.
    f.push(Buffer.from(stream.subarray(0, 25)));
    for (let m = f.next(); m; m = f.next()) kept.push(m);
    f.push(Buffer.from(stream.subarray(25)));
    for (let m = f.next(); m; m = f.next()) kept.push(m);
    f.push(Buffer.from(stream)); // more traffic
    while (f.next());
    expect(kept.map((m) => [...new Set(m.body)])).toEqual([[1], [2], [3]]);
  });
});
