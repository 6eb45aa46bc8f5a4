/**
 * The storage interface every repository write and read goes through. Drivers: `fs` (a local
 * directory or mounted volume) and `s3` (any S3-compatible object store). One contract suite
 * (test/integration/storage-contract.test.ts) holds every driver to the same behaviour.
 *
 * Contract:
 * - `put` makes a key visible whole or not at all. When it resolves, the bytes are durable
 *   (fs: fsynced file and directory; s3: the store confirmed the object with an ETag).
 * - A failed or aborted `put` leaves nothing visible under the key (and no orphan multipart upload).
 * - Keys are `/`-separated relative paths: no leading `/`, no `.` or `..` segments, no empty segment.
 * - Errors are StorageError with a stable code, `retryable` where a retry may succeed, the key and
 *   (for HTTP stores) the status. Credentials never appear in errors or events.
 *
 * This folder depends only on errors/observe; nothing here knows about PostgreSQL.
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification time as the store reports it. */
  lastModified?: Date;
  /** The store's entity tag (s3), when it has one. */
  etag?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface PutOptions extends CallOptions {
  /**
   * Create only if the key does not exist yet; a present key gives StorageError STORAGE_CONFLICT
   * and is left unchanged. fs: an atomic link(2) of the finished temporary file. s3: a conditional
   * CompleteMultipartUpload (If-None-Match: *), which stores that cannot do conditional PutObject
   * (Swift) still honour; see the driver for the fallback.
   */
  ifAbsent?: boolean;
  /**
   * The body's length when known in advance. Lets the s3 driver send a small body as one PUT and
   * plan the part size of a large one; a body whose length differs is an error (nothing visible).
   */
  contentLength?: number;
  /**
   * An upper estimate of the body's length when the exact one is unknown (for example the server's
   * size estimate of a base backup archive). The s3 driver grows its part size from it so that the
   * 10,000-part limit cannot be hit.
   */
  sizeHint?: number;
}

export interface PutResult {
  key: string;
  /** Bytes stored. */
  size: number;
  /** sha256 of the stored bytes, lower-case hex, computed while streaming. */
  sha256: string;
  etag?: string;
}

export interface GetOptions extends CallOptions {
  /** Byte range, both ends inclusive as in HTTP (`end` omitted: to the end of the object). */
  range?: { start: number; end?: number };
  /**
   * A hint: the size of the chunks the stream should read (fs: the read size; a driver may ignore
   * it). Larger chunks cost fewer reads and stream hops per byte; memory grows by the same factor.
   * @default the driver's (fs: 64 KiB)
   */
  readChunkBytes?: number;
}

export interface ListOptions extends CallOptions {
  /** Page size asked of the store (the store may return fewer). @default 1000 */
  pageSize?: number;
}

/** Options of `Storage.openFixedSizeFile`. */
export interface FixedSizeFileOptions extends CallOptions {
  /** Bytes written at offset 0 when the file is created (ignored when it exists already). */
  initial?: Buffer;
  /**
   * `writeDurably` runs its write and fdatasync on the calling thread (blocking system calls)
   * instead of libuv's thread pool: two thread hand-offs fewer per flush, which is most of what a
   * synchronous commit waits for beyond the disk itself, at the cost of blocking the event loop for
   * the fdatasync. For a process that does nothing else (the CLI's `pgark wal-archive`, like
   * pg_receivewal's single thread). @default false
   */
  blocking?: boolean;
}

/**
 * A file of a fixed size, overwritten in place (the optional `openFixedSizeFile` capability).
 * Its size never changes, so it says nothing about how much of it holds data: the caller keeps
 * that account.
 */
export interface FixedSizeFile {
  readonly key: string;
  readonly sizeBytes: number;
  /** True when the open found the file already there (as a previous writer left it). */
  readonly existed: boolean;
  /**
   * Writes `data` at `offset` and makes it durable (fs: pwrite + fdatasync, no metadata change).
   * After a failure, assume nothing written since the last success is durable: write it again.
   */
  writeDurably(data: Buffer, offset: number): Promise<void>;
  /**
   * Present when the file was opened with `blocking`: the same as `writeDurably`, returning once
   * the bytes are durable (or throwing its errors) without a promise, so a caller on the
   * synchronous-commit path does not wait for promise hops between the fdatasync and its reply.
   */
  readonly writeDurablySync?: (data: Buffer, offset: number) => void;
  /**
   * Makes the file durable and moves it to `finalKey`, create-only: an existing `finalKey` is
   * StorageError STORAGE_CONFLICT and this file stays where it is. Closes the handle.
   */
  publish(finalKey: string): Promise<void>;
  /** Releases the handle (the file stays). */
  close(): Promise<void>;
}

export interface Storage {
  /** `fs` or `s3`. */
  readonly kind: 'fs' | 's3';
  /** Where this storage points, without secrets: `/var/lib/pgark` or `s3://bucket/prefix (endpoint …)`. */
  describe(): string;

  /** Writes a key from a stream or a buffer; visible whole or not at all once resolved. */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult>;
  /** Reads a key (or a byte range of it) as a stream. An absent key rejects with STORAGE_NOT_FOUND. */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /** Object metadata, or `undefined` when the key is absent. */
  head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined>;
  /** Every key under a prefix (a plain string prefix, not a directory), sorted, paged internally. */
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>;
  /** Deletes keys; absent keys are not an error. */
  delete(keys: readonly string[], options?: CallOptions): Promise<void>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
  /**
   * OPTIONAL capability, only where the store can overwrite in place cheaply (fs): opens the file
   * of `key` for in-place writes, creating it durably when absent (`initial` at offset 0, zeros up
   * to `sizeBytes`: the key never shows a shorter file); an existing file of another size is
   * STORAGE_CONFLICT. The synchronous WAL writer uses it as pg_receivewal uses its pre-padded
   * `.partial` file (one pwrite + fdatasync per flush); callers fall back to `put` when absent.
   * Such a key is listed and read like any other (its size is `sizeBytes`).
   */
  openFixedSizeFile?(key: string, sizeBytes: number, options?: FixedSizeFileOptions): Promise<FixedSizeFile>;
}
