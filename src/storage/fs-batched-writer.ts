/**
 * Writes a body's chunks to an open file in batches, for the fs driver's put.
 *
 * Why: a base backup arrives as ~32 KiB CopyData payloads. One awaited `write` per payload costs a
 * thread-pool round trip each (tens of thousands per GiB), and on a busy machine that latency, not
 * the disk, bounded throughput (bench/base-backup-stages.ts). Here chunks are gathered by reference
 * into batches of about `batchBytes` (512 KiB: 64 KiB to 4 MiB were tried, 512 KiB-1 MiB were
 * fastest) and written with one `writev`, while the next batch fills:
 * at most one batch in flight plus the one being gathered, so memory stays about 2 x batchBytes.
 *
 * Durability is unchanged (the caller still fsyncs before rename); to keep that final fsync short,
 * a `datasync` is started in the background after every `syncEveryBytes` written (at most one at a
 * time), so the kernel writes back while bytes are still arriving, the way pg_receivewal and
 * pgBackRest spread their flushes. A failure of such a sync fails the put (Linux reports a writeback
 * error once; it must not be lost).
 *
 * Chunks are kept by reference until written: the caller must not reuse a chunk it handed over
 * (a Readable's chunks are the consumer's). A chunk with a release attached (./chunk-release: the
 * replication connection's leased read slabs) is released once its write has settled.
 */
import type { FileHandle } from 'node:fs/promises';
import { releaseChunk } from './chunk-release';
import { writevAll } from './fs-io';

export const FS_WRITE_DEFAULTS = {
  batchBytes: 512 * 1024,
  /** A batch never holds more buffers than this (IOV_MAX is 1024 on Linux). */
  batchBuffers: 512,
  syncEveryBytes: 64 * 1024 * 1024,
} as const;

export interface BatchedFileWriterOptions {
  /** @default 512 KiB */
  batchBytes?: number;
  /** Background datasync interval in bytes; 0 disables it. @default 64 MiB */
  syncEveryBytes?: number;
}

export class BatchedFileWriter {
  private readonly fh: FileHandle;
  private readonly batchBytes: number;
  private readonly syncEveryBytes: number;
  private batch: Buffer[] = [];
  private batchSize = 0;
  private writing: Promise<void> | undefined;
  private syncing: Promise<void> | undefined;
  private syncError: unknown;
  private sinceSync = 0;

  constructor(fh: FileHandle, options: BatchedFileWriterOptions = {}) {
    this.fh = fh;
    this.batchBytes = options.batchBytes ?? FS_WRITE_DEFAULTS.batchBytes;
    this.syncEveryBytes = options.syncEveryBytes ?? FS_WRITE_DEFAULTS.syncEveryBytes;
  }

  /**
   * Queues a chunk (kept by reference). Resolves at once unless a batch is full, then once the
   * previous batch is written (backpressure). Rejects with the error of an earlier write or sync.
   */
  add(chunk: Buffer): Promise<void> | undefined {
    if (chunk.length === 0) return undefined;
    this.batch.push(chunk);
    this.batchSize += chunk.length;
    if (this.batchSize >= this.batchBytes || this.batch.length >= FS_WRITE_DEFAULTS.batchBuffers) {
      return this.flush();
    }
    return undefined;
  }

  /** Writes what is queued and waits for every write and background sync; then the caller fsyncs. */
  async finish(): Promise<void> {
    await this.flush();
    await this.writing;
    this.writing = undefined;
    await this.syncing;
    if (this.syncError !== undefined) throw this.syncError;
  }

  /** Waits for in-flight operations, ignoring their errors (before closing the file after a failure). */
  async settle(): Promise<void> {
    await this.writing?.catch(() => undefined);
    await this.syncing;
  }

  private async flush(): Promise<void> {
    // At most one batch in flight: wait for it (this is where the producer is held back).
    if (this.writing) await this.writing;
    if (this.syncError !== undefined) throw this.syncError;
    if (this.batchSize === 0) return;
    const buffers = this.batch;
    const size = this.batchSize;
    this.batch = [];
    this.batchSize = 0;
    const w = writevAll(this.fh, buffers)
      .finally(() => {
        // Written (or failed): never read again here, so a leased read slab can be reused.
        for (const b of buffers) releaseChunk(b);
      })
      .then(() => this.written(size));
    // Observed here so that a failure nobody awaits yet is not an unhandled rejection; the next
    // flush/finish awaits `w` itself and so sees the error.
    w.catch(() => undefined);
    this.writing = w;
  }

  private written(size: number): void {
    this.sinceSync += size;
    if (this.syncEveryBytes <= 0 || this.sinceSync < this.syncEveryBytes || this.syncing) return;
    this.sinceSync = 0;
    this.syncing = this.fh.datasync().then(
      () => {
        this.syncing = undefined;
      },
      (e: unknown) => {
        this.syncError ??= e;
        this.syncing = undefined;
      },
    );
  }
}
