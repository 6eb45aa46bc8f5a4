/**
 * Assembles streamed WAL into segments in bounded memory and makes it durable in the repository,
 * in LSN order, one storage operation at a time, so that "durable" is always a contiguous prefix:
 *
 * - a complete segment is stored under its own name (create-only); if the key exists, the stored
 *   bytes must be the same (sha256), else IntegrityError INTEGRITY_WAL_CONFLICT (split-brain);
 *   then the segment's partial objects are deleted;
 * - the incomplete tail is made durable as sequenced chunk objects (see wal-partial.ts): at once in
 *   synchronous mode, every `flushIntervalMs` otherwise;
 * - `compact()` rewrites the tail as one `<segment>.partial` object (on stop and at a timeline end).
 *
 * Synchronous mode on a store with `openFixedSizeFile` (fs): the incomplete segment is instead one
 * `<segment>.partial.padded` file, created zero-filled to the segment size and overwritten in place,
 * one pwrite + fdatasync per flush (pg_receivewal's pre-padded `.partial`: no metadata change, no
 * journal commit); a completed segment's file is renamed (link + unlink, create-only) to its own
 * name. Its durable prefix is not told by its size: on a restart the segment is re-streamed from
 * its start, compared with the file where the file holds non-zero bytes, and rewritten.
 *
 * `flushedLsn` is the end of the contiguous durable prefix; the archiver reports exactly that to
 * the server. Memory: at most two segment buffers (one filling, one being stored); `write` waits
 * when both are taken, which pauses the replication socket (backpressure).
 *
 * Storage failures are retried with backoff (each retry is a `storage.retry` event) except those a
 * retry cannot fix (access denied, invalid key, missing bucket), which fail the writer.
 */
import { createHash } from 'node:crypto';
import {
  AbortError,
  ConfigError,
  IntegrityError,
  PgarkError,
  ReplicationError,
  StorageError,
  isPgarkError,
} from '../errors';
import { formatLsn, lsnToSegmentNumber, segmentStartLsn, walFileName, type Lsn } from '../lsn';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import type { FixedSizeFile, Storage } from '../storage/storage';
import { walPartialChunkKey, walPartialKey, walPartialPaddedKey, walSegmentKey } from './repo-layout';
import { readArchivedPartial } from './wal-partial';

export interface WalSegmentWriterOptions extends ObserveOptions {
  storage: Storage;
  stanza: string;
  segmentSize: number;
  /** Make every received byte durable as soon as possible (synchronous replication). */
  synchronous: boolean;
  /** Async mode: how often the incomplete tail is made durable. */
  flushIntervalMs: number;
  /** Synchronous mode on a store with openFixedSizeFile: flush with blocking calls (FixedSizeFileOptions.blocking). */
  blockingFlush?: boolean;
  /** Called once when the writer fails (the archiver then ends the stream). */
  onFailed?: (error: PgarkError) => void;
  /** Called whenever flushedLsn advances (in order). */
  onFlushed?: (flushedLsn: Lsn, timeline: number) => void;
  /**
   * Complete segments that may wait in memory for their upload under their own name (bounded
   * memory: `write` waits when this many are waiting). @default 2
   */
  maxPendingSegments?: number;
  /** Backoff of storage retries. */
  retryInitialMs?: number;
  retryMaxMs?: number;
}

interface Segment {
  timeline: number;
  segno: bigint;
  name: string;
  startLsn: Lsn;
  buf: Buffer;
  /** Bytes [0, filled) hold WAL (received now or loaded from the repository). */
  filled: number;
  /** Bytes [0, durable) are durable in the repository. */
  durable: number;
  /** Partial objects of this segment in the repository (deleted after completion or compaction). */
  partialKeys: string[];
  /** True when `.partial` itself holds [0, durable) and no chunk is needed to read it. */
  compacted: boolean;
  /**
   * Bytes [filled, verifyEnd) of `buf` were loaded from a `.partial.padded` file whose durable
   * prefix is unknown: re-streamed bytes are compared with them where they are non-zero (a zero
   * there may be a write that never reached the disk) and then replace them.
   */
  verifyEnd: number;
  /** The segment's open `.partial.padded` file (in-place mode). */
  file: FixedSizeFile | undefined;
  /** The key of the segment's `.partial.padded` file, when one exists. */
  paddedKey: string | undefined;
  /** True when the padded file is known to hold exactly [0, durable) (written by this writer). */
  fileHolds: boolean;
}

export interface WalWriterCounters {
  segmentsStored: number;
  segmentsAlreadyPresent: number;
  partialFlushes: number;
  bytesStored: number;
  storageRetries: number;
}

const NON_RETRYABLE = new Set(['STORAGE_ACCESS_DENIED', 'STORAGE_INVALID_KEY', 'STORAGE_BUCKET_NOT_FOUND']);

export class WalSegmentWriter {
  readonly counters: WalWriterCounters = {
    segmentsStored: 0,
    segmentsAlreadyPresent: 0,
    partialFlushes: 0,
    bytesStored: 0,
    storageRetries: 0,
  };
  private readonly o: WalSegmentWriterOptions;
  private current: Segment | undefined;
  /**
   * Complete segments not yet stored under their own name, oldest first (at most
   * `maxPendingSegments`). In synchronous mode their bytes are durable as chunks first; the
   * uploader stores them whole in the background, one at a time, in order.
   */
  private readonly completed: Segment[] = [];
  /** The background upload of `completed[0]` under its own name, while it runs. */
  private uploading: Promise<void> | undefined;
  private timelineValue = 0;
  /** Where the next byte of WAL goes (end of the data written so far). */
  private nextLsn: Lsn = 0n;
  private flushed: Lsn = 0n;
  private failure: PgarkError | undefined;
  private closed = false;
  private forceFlush = false;
  private lastChunkAt = 0;
  private wake: (() => void) | undefined;
  private spaceWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly abort = new AbortController();

  constructor(options: WalSegmentWriterOptions) {
    this.o = options;
  }

  get timeline(): number {
    return this.timelineValue;
  }

  /** End of the contiguous durable prefix (never more than is durable). */
  get flushedLsn(): Lsn {
    return this.flushed;
  }

  /** End of the WAL handed to `write` (held in memory or durable). */
  get writtenLsn(): Lsn {
    return this.nextLsn;
  }

  /** Where a (re)connection must restart: the start of the segment being filled, or the next one. */
  get resumeLsn(): Lsn {
    return this.current ? this.current.startLsn : this.nextLsn;
  }

  get error(): PgarkError | undefined {
    return this.failure;
  }

  /**
   * Positions the writer at a segment start on a timeline, loading the durable bytes of that
   * segment if the repository has a partial of it (they are then verified, not rewritten).
   */
  async begin(timeline: number, segmentStart: Lsn): Promise<void> {
    await this.idle();
    this.throwIfFailed();
    const segSize = this.o.segmentSize;
    if (segmentStart % BigInt(segSize) !== 0n)
      throw new ConfigError('CONFIG_INVALID_LSN', `segment start ${formatLsn(segmentStart)} is not aligned`);
    this.timelineValue = timeline;
    const seg = this.newSegment(timeline, segmentStart);
    const existing = await this.retrying('list', walPartialKey(this.o.stanza, seg.name), () =>
      readArchivedPartial(this.o.storage, this.o.stanza, seg.name, segSize, seg.buf),
    );
    seg.partialKeys = existing.keys;
    if (existing.paddedKey) {
      // A padded file's durable prefix is not known (it is always segment-sized): count nothing
      // as durable, re-stream the segment from its start, compare, and rewrite (pg_receivewal's
      // answer). The server kept this segment: the slot's restart_lsn is at most what we flushed.
      seg.paddedKey = existing.paddedKey;
      seg.verifyEnd = existing.bytes.length;
      this.current = seg;
    } else if (existing.bytes.length === segSize) {
      // Wholly durable as chunks (stopped between its last chunk and its upload): store it whole.
      seg.filled = seg.durable = segSize;
      this.completed.push(seg);
      this.current = undefined;
    } else {
      seg.filled = seg.durable = existing.bytes.length;
      seg.compacted =
        existing.keys.length === 1 && existing.keys[0] === walPartialKey(this.o.stanza, seg.name);
      this.current = seg;
    }
    this.nextLsn = segmentStart + BigInt(seg.filled);
    this.flushed = segmentStart + BigInt(seg.durable);
    this.start();
  }

  /**
   * Stores under their own names the segments that a previous run left wholly durable as chunks
   * (stopped between a segment's last chunk and its upload); others are left alone. Run before
   * `begin`, for the segments other than the one the archiver resumes.
   */
  async storeCompletedPartials(
    names: readonly { timeline: number; name: string; startLsn: Lsn; paddedComplete?: boolean }[],
  ): Promise<number> {
    let stored = 0;
    for (const n of names) {
      const seg = this.newSegment(n.timeline, n.startLsn);
      const existing = await this.retrying('list', walPartialKey(this.o.stanza, seg.name), () =>
        readArchivedPartial(this.o.storage, this.o.stanza, seg.name, this.o.segmentSize, seg.buf),
      );
      if (n.paddedComplete && existing.paddedKey && this.o.storage.openFixedSizeFile) {
        // Complete by the writer's order (a newer segment exists, wal-start-plan.ts): the file
        // holds the whole segment. Exact pieces, if any, were laid over it by the read.
        seg.paddedKey = existing.paddedKey;
        seg.fileHolds = existing.exactBytes === 0;
      } else if (existing.bytes.length !== this.o.segmentSize) continue;
      seg.filled = seg.durable = this.o.segmentSize;
      seg.partialKeys = existing.keys;
      await this.storeComplete(seg);
      stored++;
    }
    return stored;
  }

  /**
   * Hands WAL to the writer. `lsn` must continue the stream (the WAL stream checks that); bytes
   * below what the current segment already holds are compared with it (re-streaming after a
   * reconnect or restart): a difference is IntegrityError INTEGRITY_WAL_CONFLICT.
   * Resolves once the bytes are held (it waits while two segments are in memory).
   */
  async write(lsn: Lsn, data: Buffer): Promise<void> {
    await this.append(lsn, data);
  }

  /**
   * `write` for the stream's hot path, without a promise when none is needed: the bytes are held
   * when this returns `undefined`, else once the returned promise resolves (two complete segments
   * wait in memory). Throws (rather than rejects) what `write` rejects with.
   */
  append(lsn: Lsn, data: Buffer): Promise<void> | undefined {
    this.throwIfFailed();
    let off = this.place(lsn, data, 0);
    this.kick();
    if (off === data.length) return undefined;
    return (async () => {
      while (off < data.length) {
        // The previous segment completed and both segment buffers are taken: wait for room.
        await this.waitForSpace();
        this.throwIfFailed();
        off = this.place(lsn, data, off);
        this.kick();
      }
    })();
  }

  /**
   * Copies `data[off..]` (WAL from `lsn + off`) into the current segment and the ones after it.
   * Returns where it stopped: `data.length`, or earlier when a new segment is needed and there is
   * no room for it.
   */
  private place(lsn: Lsn, data: Buffer, off: number): number {
    let pos = lsn + BigInt(off);
    const segSize = BigInt(this.o.segmentSize);
    while (off < data.length) {
      let seg = this.current;
      if (!seg || pos < seg.startLsn || pos >= seg.startLsn + segSize) {
        if (seg) {
          throw new ReplicationError(
            'REPLICATION_WAL_GAP',
            `wal at ${formatLsn(pos)} does not belong to segment ${seg.name}`,
          );
        }
        // The previous segment completed: open the next one (if there is room).
        if (!this.hasSpace()) return off;
        seg = this.newSegment(this.timelineValue, pos - (pos % segSize));
        this.current = seg;
      }
      const segOff = Number(pos - seg.startLsn);
      const n = Math.min(data.length - off, this.o.segmentSize - segOff);
      const piece = data.subarray(off, off + n);
      if (segOff + n > seg.filled && segOff < seg.verifyEnd)
        this.verifyAgainstPadded(seg, segOff, piece, pos);
      if (segOff < seg.filled) {
        const overlap = Math.min(n, seg.filled - segOff);
        if (!piece.subarray(0, overlap).equals(seg.buf.subarray(segOff, segOff + overlap))) {
          const key = walPartialKey(this.o.stanza, seg.name);
          throw this.fail(
            new IntegrityError(
              'INTEGRITY_WAL_CONFLICT',
              `wal segment ${seg.name} in the repository differs from the server's at ${formatLsn(pos)}`,
              {
                key,
                hint: 'the repository holds WAL of another history of this cluster (split-brain?); archive into a new stanza',
              },
            ),
          );
        }
        if (n > overlap) piece.copy(seg.buf, segOff + overlap, overlap);
      } else {
        piece.copy(seg.buf, segOff);
      }
      seg.filled = Math.max(seg.filled, segOff + n);
      pos += BigInt(n);
      off += n;
      if (pos > this.nextLsn) this.nextLsn = pos;
      if (seg.filled === this.o.segmentSize) {
        this.completed.push(seg);
        this.current = undefined;
      }
    }
    return off;
  }

  /**
   * Synchronous mode with a blocking file (`blockingFlush`): makes everything written so far
   * durable now, on this tick (pwrite + fdatasync), and reports it (the status update goes out
   * before this returns). For the caller that has just handed over all the WAL one socket read
   * delivered. Returns false when it cannot, and the background loop does it as usual: another
   * mode, the loop busy, a completed segment whose last bytes must go first, or the segment's file
   * not open yet.
   */
  flushNow(): boolean {
    if (!this.o.blockingFlush || !this.inPlace || this.busy || this.failure || this.closed) return false;
    if (this.completed.some((s) => s.durable < this.o.segmentSize)) return false;
    const cur = this.current;
    if (!cur || cur.filled <= cur.durable) return true;
    if (!this.storeInFileNow(cur)) return false;
    this.advance();
    return true;
  }

  /**
   * Re-streamed bytes against bytes loaded from a padded file past `filled`: where the file holds
   * a non-zero byte, the server's must be the same (else INTEGRITY_WAL_CONFLICT); a zero in the file
   * may be a write that never reached the disk, so it proves nothing and is overwritten.
   */
  private verifyAgainstPadded(seg: Segment, segOff: number, piece: Buffer, pos: Lsn): void {
    const from = Math.max(segOff, seg.filled);
    const to = Math.min(segOff + piece.length, seg.verifyEnd);
    if (from >= to) return;
    const theirs = piece.subarray(from - segOff, to - segOff);
    const ours = seg.buf.subarray(from, to);
    if (theirs.equals(ours)) return;
    for (let i = 0; i < ours.length; i++) {
      const b = ours[i]!;
      if (b !== 0 && b !== theirs[i]) {
        throw this.fail(
          new IntegrityError(
            'INTEGRITY_WAL_CONFLICT',
            `wal segment ${seg.name} in the repository differs from the server's at ${formatLsn(pos + BigInt(from - segOff + i))}`,
            {
              key: seg.paddedKey ?? walPartialPaddedKey(this.o.stanza, seg.name),
              hint: 'the repository holds WAL of another history of this cluster (split-brain?); archive into a new stanza',
            },
          ),
        );
      }
    }
  }

  /** Makes everything written durable now (chunks and complete segments); resolves when done. */
  async flush(): Promise<void> {
    this.forceFlush = true;
    this.kick();
    await this.idle();
    this.throwIfFailed();
  }

  /**
   * Flushes, then rewrites the incomplete tail as one `<segment>.partial` object and deletes its
   * chunks; the segment is then closed (for a timeline end: the old timeline's last segment stays
   * partial). With `keepOpen`, the segment stays the current one (used on stop).
   */
  async compact(keepOpen = false): Promise<void> {
    await this.flush();
    const seg = this.current;
    // A padded file loaded on a restart may hold more than has been re-streamed so far (bytes a
    // previous run reported flushed): replacing it by a shorter `.partial` would lose them, so it
    // stays as it is until a later run has re-streamed past it.
    const padNotCaughtUp = seg !== undefined && seg.verifyEnd > seg.durable;
    if (seg && seg.durable > 0 && !seg.compacted && !padNotCaughtUp) {
      const key = walPartialKey(this.o.stanza, seg.name);
      const body = seg.buf.subarray(0, seg.durable);
      await this.retrying('put', key, () => this.o.storage.put(key, body, { contentLength: body.length }));
      // The padded file (if any) goes with the chunks: `.partial` now holds [0, durable) exactly.
      await seg.file?.close();
      seg.file = undefined;
      const chunks = seg.partialKeys.filter((k) => k !== key);
      if (chunks.length) await this.retrying('delete', key, () => this.o.storage.delete(chunks));
      seg.partialKeys = [key];
      seg.compacted = true;
      seg.paddedKey = undefined;
      seg.fileHolds = false;
      seg.verifyEnd = 0;
      emit(this.o, {
        type: 'wal.partial.durable',
        walName: seg.name,
        key,
        flushedLsn: formatLsn(seg.startLsn + BigInt(seg.durable)),
      });
    }
    if (!keepOpen) {
      this.current = undefined;
      // The position moves to the next timeline's segment via begin().
    }
  }

  /** Stops the background loop (after `flush`/`compact` for a clean stop). */
  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.kick();
    await this.loop;
    await this.uploading;
    for (const seg of [this.current, ...this.completed]) {
      await seg?.file?.close();
      if (seg) seg.file = undefined;
    }
    for (const w of this.spaceWaiters.splice(0)) w();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  // -------------------------------------------------------------------------------------------

  private newSegment(timeline: number, startLsn: Lsn): Segment {
    const segno = lsnToSegmentNumber(startLsn, this.o.segmentSize);
    return {
      timeline,
      segno,
      name: walFileName(timeline, segno, this.o.segmentSize),
      startLsn: segmentStartLsn(segno, this.o.segmentSize),
      buf: Buffer.allocUnsafe(this.o.segmentSize),
      filled: 0,
      durable: 0,
      partialKeys: [],
      compacted: false,
      verifyEnd: 0,
      file: undefined,
      paddedKey: undefined,
      fileHolds: false,
    };
  }

  /** Synchronous mode on a store that can overwrite a file in place (fs): the padded-file path. */
  private get inPlace(): boolean {
    return this.o.synchronous && typeof this.o.storage.openFixedSizeFile === 'function';
  }

  private start(): void {
    if (this.loop) return;
    this.loop = this.run().catch((e: unknown) => {
      this.fail(
        isPgarkError(e) ? e : new StorageError('STORAGE_IO', `wal writer failed: ${String(e)}`, { cause: e }),
      );
    });
    if (!this.o.synchronous) {
      this.timer = setInterval(() => this.kick(), Math.max(50, Math.floor(this.o.flushIntervalMs / 2)));
      this.timer.unref();
    }
  }

  private kick(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private fail(e: PgarkError): PgarkError {
    if (!this.failure) {
      this.failure = e;
      this.o.onFailed?.(e);
    }
    for (const w of this.spaceWaiters.splice(0)) w();
    for (const w of this.idleWaiters.splice(0)) w();
    return this.failure;
  }

  private get maxPending(): number {
    return Math.max(1, this.o.maxPendingSegments ?? 2);
  }

  /** Room for one more segment in memory (or nothing to wait for). */
  private hasSpace(): boolean {
    return this.completed.length < this.maxPending || this.failure !== undefined || this.closed;
  }

  private waitForSpace(): Promise<void> {
    if (this.hasSpace()) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  /** Resolves when nothing is due: no complete segment waiting and (if forced) no undurable tail. */
  private idle(): Promise<void> {
    if (this.failure || !this.loop || this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return (
      !this.busy &&
      !this.uploading &&
      this.completed.length === 0 &&
      (!this.current || this.current.filled === this.current.durable || !this.forceFlush)
    );
  }

  private tailDue(seg: Segment): boolean {
    if (seg.filled <= seg.durable) return false;
    if (this.o.synchronous || this.forceFlush) return true;
    return Date.now() - this.lastChunkAt >= this.o.flushIntervalMs;
  }

  private async run(): Promise<void> {
    let yielded = false;
    while (!this.closed && !this.failure) {
      const cur = this.current;
      // Synchronous mode: a completed segment's last bytes become durable as a chunk first (small
      // and quick), so the flush position passes the segment boundary without waiting for the
      // whole segment's upload; the uploader then stores it under its own name in the background.
      const unchunked = this.o.synchronous
        ? this.completed.find((s) => s.durable < this.o.segmentSize)
        : undefined;
      if (unchunked) {
        this.busy = true;
        await this.storeChunk(unchunked);
        this.busy = false;
        this.advance();
        continue;
      }
      this.startUpload();
      if (cur && this.tailDue(cur)) {
        // Synchronous mode: let the rest of what the socket delivered in this turn of the event
        // loop arrive first (setImmediate runs after the poll phase's callbacks and their
        // microtasks), so one flush covers all of it, as pg_receivewal drains its socket before
        // each fsync. Without this a blocking flush ran after the first message of a read.
        if (this.o.synchronous && !yielded) {
          yielded = true;
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        yielded = false;
        if (this.storeInFileNow(cur)) {
          this.advance();
          continue;
        }
        this.busy = true;
        await this.storeChunk(cur);
        this.busy = false;
        this.advance();
        continue;
      }
      if (!this.uploading) {
        this.forceFlush = false;
        for (const w of this.idleWaiters.splice(0)) w();
      }
      yielded = false;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /**
   * Stores `completed[0]` under its own name in the background (one upload at a time, in LSN
   * order), then drops it from memory and wakes the loop. Asynchronous mode: the flush position
   * passes the segment only once this upload is done (its bytes were not durable before).
   */
  private startUpload(): void {
    const seg = this.completed[0];
    if (!seg || this.uploading || this.closed || this.failure) return;
    this.uploading = this.storeComplete(seg).then(
      () => {
        this.completed.shift();
        this.uploading = undefined;
        for (const w of this.spaceWaiters.splice(0)) w();
        this.advance();
        this.kick();
      },
      (e: unknown) => {
        this.uploading = undefined;
        this.fail(
          isPgarkError(e)
            ? e
            : new StorageError('STORAGE_IO', `wal upload failed: ${String(e)}`, { cause: e }),
        );
        this.kick();
      },
    );
  }

  /** flushedLsn = start of the oldest segment not wholly durable (chunks count) + its durable bytes. */
  private advance(): void {
    const oldest = this.completed.find((s) => s.durable < this.o.segmentSize) ?? this.current;
    const lsn = oldest ? oldest.startLsn + BigInt(oldest.durable) : this.nextLsn;
    if (lsn > this.flushed) {
      this.flushed = lsn;
      this.o.onFlushed?.(lsn, this.timelineValue);
    }
  }

  private async storeChunk(seg: Segment): Promise<void> {
    if (this.inPlace) return this.storeInFile(seg);
    const from = seg.durable;
    const to = seg.filled;
    const key = walPartialChunkKey(this.o.stanza, seg.name, from);
    // The bytes [from, to) are not modified while the put runs: writes only extend `filled`.
    const body = seg.buf.subarray(from, to);
    await this.retrying('put', key, () => this.o.storage.put(key, body, { contentLength: body.length }));
    this.lastChunkAt = Date.now();
    seg.durable = to;
    seg.compacted = false;
    if (!seg.partialKeys.includes(key)) seg.partialKeys.push(key);
    this.counters.partialFlushes++;
    this.counters.bytesStored += body.length;
    emit(this.o, {
      type: 'wal.partial.durable',
      walName: seg.name,
      key,
      flushedLsn: formatLsn(seg.startLsn + BigInt(to)),
    });
  }

  /**
   * In-place mode: bytes [durable, filled) into the segment's padded file, pwrite + fdatasync; the
   * file is created (zero-filled, with [0, durable) at its start) on the segment's first flush. After
   * a failure, or when the file was found rather than written by us, everything from offset 0 is
   * written again (after a failed fsync Linux may have dropped the dirty pages).
   */
  private async storeInFile(seg: Segment): Promise<void> {
    const key = walPartialPaddedKey(this.o.stanza, seg.name);
    const to = seg.filled;
    let from = seg.durable;
    await this.retrying('write', key, async () => {
      try {
        if (!seg.file) {
          seg.file = await this.o.storage.openFixedSizeFile!(key, this.o.segmentSize, {
            initial: seg.buf.subarray(0, seg.durable),
            blocking: this.o.blockingFlush === true,
          });
          seg.paddedKey = key;
          if (!seg.partialKeys.includes(key)) seg.partialKeys.push(key);
          if (!seg.file.existed) seg.fileHolds = true;
        }
        from = seg.fileHolds ? seg.durable : 0;
        await seg.file.writeDurably(seg.buf.subarray(from, to), from);
        seg.fileHolds = true;
      } catch (e) {
        await seg.file?.close();
        seg.file = undefined;
        seg.fileHolds = false;
        throw e;
      }
    });
    this.fileWritten(seg, key, from, to);
  }

  /**
   * In-place mode with a blocking file (`blockingFlush`) that already holds [0, durable): the
   * bytes [durable, filled) are written and made durable right here, with no await between the
   * fdatasync and the caller's advance() (the status update that releases synchronous commits).
   * Returns false when that does not apply, or when the write failed: then storeInFile does it
   * again from offset 0 (after a failed fdatasync nothing since the last success is durable), with
   * its retries. A failed file is closed first, in the background (storeInFile opens a new one).
   */
  private storeInFileNow(seg: Segment): boolean {
    const file = seg.file;
    if (!this.inPlace || !file?.writeDurablySync || !seg.fileHolds) return false;
    const from = seg.durable;
    const to = seg.filled;
    try {
      file.writeDurablySync(seg.buf.subarray(from, to), from);
    } catch (e) {
      (this.o.logger ?? noopLogger).warn('wal write failed, writing the segment file again', {
        key: file.key,
        error: String(e),
      });
      seg.file = undefined;
      seg.fileHolds = false;
      void file.close().catch(() => undefined);
      return false;
    }
    this.fileWritten(seg, file.key, from, to);
    return true;
  }

  /** Book-keeping after [from, to) of a segment reached its padded file durably. */
  private fileWritten(seg: Segment, key: string, from: number, to: number): void {
    this.lastChunkAt = Date.now();
    seg.durable = to;
    seg.compacted = false;
    this.counters.partialFlushes++;
    this.counters.bytesStored += to - from;
    // Built only for a listener: this runs once per synchronous flush.
    if (this.o.onEvent)
      emit(this.o, {
        type: 'wal.partial.durable',
        walName: seg.name,
        key,
        flushedLsn: formatLsn(seg.startLsn + BigInt(to)),
      });
  }

  /**
   * Stores a complete segment under its own name, create-only: a padded file that holds it is
   * renamed (link + unlink + directory fsync); otherwise the buffer is put. An existing segment of
   * the same bytes is fine, of other bytes INTEGRITY_WAL_CONFLICT.
   */
  private async storeComplete(seg: Segment): Promise<void> {
    const key = walSegmentKey(this.o.stanza, seg.name);
    const body = seg.buf;
    const openFixed = this.o.storage.openFixedSizeFile?.bind(this.o.storage);
    const paddedKey = seg.paddedKey;
    try {
      if (paddedKey && seg.fileHolds && openFixed) {
        await this.retrying('publish', key, async () => {
          const file = seg.file ?? (await openFixed(paddedKey, this.o.segmentSize));
          seg.file = undefined;
          await file.publish(key); // closes the handle, also on failure
        });
        seg.paddedKey = undefined;
      } else {
        await this.retrying('put', key, () =>
          this.o.storage.put(key, body, { ifAbsent: true, contentLength: body.length }),
        );
      }
      this.counters.segmentsStored++;
      this.counters.bytesStored += body.length;
    } catch (e) {
      if (!(isPgarkError(e) && e.code === 'STORAGE_CONFLICT')) throw e;
      // Already archived (a restart re-streamed it, or archive_command put it): same bytes are fine.
      const ours = createHash('sha256').update(body).digest('hex');
      const theirs = await this.retrying('get', key, async () => {
        const h = createHash('sha256');
        for await (const c of await this.o.storage.get(key)) h.update(c as Buffer);
        return h.digest('hex');
      });
      if (ours !== theirs) {
        throw new IntegrityError(
          'INTEGRITY_WAL_CONFLICT',
          `wal segment ${seg.name} already exists in the repository with different content`,
          {
            key,
            expected: ours,
            actual: theirs,
            hint: 'two histories of this cluster write into one stanza (split-brain?); archive the new primary into a new stanza',
          },
        );
      }
      this.counters.segmentsAlreadyPresent++;
    }
    seg.durable = this.o.segmentSize;
    if (seg.partialKeys.length) {
      const keys = seg.partialKeys;
      await this.retrying('delete', keys[0]!, () => this.o.storage.delete(keys));
      seg.partialKeys = [];
    }
    emit(this.o, {
      type: 'wal.segment.durable',
      walName: seg.name,
      key,
      flushedLsn: formatLsn(seg.startLsn + BigInt(this.o.segmentSize)),
    });
  }

  /** Runs a storage call, retrying with exponential backoff while the failure may be transient. */
  private async retrying<T>(operation: string, key: string, fn: () => Promise<T>): Promise<T> {
    const initial = this.o.retryInitialMs ?? 200;
    const max = this.o.retryMaxMs ?? 10_000;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        const retryable =
          e instanceof StorageError && e.code !== 'STORAGE_CONFLICT' && !NON_RETRYABLE.has(e.code);
        if (!retryable || this.closed) throw e;
        const delayMs = Math.min(max, initial * 2 ** Math.min(attempt - 1, 16));
        this.counters.storageRetries++;
        emit(this.o, {
          type: 'storage.retry',
          operation,
          key,
          attempt,
          delayMs,
          code: e.code,
          ...(e.httpStatus ? { httpStatus: e.httpStatus } : {}),
        });
        (this.o.logger ?? noopLogger).warn('wal storage call failed, retrying', {
          operation,
          key,
          attempt,
          delayMs,
          code: e.code,
        });
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delayMs);
          this.abort.signal.addEventListener(
            'abort',
            () => {
              clearTimeout(t);
              resolve();
            },
            { once: true },
          );
        });
        if (this.closed)
          throw new AbortError(`wal storage ${operation} of ${key} abandoned on close`, { cause: e });
      }
    }
  }
}
