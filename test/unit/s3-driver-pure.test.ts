/**
 * Pure parts of the s3 driver: part planning, location parsing, SDK error mapping and the part
 * source. No server needed (the driver's behaviour against a real store is in test/integration).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AbortError, ConfigError, StorageError } from '../../src/errors';
import { parseS3Location } from '../../src/storage/location';
import { toStorageError } from '../../src/storage/s3-errors';
import {
  MAX_PARTS,
  MIN_PART_SIZE,
  partSizeAt,
  planCapacity,
  planParts,
} from '../../src/storage/s3-part-plan';
import { PartBufferPool } from '../../src/storage/s3-part-pool';
import { streamPartSource } from '../../src/storage/s3-part-source';
import { attachChunkRelease } from '../../src/storage/chunk-release';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const TIB = 1024 * GIB;

describe('part planning', () => {
  it('keeps the configured size when the length fits, grows it when not', () => {
    expect(planParts(16 * MIB, 1 * GIB).baseSize).toBe(16 * MIB);
    const big = planParts(16 * MIB, 5 * TIB);
    expect(Math.ceil((5 * TIB) / big.baseSize)).toBeLessThanOrEqual(MAX_PARTS);
    expect(planParts(1, 10).baseSize).toBe(MIN_PART_SIZE);
  });
  it('an exact length never needs more than 10,000 parts', () => {
    for (const len of [0, 1, 16 * MIB * 10_000 + 1, 777 * GIB, 5 * TIB]) {
      const plan = planParts(16 * MIB, len);
      expect(planCapacity(plan)).toBeGreaterThanOrEqual(len);
    }
  });
  it('a hint fits in 5,000 parts and leaves room for a stream well beyond it', () => {
    const plan = planParts(16 * MIB, undefined, 1 * TIB);
    expect(plan.baseSize * 5_000).toBeGreaterThanOrEqual(1 * TIB);
    expect(planCapacity(plan)).toBeGreaterThanOrEqual(5 * TIB);
  });
  it('with nothing known, 16 MiB parts still reach S3s 5 TiB object limit', () => {
    const plan = planParts(16 * MIB);
    expect(partSizeAt(plan, 1)).toBe(16 * MIB);
    expect(partSizeAt(plan, 1000)).toBe(16 * MIB);
    expect(partSizeAt(plan, 1001)).toBe(32 * MIB);
    expect(planCapacity(plan)).toBeGreaterThanOrEqual(5 * TIB);
  });
});

describe('parseS3Location', () => {
  it('parses bucket and prefix', () => {
    expect(parseS3Location('s3://backups')).toEqual({ bucket: 'backups', prefix: '' });
    expect(parseS3Location('s3://backups/')).toEqual({ bucket: 'backups', prefix: '' });
    expect(parseS3Location('s3://backups/prod/db1/')).toEqual({ bucket: 'backups', prefix: 'prod/db1' });
  });
  it('rejects other schemes and bad names with CONFIG_INVALID_LOCATION', () => {
    for (const bad of [
      '/var/lib/x',
      'http://b/p',
      's3://',
      's3:///p',
      's3://b/../x',
      's3://b//x',
      's3://b c/x',
    ]) {
      let err: unknown;
      try {
        parseS3Location(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('CONFIG_INVALID_LOCATION');
    }
  });
});

describe('SDK error mapping', () => {
  const ctx = { operation: 'get', bucket: 'b', key: 'k', secrets: ['s3cr3tValue'] };
  const sdk = (name: string, status?: number, extra: Record<string, unknown> = {}) =>
    Object.assign(new Error(`${name} happened with s3cr3tValue`), {
      name,
      $metadata: { httpStatusCode: status },
      ...extra,
    });

  it.each([
    ['SignatureDoesNotMatch', 403, 'STORAGE_ACCESS_DENIED', false],
    ['InvalidAccessKeyId', 403, 'STORAGE_ACCESS_DENIED', false],
    ['AccessDenied', 403, 'STORAGE_ACCESS_DENIED', false],
    ['NoSuchBucket', 404, 'STORAGE_BUCKET_NOT_FOUND', false],
    ['NoSuchKey', 404, 'STORAGE_NOT_FOUND', false],
    ['NotFound', 404, 'STORAGE_NOT_FOUND', false],
    ['InvalidRequest', 412, 'STORAGE_CONFLICT', false],
    ['InvalidRange', 416, 'STORAGE_INVALID_RANGE', false],
    ['InternalError', 500, 'STORAGE_UNAVAILABLE', true],
    ['SlowDown', 503, 'STORAGE_UNAVAILABLE', true],
    ['RequestTimeout', 400, 'STORAGE_UNAVAILABLE', true],
    ['MalformedXML', 400, 'STORAGE_IO', false],
  ])('%s (%s) -> %s', (name, status, code, retryable) => {
    const err = toStorageError(sdk(name, status), ctx) as StorageError;
    expect(err).toBeInstanceOf(StorageError);
    expect(err.code).toBe(code);
    expect(err.retryable).toBe(retryable);
    expect(err.httpStatus).toBe(status);
    expect(err.key).toBe('k');
    expect(JSON.stringify(err.toJSON())).not.toContain('s3cr3tValue');
    expect(String((err.cause as Error).message)).not.toContain('s3cr3tValue');
  });

  it('network errors without an answer are retryable STORAGE_UNAVAILABLE', () => {
    for (const code of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT']) {
      const err = toStorageError(Object.assign(new Error('socket hang up'), { code }), ctx) as StorageError;
      expect(err.code).toBe('STORAGE_UNAVAILABLE');
      expect(err.retryable).toBe(true);
      expect(err.httpStatus).toBeUndefined();
    }
    const timeout = toStorageError(
      Object.assign(new Error('timed out'), { name: 'TimeoutError' }),
      ctx,
    ) as StorageError;
    expect(timeout.code).toBe('STORAGE_UNAVAILABLE');
  });

  it('an SDK abort becomes AbortError', () => {
    expect(toStorageError(Object.assign(new Error('aborted'), { name: 'AbortError' }), ctx)).toBeInstanceOf(
      AbortError,
    );
  });
});

describe('stream part source', () => {
  it('cuts any chunking into exact parts and hashes every byte', async () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 31) % 251));
    for (const chunk of [1, 7, 1000, 4096, 10_000]) {
      const chunks: Buffer[] = [];
      for (let o = 0; o < data.length; o += chunk) chunks.push(data.subarray(o, o + chunk));
      const src = streamPartSource(Readable.from(chunks), new PartBufferPool(2));
      const parts: Buffer[] = [];
      for (;;) {
        const p = await src.next(3000);
        if (p.data.length === 0) break;
        parts.push(Buffer.from(p.data));
        p.release();
        if (p.data.length < 3000) break;
      }
      expect(parts.map((p) => p.length)).toEqual([3000, 3000, 3000, 1000]);
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      expect(src.bytesRead).toBe(data.length);
      expect(src.digest()).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });
});

describe('stream part source: chunk release', () => {
  it('releases a chunk once its last byte is in a part, a whole-part chunk only with its part, each once', async () => {
    const released: number[] = [];
    const chunks = [100, 250, 50, 300, 300].map((n, i) => {
      const c = Buffer.alloc(n, i + 1);
      attachChunkRelease(c, () => released.push(i));
      return c;
    });
    const plain = Buffer.alloc(40, 9); // no release attached: nothing happens
    const src = streamPartSource(Readable.from([...chunks, plain]), new PartBufferPool(2));
    const p1 = await src.next(300); // 100 + 200 of chunk 1
    expect(released).toEqual([0]);
    const p2 = await src.next(100); // the rest of chunk 1 (50) + chunk 2 (50)
    expect(released).toEqual([0, 1, 2]);
    const p3 = await src.next(300); // chunk 3 is exactly one part: handed out as is
    expect(p3.data.buffer).toBe(chunks[3]!.buffer);
    expect(released).toEqual([0, 1, 2]);
    p3.release();
    p3.release();
    expect(released).toEqual([0, 1, 2, 3]);
    const p4 = await src.next(1000); // chunk 4 + the plain one, then the end
    expect(p4.data.length).toBe(340);
    expect(released).toEqual([0, 1, 2, 3, 4]);
    for (const p of [p1, p2, p4]) p.release();
    expect(released).toEqual([0, 1, 2, 3, 4]);
    expect(src.digest()).toBe(
      createHash('sha256')
        .update(Buffer.concat([...chunks, plain]))
        .digest('hex'),
    );
  });
});

describe('part buffer pool', () => {
  it('hands out views of one slab and reuses released buffers, the last released first', () => {
    const pool = new PartBufferPool(3);
    const a = pool.take(1000);
    const b = pool.take(1000);
    expect(pool.slabBytes).toBe(3000);
    expect(a.buffer).toBe(b.buffer);
    expect(a.length).toBe(1000);
    pool.give(b);
    pool.give(a);
    expect(pool.take(1000)).toBe(a);
    expect(pool.take(1000)).toBe(b);
  });

  it('never blocks: beyond its slots, or for another size while in use, a buffer of its own', () => {
    const pool = new PartBufferPool(2);
    const slab = [pool.take(100), pool.take(100)];
    const extra = pool.take(100);
    expect(extra.buffer).not.toBe(slab[0]!.buffer);
    const other = pool.take(200);
    expect(other.length).toBe(200);
    pool.give(extra); // dropped, not pooled
    pool.give(other);
    for (const b of slab) pool.give(b);
    const again = [pool.take(100), pool.take(100), pool.take(100)];
    expect(again.filter((b) => b.buffer === slab[0]!.buffer)).toHaveLength(2);
  });

  it('moves to a new part size once every buffer is back', () => {
    const pool = new PartBufferPool(2);
    pool.give(pool.take(100));
    const big = pool.take(300);
    expect(pool.slabBytes).toBe(600);
    expect(big.length).toBe(300);
  });

  it('a body failing mid-part gives the buffer back; release twice is harmless', async () => {
    const pool = new PartBufferPool(2);
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(10, 1));
        this.destroy(Object.assign(new Error('boom'), { code: 'EBOOM' }));
      },
    });
    const src = streamPartSource(failing, pool);
    await expect(src.next(100)).rejects.toMatchObject({ code: 'EBOOM' });
    const ok = streamPartSource(Readable.from([Buffer.alloc(50, 2)]), pool);
    const part = await ok.next(100);
    expect(part.data.length).toBe(50);
    part.release();
    part.release();
    const x = pool.take(100);
    const y = pool.take(100);
    expect(x.buffer).toBe(y.buffer); // both slab buffers are free again
  });
});
