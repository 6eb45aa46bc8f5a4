/**
 * The s3 driver under storage faults: a fault-injecting proxy (test/harness/fault-proxy.ts) in front
 * of the real Swift s3api server answers 500 or resets the connection on chosen requests. Asserts
 * retries (as storage.retry events), the error codes when retries run out, that nothing is visible
 * and no multipart upload is left, and that the secret key never shows in errors or events.
 */
import { inspect } from 'node:util';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { StorageError } from '../../src/errors';
import type { PgarkEvent } from '../../src/observe';
import { createS3Storage, type S3StorageOptions } from '../../src/storage/s3-storage';
import type { Storage } from '../../src/storage/storage';
import { isUploadPartNumber, startFaultProxy, type FaultProxy } from '../harness/fault-proxy';
import { createTestBucket, type TestBucket } from '../harness/s3';

const MIB = 1024 * 1024;
const WRONG_SECRET = 'wr0ng-S3cret-Value-for-faults';

function bytes(total: number): Readable {
  let sent = 0;
  let x = 7;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(256 * 1024, total - sent);
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
      sent += n;
      this.push(b);
    },
  });
}

let proxy: FaultProxy;
let b: TestBucket;
let events: PgarkEvent[];
const opened: Storage[] = [];

function storageVia(extra: Partial<S3StorageOptions> = {}): Storage {
  const s = createS3Storage({
    ...b.storageOptions,
    endpoint: proxy.endpoint,
    partSizeBytes: 5 * MIB,
    queueSize: 2,
    retryBaseDelayMs: 10,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  opened.push(s);
  return s;
}

/** Every serialised form of an error a caller might log. */
function serialised(err: unknown): string {
  const e = err as StorageError;
  return [
    JSON.stringify(e.toJSON()),
    JSON.stringify(e),
    inspect(e, { depth: 8 }),
    String(e.stack),
    String(e.cause),
  ].join('\n');
}

beforeEach(async () => {
  const server = inject('s3');
  proxy = await startFaultProxy({ target: server.endpoint });
  b = await createTestBucket({ name: 'pgark-faults' });
  events = [];
});
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await proxy.stop();
  await b.cleanup();
});

describe('s3 driver under injected faults', () => {
  it('retries a part that got a 500 mid-multipart and completes; the retry is an event', async () => {
    const storage = storageVia();
    proxy.failNext({ status: 500, match: isUploadPartNumber(2) });
    const r = await storage.put('retry/500', bytes(13 * MIB));
    expect(r.size).toBe(13 * MIB);
    expect(proxy.injectedCount()).toBe(1);
    const retries = events.filter((e) => e.type === 'storage.retry');
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({
      operation: 'upload-part',
      key: 'retry/500',
      httpStatus: 500,
      code: 'STORAGE_UNAVAILABLE',
      attempt: 1,
    });
    expect(await b.listKeys()).toEqual(['retry/500']);
    expect(await b.openUploads()).toBe(0);
  });

  it('with retries exhausted on a part: STORAGE_UNAVAILABLE retryable, nothing visible, no upload left', async () => {
    const storage = storageVia({ maxAttempts: 3 });
    proxy.failNext({ status: 500, count: 3, match: isUploadPartNumber(2) });
    const err = await storage.put('exhausted/500', bytes(13 * MIB)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err).toMatchObject({
      code: 'STORAGE_UNAVAILABLE',
      retryable: true,
      httpStatus: 500,
      key: 'exhausted/500',
    });
    expect(events.filter((e) => e.type === 'storage.retry')).toHaveLength(2);
    expect(await b.listKeys()).toEqual([]);
    expect(await b.openUploads()).toBe(0);
    expect(serialised(err)).not.toContain('testing');
  });

  it('retries a part whose connection was reset and completes', async () => {
    const storage = storageVia();
    proxy.failNext({ reset: true, match: isUploadPartNumber(1) });
    const r = await storage.put('retry/reset', bytes(11 * MIB));
    expect(r.size).toBe(11 * MIB);
    const retries = events.filter((e) => e.type === 'storage.retry');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0]).toMatchObject({ operation: 'upload-part', code: 'STORAGE_UNAVAILABLE' });
    expect(await b.openUploads()).toBe(0);
  });

  it('with resets on every try: STORAGE_UNAVAILABLE retryable, nothing visible, no upload left', async () => {
    const storage = storageVia({ maxAttempts: 2 });
    proxy.failNext({ reset: true, count: 1000, match: isUploadPartNumber(2) });
    const err = await storage.put('exhausted/reset', bytes(13 * MIB)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORAGE_UNAVAILABLE', retryable: true, key: 'exhausted/reset' });
    expect(await b.listKeys()).toEqual([]);
    expect(await b.openUploads()).toBe(0);
  });

  it('a single PutObject answered 503 is retried', async () => {
    const storage = storageVia();
    proxy.failNext({ status: 503, match: (r) => r.method === 'PUT' });
    await storage.put('single', Buffer.from('x'));
    expect(events.filter((e) => e.type === 'storage.retry')).toMatchObject([
      { operation: 'put', httpStatus: 503 },
    ]);
  });

  it('a 500 on CompleteMultipartUpload is retried and the object is whole', async () => {
    const storage = storageVia();
    proxy.failNext({ status: 500, match: (r) => r.method === 'POST' && /[?&]uploadId=/.test(r.url) });
    const r = await storage.put('complete/500', bytes(11 * MIB), { ifAbsent: true });
    expect(r.size).toBe(11 * MIB);
    expect((await storage.head('complete/500'))?.size).toBe(11 * MIB);
    expect(await b.openUploads()).toBe(0);
  });

  it('wrong credentials give STORAGE_ACCESS_DENIED with 403, and the secret never appears', async () => {
    const storage = storageVia({
      credentials: { accessKeyId: 'test:tester', secretAccessKey: WRONG_SECRET },
    });
    const errs: unknown[] = [];
    errs.push(await storage.put('denied', Buffer.from('x')).catch((e: unknown) => e));
    errs.push(await storage.put('denied-big', bytes(11 * MIB)).catch((e: unknown) => e));
    errs.push(await storage.get('denied').catch((e: unknown) => e));
    errs.push(
      await (async () => {
        for await (const _ of storage.list('')) void _;
      })().catch((e: unknown) => e),
    );
    for (const err of errs) {
      expect(err).toBeInstanceOf(StorageError);
      expect(err).toMatchObject({ code: 'STORAGE_ACCESS_DENIED', httpStatus: 403, retryable: false });
      expect(serialised(err)).not.toContain(WRONG_SECRET);
      expect(serialised(err)).not.toContain('testing');
    }
    expect(JSON.stringify(events)).not.toContain(WRONG_SECRET);
    expect(storage.describe()).not.toContain(WRONG_SECRET);
    expect(await b.listKeys()).toEqual([]);
  });

  it('a missing bucket gives STORAGE_BUCKET_NOT_FOUND', async () => {
    const storage = storageVia({ bucket: `${b.bucket}-absent` });
    for (const call of [
      () => storage.put('k', Buffer.from('x')),
      () => storage.put('k', bytes(11 * MIB)),
      () => storage.get('k'),
      async () => {
        for await (const _ of storage.list('')) void _;
      },
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'STORAGE_BUCKET_NOT_FOUND', httpStatus: 404 });
    }
  });

  it('reading an absent key gives STORAGE_NOT_FOUND', async () => {
    const storage = storageVia();
    const err = await storage.get('absent/key').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect(err).toMatchObject({ code: 'STORAGE_NOT_FOUND', httpStatus: 404, key: 'absent/key' });
  });

  it('no error or event of a failing run carries the secret key', async () => {
    const storage = storageVia({ maxAttempts: 2 });
    proxy.failNext({ status: 500, count: 1000 });
    const errs = [
      await storage.put('s', Buffer.from('x')).catch((e: unknown) => e),
      await storage.get('s').catch((e: unknown) => e),
      await storage.delete(['s']).catch((e: unknown) => e),
    ];
    for (const err of errs) {
      expect(err).toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
      expect(serialised(err)).not.toContain(b.storageOptions.credentials?.secretAccessKey);
    }
    expect(JSON.stringify(events)).not.toContain(b.storageOptions.credentials?.secretAccessKey);
  });
});
