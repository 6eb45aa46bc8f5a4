/**
 * The s3 storage driver: any S3-compatible object store (AWS S3, OpenStack Swift s3api, MinIO, …).
 * Implements the Storage contract of storage.ts; uploads live in s3-upload.ts, error mapping in
 * s3-errors.ts, retries in s3-retry.ts. Depends only on errors/observe and the AWS SDK.
 */
import { PassThrough, type Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
// The SDK's classes, required on first use (start-up cost of every archive-push/fetch process: s3-sdk.ts).
import { DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from './s3-sdk';
import { AbortError, ConfigError, StorageError, throwIfAborted } from '../errors';
import type { ObserveOptions } from '../observe';
import { createS3Client, type S3Credentials } from './s3-client';
import { withContentMd5 } from './s3-content-md5';
import { httpStatusOf, toStorageError, type S3ErrorContext } from './s3-errors';
import { MIN_PART_SIZE } from './s3-part-plan';
import { withRetry, type RetryPolicy } from './s3-retry';
import { uploadObject } from './s3-upload';
import { getObjectInRanges, PARALLEL_GET_DEFAULTS } from './s3-parallel-get';
import { assertValidStorageKey } from './fs-storage';
import type {
  CallOptions,
  GetOptions,
  ListOptions,
  ObjectInfo,
  PutOptions,
  PutResult,
  Storage,
} from './storage';

/** Options of {@link createS3Storage}. */
export interface S3StorageOptions extends ObserveOptions {
  /** Bucket name. The bucket must exist. */
  bucket: string;
  /** Key prefix inside the bucket (`backups/prod`); a trailing `/` is implied. @default '' */
  prefix?: string;
  /** Endpoint URL for stores other than AWS (`http://127.0.0.1:8080`). @default AWS's endpoint for the region */
  endpoint?: string;
  /** @default 'us-east-1' */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`). @default true when `endpoint` is set, else false */
  forcePathStyle?: boolean;
  /** Static credentials. @default the AWS SDK's default credential chain (env, profile, IMDS, …) */
  credentials?: S3Credentials;
  /** Multipart part size; at least 5 MiB. Grown automatically for large bodies. @default 16 MiB */
  partSizeBytes?: number;
  /** Parts uploaded in parallel. Memory is about partSizeBytes x (queueSize + 1). @default 4 */
  queueSize?: number;
  /**
   * When the SDK adds request checksums. `when-supported` makes streamed PutObjects aws-chunked,
   * which some stores (Swift) refuse; the driver only sends Buffer bodies, so both work here.
   * @default 'when-required'
   */
  checksumMode?: 'when-required' | 'when-supported';
  /** Attempts per S3 call, including the first (retryable errors only). @default 4 */
  maxAttempts?: number;
  /** Backoff before the first retry, doubled each time (with jitter, at most 20 s). @default 200 */
  retryBaseDelayMs?: number;
  /**
   * Whole-object reads (`get` without a range) of objects larger than `readRangeBytes` go as this
   * many ranged GETs in flight, reassembled in order (s3-parallel-get.ts); 1 reads one GetObject
   * stream. Memory per read is about `readRangeBytes x (readConcurrency + 1)`. @default 4
   */
  readConcurrency?: number;
  /** Size of one ranged GET of a whole-object read. @default 8 MiB */
  readRangeBytes?: number;
  /** A ready S3Client (tests, custom middleware). The driver does not destroy it on close(). */
  client?: S3Client;
}

export const S3_STORAGE_DEFAULTS = {
  region: 'us-east-1',
  partSizeBytes: 16 * 1024 * 1024,
  queueSize: 4,
  checksumMode: 'when-required',
  maxAttempts: 4,
  retryBaseDelayMs: 200,
} as const;

const DELETE_BATCH = 1000;

function normalisePrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '') return '';
  assertValidStorageKey(p);
  return `${p}/`;
}

function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `s3 storage option ${name} must be an integer >= ${min}`);
  }
  return value;
}

/** `http://user:pw@host:9000/x` → `http://host:9000/x`: an endpoint never carries secrets into text. */
function safeEndpoint(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid endpoint)';
  }
}

/**
 * Creates a Storage backed by an S3-compatible bucket.
 *
 * - `put` makes a key visible whole or not at all: a body of at most one part goes as one
 *   PutObject; anything larger (or of unknown length) as a multipart upload with memory bounded by
 *   `partSizeBytes x (queueSize + 1)`, aborted (after in-flight parts settle) on any failure, and
 *   accepted only when CompleteMultipartUpload returns an ETag. `ifAbsent` uses a conditional
 *   CompleteMultipartUpload (`If-None-Match: *`), which Swift honours though it refuses conditional
 *   PutObject. sha256 and size are computed while streaming.
 * - `get` streams the object or a byte range; `head` returns undefined for an absent key; `list`
 *   pages through ListObjectsV2; `delete` batches DeleteObjects (1000 keys) with Content-MD5.
 * - Retryable failures (5xx, throttling, resets, timeouts) are retried with backoff, each retry
 *   emitted as a `storage.retry` event.
 *
 * Errors: StorageError STORAGE_NOT_FOUND, STORAGE_ACCESS_DENIED, STORAGE_BUCKET_NOT_FOUND,
 * STORAGE_CONFLICT, STORAGE_UNAVAILABLE (retryable), STORAGE_INVALID_RANGE, STORAGE_INVALID_KEY,
 * STORAGE_INCOMPLETE_UPLOAD, STORAGE_IO; AbortError ABORTED; ConfigError CONFIG_INVALID_OPTION.
 * Credentials never appear in errors, events or `describe()`.
 *
 * @example
 * ```ts
 * const storage = createS3Storage({ bucket: 'backups', prefix: 'prod', region: 'eu-west-1' });
 * await storage.put('hello.txt', Buffer.from('hi'));
 * ```
 */
export function createS3Storage(options: S3StorageOptions): Storage {
  if (typeof options?.bucket !== 'string' || options.bucket.length === 0) {
    throw new ConfigError('CONFIG_INVALID_OPTION', 's3 storage needs a bucket name');
  }
  const bucket = options.bucket;
  const prefix = normalisePrefix(options.prefix);
  const region = options.region ?? S3_STORAGE_DEFAULTS.region;
  const partSizeBytes = positiveInt(
    'partSizeBytes',
    options.partSizeBytes,
    S3_STORAGE_DEFAULTS.partSizeBytes,
    MIN_PART_SIZE,
  );
  const queueSize = positiveInt('queueSize', options.queueSize, S3_STORAGE_DEFAULTS.queueSize);
  const retry: RetryPolicy = {
    maxAttempts: positiveInt('maxAttempts', options.maxAttempts, S3_STORAGE_DEFAULTS.maxAttempts),
    baseDelayMs: positiveInt(
      'retryBaseDelayMs',
      options.retryBaseDelayMs,
      S3_STORAGE_DEFAULTS.retryBaseDelayMs,
      0,
    ),
  };
  const readConcurrency = positiveInt(
    'readConcurrency',
    options.readConcurrency,
    PARALLEL_GET_DEFAULTS.concurrency,
  );
  const readRangeBytes = positiveInt(
    'readRangeBytes',
    options.readRangeBytes,
    PARALLEL_GET_DEFAULTS.rangeBytes,
  );
  const checksumMode = options.checksumMode ?? S3_STORAGE_DEFAULTS.checksumMode;
  if (checksumMode !== 'when-required' && checksumMode !== 'when-supported') {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      's3 storage option checksumMode must be when-required or when-supported',
    );
  }
  const ownsClient = options.client === undefined;
  const client =
    options.client ??
    createS3Client({
      endpoint: options.endpoint,
      region,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      checksumMode,
    });
  const secrets = [options.credentials?.secretAccessKey, options.credentials?.sessionToken].filter(
    (s): s is string => typeof s === 'string' && s.length > 0,
  );
  const observe: ObserveOptions = { logger: options.logger, onEvent: options.onEvent };
  const where = `s3://${bucket}/${prefix}`;
  const description =
    options.endpoint !== undefined
      ? `${where} (endpoint ${safeEndpoint(options.endpoint)})`
      : `${where} (region ${region})`;
  let closed = false;

  const ctx = (operation: string, key?: string): S3ErrorContext => ({ operation, bucket, key, secrets });
  const checkOpen = (): void => {
    if (closed) throw new StorageError('STORAGE_IO', `s3 storage ${where} is closed`);
  };
  const objectKey = (key: string): string => {
    assertValidStorageKey(key);
    return prefix + key;
  };

  /** One GetObject stream (a byte range, or the whole object). */
  const singleGet = async (
    key: string,
    fullKey: string,
    signal: AbortSignal | undefined,
    rangeHeader: string | undefined,
  ): Promise<Readable> => {
    const out = await withRetry(ctx('get', key), retry, observe, signal, () =>
      client.send(new GetObjectCommand({ Bucket: bucket, Key: fullKey, Range: rangeHeader }), {
        abortSignal: signal,
      }),
    );
    const body = out.Body as Readable | undefined;
    if (body === undefined) return new PassThrough().end() as unknown as Readable;
    // Errors of the body (a reset mid-transfer) become StorageErrors too.
    const pass = new PassThrough();
    // An abort through the caller's signal mid-read is the caller's doing: AbortError, like every other call.
    body.on('error', (e) =>
      pass.destroy(
        signal?.aborted
          ? new AbortError(`get of ${key} aborted`, { cause: signal.reason })
          : toStorageError(e, ctx('get', key)),
      ),
    );
    pass.on('close', () => {
      if (!body.destroyed) body.destroy();
    });
    body.pipe(pass);
    return pass;
  };

  return {
    kind: 's3',
    describe: () => description,

    async put(key: string, body: Readable | Buffer, putOptions: PutOptions = {}): Promise<PutResult> {
      checkOpen();
      const fullKey = objectKey(key);
      return uploadObject(
        { client, bucket, key, objectKey: fullKey, partSizeBytes, queueSize, retry, observe, secrets },
        body,
        putOptions,
      );
    },

    async get(key: string, getOptions: GetOptions = {}): Promise<Readable> {
      checkOpen();
      const fullKey = objectKey(key);
      const { signal, range } = getOptions;
      let rangeHeader: string | undefined;
      if (range !== undefined) {
        const { start, end } = range;
        if (
          !Number.isSafeInteger(start) ||
          start < 0 ||
          (end !== undefined && (!Number.isSafeInteger(end) || end < start))
        ) {
          throw new StorageError('STORAGE_INVALID_RANGE', `invalid range for ${key}`, { key });
        }
        rangeHeader = `bytes=${start}-${end ?? ''}`;
      }
      if (range === undefined && readConcurrency > 1) {
        return getObjectInRanges(
          {
            client,
            bucket,
            key,
            objectKey: fullKey,
            retry,
            observe,
            secrets,
            rangeBytes: readRangeBytes,
            concurrency: readConcurrency,
            chunkBytes: getOptions.readChunkBytes ?? PARALLEL_GET_DEFAULTS.chunkBytes,
            signal,
          },
          () => singleGet(key, fullKey, signal, undefined),
        );
      }
      return singleGet(key, fullKey, signal, rangeHeader);
    },

    async head(key: string, callOptions: CallOptions = {}): Promise<ObjectInfo | undefined> {
      checkOpen();
      const fullKey = objectKey(key);
      try {
        const out = await withRetry(ctx('head', key), retry, observe, callOptions.signal, () =>
          client.send(new HeadObjectCommand({ Bucket: bucket, Key: fullKey }), {
            abortSignal: callOptions.signal,
          }),
        );
        return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified, etag: out.ETag };
      } catch (e) {
        // HEAD has no body, so a missing bucket also shows as a bare 404 here.
        if (e instanceof StorageError && e.httpStatus === 404 && e.code === 'STORAGE_NOT_FOUND')
          return undefined;
        if (httpStatusOf(e) === 404) return undefined;
        throw e;
      }
    },

    async *list(listPrefix: string, listOptions: ListOptions = {}): AsyncIterable<ObjectInfo> {
      checkOpen();
      if (typeof listPrefix !== 'string' || listPrefix.startsWith('/') || listPrefix.includes('\0')) {
        throw new StorageError('STORAGE_INVALID_KEY', `invalid list prefix ${JSON.stringify(listPrefix)}`, {
          key: listPrefix,
        });
      }
      const { signal } = listOptions;
      const pageSize = Math.min(1000, Math.max(1, listOptions.pageSize ?? 1000));
      let token: string | undefined;
      do {
        throwIfAborted(signal, 'list');
        const page = await withRetry(ctx('list', listPrefix || undefined), retry, observe, signal, () =>
          client.send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: prefix + listPrefix,
              MaxKeys: pageSize,
              ContinuationToken: token,
            }),
            { abortSignal: signal },
          ),
        );
        for (const obj of page.Contents ?? []) {
          if (obj.Key === undefined || !obj.Key.startsWith(prefix)) continue;
          yield {
            key: obj.Key.substring(prefix.length),
            size: obj.Size ?? 0,
            lastModified: obj.LastModified,
            etag: obj.ETag,
          };
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
        if (page.IsTruncated && token === undefined) {
          throw new StorageError(
            'STORAGE_IO',
            `s3 list of ${where}${listPrefix} was truncated without a continuation token`,
          );
        }
      } while (token !== undefined);
    },

    async delete(keys: readonly string[], callOptions: CallOptions = {}): Promise<void> {
      checkOpen();
      const fullKeys = keys.map((k) => objectKey(k));
      for (let i = 0; i < fullKeys.length; i += DELETE_BATCH) {
        throwIfAborted(callOptions.signal, 'delete');
        const batch = fullKeys.slice(i, i + DELETE_BATCH);
        const out = await withRetry(ctx('delete'), retry, observe, callOptions.signal, () =>
          client.send(
            withContentMd5(
              new DeleteObjectsCommand({
                Bucket: bucket,
                Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
              }),
            ),
            { abortSignal: callOptions.signal },
          ),
        );
        const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
        if (failed.length > 0) {
          const first = failed[0];
          const key = first?.Key?.startsWith(prefix) ? first.Key.substring(prefix.length) : first?.Key;
          const code = first?.Code === 'AccessDenied' ? 'STORAGE_ACCESS_DENIED' : 'STORAGE_IO';
          throw new StorageError(
            code,
            `s3 delete of ${failed.length} key(s) failed (${first?.Code ?? 'unknown'})`,
            {
              key,
              retryable: first?.Code === 'InternalError' || first?.Code === 'SlowDown',
            },
          );
        }
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      if (ownsClient) client.destroy();
    },
  };
}
