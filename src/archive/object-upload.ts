/**
 * One object written to storage from chunks pushed by a producer, with backpressure: `write`
 * resolves only once the body stream has room, so the producer (the replication socket) is held
 * back while the store is slow. Memory: the body's highWaterMark plus what the driver holds
 * (s3: part size x (queue + 1)).
 *
 * The body is a ChunkBody, not a byte-mode PassThrough: a byte-mode Readable read by `for await`
 * (what both drivers do) concatenates all buffered chunks into a fresh Buffer on every read, one
 * extra copy and allocation of every byte (bench/base-backup-stages.ts showed it in the profile).
 * ChunkBody hands the producer's chunks to the driver by reference, one per read, and counts its
 * bound in bytes.
 */
import { Readable, type Transform } from 'node:stream';
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

/**
 * A Readable (object mode: every chunk is passed on as it was written, never merged) fed by
 * `enqueue`, holding at most about `limitBytes` (plus one chunk in the Readable's own buffer).
 */
class ChunkBody extends Readable {
  private readonly limitBytes: number;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private wanted = false;
  private ending = false;
  private room: (() => void) | undefined;

  constructor(limitBytes: number) {
    super({ objectMode: true, highWaterMark: 1 });
    this.limitBytes = limitBytes;
    // A destroyed body will not drain: release a waiting producer (it then sees the store's error).
    this.once('close', () => this.wakeProducer());
  }

  /** Queues a chunk; false when the producer should wait (`waitForRoom`). */
  enqueue(chunk: Buffer): boolean {
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.wanted) this.feed();
    return this.queuedBytes < this.limitBytes;
  }

  /** Resolves once the queue is below the limit again (or the body was destroyed). */
  waitForRoom(): Promise<void> {
    if (this.queuedBytes < this.limitBytes || this.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.room = resolve;
    });
  }

  finish(): void {
    this.ending = true;
    this.feed();
  }

  override _read(): void {
    this.wanted = true;
    this.feed();
  }

  private feed(): void {
    while (this.wanted && this.queue.length > 0) {
      const chunk = this.queue.shift()!;
      this.queuedBytes -= chunk.length;
      this.wanted = this.push(chunk);
    }
    if (this.ending && this.queue.length === 0) {
      this.ending = false;
      this.push(null);
    }
    if (this.queuedBytes < this.limitBytes) this.wakeProducer();
  }

  private wakeProducer(): void {
    const r = this.room;
    this.room = undefined;
    r?.();
  }
}

export class ObjectUpload {
  readonly key: string;
  private readonly input: ChunkBody;
  private readonly done: Promise<PutResult>;
  private failure: unknown;
  private readonly failed: Promise<never>;
  /** Bytes handed to write(). */
  bytesIn = 0;

  constructor(storage: Storage, key: string, options: ObjectUploadOptions = {}) {
    this.key = key;
    const pass = new ChunkBody(options.highWaterMark ?? 1024 * 1024);
    let body: Readable | Transform = pass;
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
    await this.push(chunk);
  }

  /**
   * `write` for the backup's hot path (one call per CopyData message), without a promise while the
   * body has room: returns `undefined` then, else a promise that resolves when it has room again.
   * Throws (rather than rejects) a failure already known.
   */
  push(chunk: Buffer): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    this.bytesIn += chunk.length;
    if (chunk.length === 0) return undefined;
    // A destroyed body takes nothing more: wait for the store's error instead of queueing.
    if (this.input.destroyed) return this.failed;
    if (this.input.enqueue(chunk)) return undefined;
    return Promise.race([this.input.waitForRoom(), this.failed]);
  }

  /** Ends the body and resolves once the object is durable in the store. */
  async end(): Promise<PutResult> {
    if (this.failure !== undefined) throw this.failure;
    this.input.finish();
    const result = await this.done;
    if (result.size === undefined) {
      throw new StorageError('STORAGE_INCOMPLETE_UPLOAD', `store did not confirm ${this.key}`, {
        key: this.key,
      });
    }
    return result;
  }

  /** Abandons the object: the body errors, and the driver removes what it wrote (aborts a multipart upload). */
  async abort(reason: unknown): Promise<void> {
    this.input.destroy(reason instanceof Error ? reason : new AbortError('upload abandoned'));
    await this.done.catch(() => undefined);
  }
}
