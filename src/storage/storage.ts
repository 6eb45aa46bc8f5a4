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
}

export interface ListOptions extends CallOptions {
  /** Page size asked of the store (the store may return fewer). @default 1000 */
  pageSize?: number;
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
}
