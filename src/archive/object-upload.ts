/**
 * One object written to storage from chunks pushed by a producer, with backpressure: `write`
 * resolves only once the body stream has room, so the producer (the replication socket) is held
 * back while the store is slow. Memory: the body's highWaterMark plus what the driver holds
 * (s3: part size x (queue + 1)).
 */
import { once } from 'node:events';
import { PassThrough, type Transform, type Writable } from 'node:stream';
import { AbortError, StorageError } from '../errors';
import type { PutResult, Storage } from '../storage/storage';

export interface ObjectUploadOptions {
  /** The body's length estimate for the driver's part planning. */
  sizeHint?: number;
  /** A transform the bytes pass through before the store (client-side compression). */
  transform?: Transform;
  signal?: AbortSignal;
  /** Body buffer before write() waits. @default 1 MiB */
  highWaterMark?: number;
}

export class ObjectUpload {
  readonly key: string;
  private readonly input: Writable;
  private readonly done: Promise<PutResult>;
  private failure: unknown;
  private readonly failed: Promise<never>;
  /** Bytes handed to write(). */
  bytesIn = 0;

  constructor(storage: Storage, key: string, options: ObjectUploadOptions = {}) {
    this.key = key;
    const pass = new PassThrough({ highWaterMark: options.highWaterMark ?? 1024 * 1024 });
    let body: PassThrough | Transform = pass;
    if (options.transform) {
      const t = options.transform;
      pass.pipe(t);
      // An error of the transform must reach the store's reader (it destroys its body on error).
      pass.on('error', (e) => t.destroy(e));
      body = t;
    }
    this.input = pass;
    this.done = storage.put(key, body, { sizeHint: options.sizeHint, signal: options.signal });
    this.failed = this.done.then(
      () => new Promise<never>(() => {}),
      (e: unknown) => {
        this.failure = e;
        throw e;
      },
    );
    // Observed here so that a failure while nobody awaits is not an unhandled rejection.
    this.failed.catch(() => undefined);
  }

  /** Writes a chunk; resolves when the body can take more. Rejects with the store's error. */
  async write(chunk: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.bytesIn += chunk.length;
    if (!this.input.write(chunk)) {
      await Promise.race([once(this.input, 'drain'), this.failed]);
    }
  }

  /** Ends the body and resolves once the object is durable in the store. */
  async end(): Promise<PutResult> {
    if (this.failure !== undefined) throw this.failure;
    this.input.end();
    const result = await this.done;
    if (result.size === undefined) {
      throw new StorageError('STORAGE_INCOMPLETE_UPLOAD', `store did not confirm ${this.key}`, { key: this.key });
    }
    return result;
  }

  /** Abandons the object: the body errors, and the driver removes what it wrote (aborts a multipart upload). */
  async abort(reason: unknown): Promise<void> {
    this.input.destroy(reason instanceof Error ? reason : new AbortError('upload abandoned'));
    await this.done.catch(() => undefined);
  }
}
