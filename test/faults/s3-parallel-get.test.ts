/**
 * Whole-object reads of the s3 driver as parallel ranged GETs (src/storage/s3-parallel-get.ts),
 * against the real Swift s3api server behind the fault-injecting proxy: content equal to what was
 * stored across range boundaries and odd sizes, abort mid-read, a failing range retried on its own.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { AbortError, StorageError } from '../../src/errors';
import type { PgarkEvent } from '../../src/observe';
import { createS3Storage, type S3StorageOptions } from '../../src/storage/s3-storage';
import type { Storage } from '../../src/storage/storage';
import { startFaultProxy, type FaultProxy } from '../harness/fault-proxy';
import { createTestBucket, type TestBucket } from '../harness/s3';

/** Not a divisor of the sizes below, and not aligned with the 5 MiB multipart parts. */
const RANGE = 100_003;

function content(size: number, seed = 3): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed;
  for (let i = 0; i < size; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let proxy: FaultProxy;
let b: TestBucket;
let events: PgarkEvent[];
const opened: Storage[] = [];

function storageVia(extra: Partial<S3StorageOptions> = {}): Storage {
  const s = createS3Storage({
    ...b.storageOptions,
    endpoint: proxy.endpoint,
    partSizeBytes: 5 * 1024 * 1024,
    retryBaseDelayMs: 10,
    readRangeBytes: RANGE,
    readConcurrency: 3,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  opened.push(s);
  return s;
}

const rangedGets = (): string[] =>
  proxy.requests.filter((r) => r.method === 'GET' && !r.url.includes('list-type')).map((r) => r.url);

beforeEach(async () => {
  proxy = await startFaultProxy({ target: inject('s3').endpoint });
  b = await createTestBucket({ name: 'pgark-pget' });
  events = [];
});

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await b.cleanup();
  await proxy.stop();
});

describe('s3 get as parallel ranged GETs', () => {
  it('returns the stored bytes for 0, 1, range-1, range, range+1 and multi-range odd sizes', async () => {
    const s = storageVia();
    const sizes = [0, 1, RANGE - 1, RANGE, RANGE + 1, 7 * RANGE + 12_345, 6 * 1024 * 1024 + 17];
    for (const [i, size] of sizes.entries()) {
      const data = content(size, i + 1);
      await s.put(`obj-${size}`, data);
      for (const chunk of [undefined, 4096, 1024 * 1024]) {
        const got = await readAll(await s.get(`obj-${size}`, chunk ? { readChunkBytes: chunk } : {}));
        expect(got.length, `size ${size}`).toBe(size);
        expect(sha(got), `size ${size}`).toBe(sha(data));
      }
    }
    // The multi-range objects really were read in ranges.
    expect(rangedGets().length).toBeGreaterThan(sizes.length * 3);
  });

  it('hands out chunks of about readChunkBytes, and a byte range still reads one stream', async () => {
    const s = storageVia();
    const data = content(3 * RANGE + 5);
    await s.put('obj', data);
    const chunks: Buffer[] = [];
    for await (const c of await s.get('obj', { readChunkBytes: 10_000 })) chunks.push(c as Buffer);
    // One chunk per push; a paused reader's read() may join the (at most two) buffered chunks.
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(20_000);
    expect(sha(Buffer.concat(chunks))).toBe(sha(data));
    const part = await readAll(await s.get('obj', { range: { start: RANGE - 3, end: 2 * RANGE + 3 } }));
    expect(part.equals(data.subarray(RANGE - 3, 2 * RANGE + 4))).toBe(true);
  });

  it('a missing key rejects get() with STORAGE_NOT_FOUND', async () => {
    const err = await storageVia()
      .get('absent')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe('STORAGE_NOT_FOUND');
  });

  it('a range failing with 500 or a reset is retried on its own; the content is unchanged', async () => {
    const s = storageVia();
    const data = content(9 * RANGE + 1);
    await s.put('obj', data);
    for (const rule of [{ status: 500 }, { reset: true }]) {
      events = [];
      proxy.failNext({
        ...rule,
        match: (r) => r.method === 'GET' && r.headers.range === `bytes=${4 * RANGE}-${5 * RANGE - 1}`,
      });
      const got = await readAll(await s.get('obj'));
      expect(sha(got)).toBe(sha(data));
      expect(events.filter((e) => e.type === 'storage.retry')).toHaveLength(1);
    }
    expect(proxy.injectedCount()).toBe(2);
  });

  it('a range failing more often than maxAttempts fails the stream with a StorageError', async () => {
    const s = storageVia({ maxAttempts: 2 });
    const data = content(6 * RANGE);
    await s.put('obj', data);
    proxy.failNext({
      status: 503,
      count: 5,
      match: (r) => r.method === 'GET' && r.headers.range === `bytes=${3 * RANGE}-${4 * RANGE - 1}`,
    });
    const err = await readAll(await s.get('obj')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe('STORAGE_UNAVAILABLE');
  });

  it('an abort mid-read fails the stream with AbortError and starts no more ranges', async () => {
    const s = storageVia({ readConcurrency: 2 });
    await s.put('obj', content(40 * RANGE));
    const ac = new AbortController();
    const stream = await s.get('obj', { signal: ac.signal });
    let read = 0;
    const err = await (async () => {
      for await (const c of stream) {
        read += (c as Buffer).length;
        if (read > 2 * RANGE) ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    // Requests sent before the abort may reach the proxy a little later: settle, then compare.
    await new Promise((r) => setTimeout(r, 300));
    const started = rangedGets().length;
    await new Promise((r) => setTimeout(r, 300));
    expect(rangedGets().length).toBe(started);
    expect(started).toBeLessThanOrEqual(6);
  });

  it('a reader that stops early cancels the ranges in flight', async () => {
    const s = storageVia({ readConcurrency: 2 });
    await s.put('obj', content(40 * RANGE));
    const stream = await s.get('obj');
    for await (const c of stream) {
      expect((c as Buffer).length).toBeGreaterThan(0);
      break;
    }
    await new Promise((r) => setTimeout(r, 300));
    const started = rangedGets().length;
    await new Promise((r) => setTimeout(r, 300));
    expect(rangedGets().length).toBe(started);
    expect(started).toBeLessThanOrEqual(3);
    expect(stream.destroyed).toBe(true);
  });

  it('readConcurrency 1 reads one GetObject stream', async () => {
    const s = storageVia({ readConcurrency: 1 });
    const data = content(5 * RANGE);
    await s.put('obj', data);
    const before = rangedGets().length;
    expect(sha(await readAll(await s.get('obj')))).toBe(sha(data));
    expect(rangedGets().length - before).toBe(1);
  });
});
