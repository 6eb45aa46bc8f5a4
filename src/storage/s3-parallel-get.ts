/**
 * Reads a whole S3 object as one in-order stream made of parallel ranged GETs.
 *
 * Why: one GetObject stream is one TCP connection served by one request handler of the store; a
 * store usually serves several ranges of one object at once faster than one long stream (AWS
 * recommends 8-16 MiB ranges in parallel). Against the local Swift of the restore bench (a 512 MiB
 * object stored as 16 MiB multipart segments) 4 ranges of 8 MiB in flight cut the store's CPU per
 * byte by about 30 % (Swift checks the MD5 of a segment read whole, not of a part of one) and the
 * read got faster on the shared 2-core machine: see docs/bench-restore.md.
 *
 * How: the first range (bytes 0..rangeBytes-1) tells the object's size (Content-Range); then up to
 * `concurrency` ranges are in flight, each read whole (as the socket's chunks, not copied), handed
 * out in order (a chunk above `chunkBytes` as subarrays). Memory is bounded: at most `concurrency` ranges in flight
 * plus the one being handed out, i.e. about `(concurrency + 1) x rangeBytes` (default 5 x 8 MiB).
 * The next range is started only when one is handed out, so a slow reader holds no more than that.
 *
 * Each range is retried on its own (request and body, with the driver's RetryPolicy): a reset in
 * the middle of a 2 GB object costs one range, not the whole read. An abort through the caller's
 * signal (or destroying the stream) cancels every range in flight; the stream then fails with
 * AbortError. Every other failure is a StorageError (STORAGE_NOT_FOUND before the stream is
 * returned, as with a single GetObject).
 *
 * Objects are written once in a pgark repository, so the ranges are not pinned to an ETag; the
 * restore checks each object's sha256 and size against the backup catalog anyway.
 */
import { Readable } from 'node:stream';
import type { GetObjectCommandOutput, S3Client } from '@aws-sdk/client-s3';
import { GetObjectCommand } from './s3-sdk';
import { AbortError, StorageError } from '../errors';
import type { ObserveOptions } from '../observe';
import { toStorageError, type S3ErrorContext } from './s3-errors';
import { withRetry, type RetryPolicy } from './s3-retry';

/** Defaults of the ranged read (also the s3 driver's `readRangeBytes`/`readConcurrency` defaults). */
export const PARALLEL_GET_DEFAULTS = {
  /** Smaller than the driver's 16 MiB part size on purpose: see the module comment about Swift. */
  rangeBytes: 8 * 1024 * 1024,
  concurrency: 4,
  chunkBytes: 64 * 1024,
} as const;

export interface ParallelGetParams {
  client: S3Client;
  bucket: string;
  /** The caller's key (errors, events). */
  key: string;
  /** The key in the bucket (with the storage prefix). */
  objectKey: string;
  retry: RetryPolicy;
  observe: ObserveOptions;
  secrets: readonly string[];
  rangeBytes: number;
  concurrency: number;
  /** Size of the chunks handed to the reader (subarrays of a range). */
  chunkBytes: number;
  signal?: AbortSignal;
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+)$/;

/**
 * Reads a response body whole, as the chunks the socket delivered. Not copied into one buffer of
 * the range's size: a fresh multi-MiB allocation per range (mmap'd, page-faulted, unmapped) cost
 * about 1 CPU s per 550 MB more than the single stream in the restore bench.
 */
async function readBody(body: Readable, length: number, key: string): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  let at = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    at += chunk.length;
    if (at > length) {
      body.destroy();
      throw new StorageError('STORAGE_IO', `s3 get of ${key}: a range returned more bytes than asked`, {
        key,
      });
    }
    chunks.push(chunk);
  }
  if (at !== length) {
    // The connection ended early without an error: worth another try, like a reset.
    throw new StorageError('STORAGE_UNAVAILABLE', `s3 get of ${key}: a range ended early`, {
      key,
      retryable: true,
    });
  }
  return chunks;
}

function parseContentRange(
  value: string | undefined,
): { start: number; end: number; total: number } | undefined {
  const m = value === undefined ? null : CONTENT_RANGE.exec(value);
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
}

/**
 * Starts the read: resolves once the first range's headers are in (so a missing key rejects here
 * with STORAGE_NOT_FOUND). `single` is the plain one-stream GET, used for an empty object (a range
 * of an empty object is unsatisfiable: 416) and when the store ignores the Range header.
 */
export async function getObjectInRanges(
  p: ParallelGetParams,
  single: () => Promise<Readable>,
): Promise<Readable> {
  const ctx: S3ErrorContext = { operation: 'get', bucket: p.bucket, key: p.key, secrets: p.secrets };
  const controller = new AbortController();
  const onCallerAbort = (): void => controller.abort(p.signal?.reason);
  if (p.signal?.aborted) throw new AbortError(`get of ${p.key} aborted`, { cause: p.signal.reason });
  p.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const send = (start: number, end: number): Promise<GetObjectCommandOutput> =>
    p.client.send(
      new GetObjectCommand({ Bucket: p.bucket, Key: p.objectKey, Range: `bytes=${start}-${end}` }),
      { abortSignal: controller.signal },
    );

  let first: GetObjectCommandOutput;
  try {
    first = await withRetry(ctx, p.retry, p.observe, controller.signal, () => send(0, p.rangeBytes - 1));
  } catch (e) {
    p.signal?.removeEventListener('abort', onCallerAbort);
    if (e instanceof StorageError && e.code === 'STORAGE_INVALID_RANGE') return single();
    if (p.signal?.aborted) throw new AbortError(`get of ${p.key} aborted`, { cause: e });
    throw e;
  }
  const firstRange = parseContentRange(first.ContentRange);
  if (firstRange === undefined || firstRange.start !== 0) {
    // The store sent the whole object (200 without Content-Range): nothing to split.
    p.signal?.removeEventListener('abort', onCallerAbort);
    (first.Body as Readable | undefined)?.destroy();
    return single();
  }
  const size = firstRange.total;

  /** One range, request and body, retried as a unit. */
  const fetchRange = (start: number, end: number): Promise<Buffer[]> =>
    withRetry(ctx, p.retry, p.observe, controller.signal, async () => {
      const out = await send(start, end);
      const got = parseContentRange(out.ContentRange);
      if (got === undefined || got.start !== start || got.end !== end || got.total !== size) {
        (out.Body as Readable | undefined)?.destroy();
        throw new StorageError('STORAGE_IO', `s3 get of ${p.key}: unexpected Content-Range`, {
          key: p.key,
        });
      }
      return readBody(out.Body as Readable, end - start + 1, p.key);
    });
  const firstBody = readBody(first.Body as Readable, firstRange.end + 1, p.key).catch((e: unknown) => {
    if (controller.signal.aborted) throw e;
    // The first body failed mid-way: that range gets its own retries like any other.
    const err = toStorageError(e, ctx);
    if (err instanceof StorageError && err.retryable) return fetchRange(0, firstRange.end);
    throw err;
  });
  return new RangedObjectStream(p, size, firstRange.end + 1, firstBody, fetchRange, controller, () =>
    p.signal?.removeEventListener('abort', onCallerAbort),
  );
}

/** The in-order stream over the ranges; see getObjectInRanges. */
class RangedObjectStream extends Readable {
  private readonly queue: Promise<Buffer[]>[] = [];
  private nextStart: number;
  private pumping = false;
  /** The chunks of the range being handed out, and how many of them have been. */
  private current: Buffer[] = [];
  private at = 0;
  /** Offset in current[at] (a chunk larger than chunkBytes goes out in pieces). */
  private inChunk = 0;
  private wanted = false;

  constructor(
    private readonly p: ParallelGetParams,
    private readonly size: number,
    firstEnd: number,
    firstBody: Promise<Buffer[]>,
    private readonly fetchRange: (start: number, end: number) => Promise<Buffer[]>,
    private readonly controller: AbortController,
    private readonly detach: () => void,
  ) {
    // One chunk at a time: a buffer of several chunks makes a paused reader's read() join them (a
    // copy and a fresh allocation per read: +0.6 CPU s of copies and GC per 550 MB restored).
    super({ highWaterMark: 1 });
    this.nextStart = firstEnd;
    this.track(firstBody);
    this.fill();
    // The caller's abort ends the stream with AbortError (the ranges in flight are cancelled).
    controller.signal.addEventListener(
      'abort',
      () => {
        if (!this.destroyed)
          this.destroy(new AbortError(`get of ${p.key} aborted`, { cause: p.signal?.reason }));
      },
      { once: true },
    );
  }

  /** A range's failure is seen when its turn comes; never an unhandled rejection before that. */
  private track(range: Promise<Buffer[]>): void {
    range.catch(() => undefined);
    this.queue.push(range);
  }

  private fill(): void {
    while (this.queue.length < this.p.concurrency && this.nextStart < this.size) {
      const start = this.nextStart;
      const end = Math.min(this.size, start + this.p.rangeBytes) - 1;
      this.nextStart = end + 1;
      this.track(this.fetchRange(start, end));
    }
  }

  override _read(): void {
    this.wanted = true;
    if (!this.pumping) void this.pump();
  }

  /** Pushes one chunk per `push` until the stream's buffer is full (after one chunk). */
  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.wanted && !this.destroyed) {
        if (this.at >= this.current.length) {
          const next = this.queue.shift();
          if (next === undefined) {
            this.detach();
            this.push(null);
            return;
          }
          this.current = await next;
          this.at = 0;
          this.inChunk = 0;
          if (this.destroyed) return;
          this.fill();
          continue;
        }
        const buf = this.current[this.at]!;
        const end = Math.min(buf.length, this.inChunk + this.p.chunkBytes);
        const piece = this.inChunk === 0 && end === buf.length ? buf : buf.subarray(this.inChunk, end);
        if (end === buf.length) {
          this.at++;
          this.inChunk = 0;
        } else this.inChunk = end;
        if (piece.length > 0) this.wanted = this.push(piece);
      }
    } catch (e) {
      if (!this.destroyed)
        this.destroy(
          this.p.signal?.aborted
            ? new AbortError(`get of ${this.p.key} aborted`, { cause: e })
            : (e as Error),
        );
    } finally {
      this.pumping = false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.detach();
    // A reader that stops early (or fails) must not leave ranges downloading.
    if (!this.controller.signal.aborted) this.controller.abort();
    callback(error);
  }
}
