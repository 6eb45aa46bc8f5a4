/**
 * The continuous WAL archiver: streams WAL through a physical replication slot into a repository,
 * reconnecting with backoff, following timeline switches, and reporting to the server as flushed
 * only what is durable in the repository. See docs/design-wal.md for the durability design.
 */
import {
  AbortError,
  ConfigError,
  ConnectionError,
  IntegrityError,
  PgarkError,
  ReplicationError,
  StorageError,
  isPgarkError,
} from '../errors';
import { formatLsn, parseWalFileName, segmentStartLsn, segmentStartOf, type Lsn } from '../lsn';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import type { Storage } from '../storage/storage';
import {
  ReplicationConnection,
  type ReplicationConnectionOptions,
} from '../connection/replication-connection';
import { identifySystem } from '../replication/identify-system';
import { createReplicationSlot, readReplicationSlot } from '../replication/replication-slots';
import { getWalSegmentSize } from '../replication/show-setting';
import { timelineHistory } from '../replication/timeline-history';
import { WalStream, type WalStreamEvent } from '../replication/wal-stream';
import { assertSlotName } from '../replication/slot-name';
import { walHistoryKey } from './repo-layout';
import { openRepository, type Stanza } from './repository';
import { planWalStart } from './wal-start-plan';
import { WalSegmentWriter } from './wal-segment-writer';

export interface WalArchiverOptions extends ObserveOptions {
  /** Where to connect (a physical replication connection is opened from these). */
  connection: ReplicationConnectionOptions;
  /** The repository storage (fs or s3). */
  storage: Storage;
  /** The physical replication slot to stream through. */
  slot: string;
  /** Stanza (one cluster) inside the repository; created on first use. @default 'main' */
  stanza?: string;
  /** Create the slot (with RESERVE_WAL) if it does not exist. @default false */
  createSlot?: boolean;
  /**
   * Make every received byte durable at once and report it (so the archiver can be named in
   * synchronous_standby_names; its application_name is `connection.applicationName`, by default
   * the slot name). @default false
   */
  synchronous?: boolean;
  /**
   * Synchronous mode on a directory repository: write and fdatasync each flush with blocking system
   * calls on the event loop's thread instead of libuv's thread pool (two thread hand-offs fewer per
   * commit group; the event loop is blocked for the fdatasync). Meant for a process that only
   * archives; the CLI's `pgark wal-archive --synchronous` turns it on. @default false
   */
  blockingFlush?: boolean;
  /** Interval of unsolicited standby status updates. @default 2000 */
  statusIntervalMs?: number;
  /** Asynchronous mode: how often the incomplete segment's new bytes are made durable. @default 5000 */
  flushIntervalMs?: number;
  /** First reconnect delay; doubles up to reconnectMaxMs. @default 500 */
  reconnectInitialMs?: number;
  /** @default 30000 */
  reconnectMaxMs?: number;
  /**
   * Complete segments held in memory while they are stored under their own names in the
   * background (memory ≈ (this + 1) × wal_segment_size). @default 2
   */
  maxPendingSegments?: number;
  /** How long stop() waits for the storage to take the last bytes. @default 60000 */
  stopTimeoutMs?: number;
  signal?: AbortSignal;
}

export const WAL_ARCHIVER_DEFAULTS = {
  stanza: 'main',
  createSlot: false,
  synchronous: false,
  statusIntervalMs: 2_000,
  flushIntervalMs: 5_000,
  reconnectInitialMs: 500,
  reconnectMaxMs: 30_000,
  stopTimeoutMs: 60_000,
} as const;

export type WalArchiverState = 'connecting' | 'streaming' | 'waiting' | 'stopping' | 'stopped' | 'failed';

/** A snapshot of the archiver. LSNs are bigint; `flushedLsn` is what was reported to the server as flushed. */
export interface WalArchiverStats {
  state: WalArchiverState;
  timeline: number;
  /** End of the WAL received from the server. */
  receivedLsn: Lsn;
  /** End of the WAL held by the archiver (in memory or durable). */
  writtenLsn: Lsn;
  /** End of the WAL durable in the repository (a contiguous prefix); never more. */
  flushedLsn: Lsn;
  bytesReceived: number;
  segmentsStored: number;
  segmentsAlreadyPresent: number;
  partialFlushes: number;
  storageRetries: number;
  reconnects: number;
  lastError?: { code: string; message: string };
}

export interface WalArchiverResult {
  /** The final durable position (end of WAL durable in the repository). */
  flushedLsn: Lsn;
  timeline: number;
  segmentsStored: number;
  reconnects: number;
}

export interface WalArchiverHandle {
  /** Resolves after stop() with the final durable position; rejects on a fatal error. */
  done: Promise<WalArchiverResult>;
  /** Ends the stream, makes what was received durable (within stopTimeoutMs) and resolves when done settled. */
  stop(): Promise<void>;
  stats(): WalArchiverStats;
}

const FATAL_REPLICATION = new Set([
  'REPLICATION_SYSTEM_ID_MISMATCH',
  'REPLICATION_UNSUPPORTED_VERSION',
  'REPLICATION_SLOT_INVALID',
  'REPLICATION_SLOT_NOT_FOUND',
  'REPLICATION_WAL_REMOVED',
  'REPLICATION_TIMELINE_MISMATCH',
]);
const FATAL_STORAGE = new Set(['STORAGE_ACCESS_DENIED', 'STORAGE_INVALID_KEY', 'STORAGE_BUCKET_NOT_FOUND']);

function isFatal(e: unknown): boolean {
  if (e instanceof IntegrityError || e instanceof ConfigError || e instanceof AbortError) return true;
  if (e instanceof ReplicationError) return FATAL_REPLICATION.has(e.code);
  if (e instanceof StorageError) return FATAL_STORAGE.has(e.code);
  if (e instanceof ConnectionError)
    return e.code === 'CONNECTION_AUTH_FAILED' || e.code === 'CONNECTION_PERMISSION_DENIED';
  return !isPgarkError(e);
}

/**
 * Starts archiving WAL continuously (START_REPLICATION SLOT … PHYSICAL) into `storage`.
 *
 * Guarantees:
 * - The flush position sent to the server (and `flushedLsn` in stats and events) is the end of the
 *   WAL durable in the repository, never more; write and flush are reported separately. The slot's
 *   restart_lsn follows it, so the slot never runs ahead of the repository.
 * - Segments appear under their standard names only when complete; the newest incomplete one is
 *   kept as sequenced partial chunks while streaming and as `<segment>.partial` after stop. In
 *   synchronous mode a completed segment is first made durable as its last chunk (the flush
 *   position moves on at once) and stored whole in the background, at most `maxPendingSegments`
 *   waiting; restoreBackup's `walTail` reads such chunk-only segments and the partial tip.
 * - On a restart it resumes from what the repository holds (then the slot on 15+, then the server
 *   position), re-streaming a partial segment from its start and verifying the bytes it already has.
 * - On every (re)connect the server's system identifier is checked against the stanza's
 *   (IntegrityError INTEGRITY_SYSTEM_ID_MISMATCH for another cluster).
 * - A timeline switch (promotion) archives the `.history` file, keeps the old timeline's last
 *   segment as partial and continues on the new timeline without a restart.
 * - A segment already archived with the same bytes is fine; with other bytes it is IntegrityError
 *   INTEGRITY_WAL_CONFLICT (how a split-brain shows up).
 * - Lost connections and failing storage are retried with backoff; events: `replication.disconnected`,
 *   `replication.resumed`, `storage.retry`, `wal.segment.durable`, `wal.partial.durable`, `wal.flush`,
 *   `wal.history.durable`, `replication.timeline-switch`.
 *
 * Fatal errors reject `done`: IntegrityError (INTEGRITY_SYSTEM_ID_MISMATCH, INTEGRITY_WAL_CONFLICT),
 * ReplicationError (REPLICATION_SLOT_NOT_FOUND, REPLICATION_WAL_REMOVED, REPLICATION_TIMELINE_MISMATCH, …),
 * ConnectionError CONNECTION_AUTH_FAILED / CONNECTION_PERMISSION_DENIED, StorageError STORAGE_ACCESS_DENIED.
 *
 * @example
 * ```ts
 * const archiver = startWalArchiver({
 *   connection: { host: 'db1', user: 'replicator', password },
 *   storage: createFsStorage({ root: '/var/lib/pgark' }),
 *   slot: 'pgark', createSlot: true, synchronous: true,
 *   onEvent: (e) => console.log(e.type),
 * });
 * process.on('SIGTERM', () => void archiver.stop());
 * const { flushedLsn } = await archiver.done;
 * ```
 */
export function startWalArchiver(options: WalArchiverOptions): WalArchiverHandle {
  const archiver = new WalArchiver(options);
  return {
    done: archiver.done,
    stop: () => archiver.stop(),
    stats: () => archiver.stats(),
  };
}

class WalArchiver {
  readonly done: Promise<WalArchiverResult>;
  private readonly o: WalArchiverOptions;
  private readonly stanzaName: string;
  private state: WalArchiverState = 'connecting';
  private stopping = false;
  private writer: WalSegmentWriter | undefined;
  private stream: WalStream | undefined;
  private conn: ReplicationConnection | undefined;
  private stanza: Stanza | undefined;
  private segmentSize = 0;
  private bytesReceived = 0;
  private reconnects = 0;
  private lastError: { code: string; message: string } | undefined;
  private wakeSleep: (() => void) | undefined;
  private slotChecked = false;

  constructor(options: WalArchiverOptions) {
    this.o = options;
    this.stanzaName = options.stanza ?? WAL_ARCHIVER_DEFAULTS.stanza;
    this.done = Promise.resolve().then(() => {
      assertSlotName(options.slot);
      if (!options.storage)
        throw new ConfigError('CONFIG_INVALID_OPTION', 'startWalArchiver needs a storage');
      return this.run();
    });
    // A caller that only uses stop() must not see an unhandled rejection; done still rejects.
    this.done.catch(() => undefined);
    options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  stats(): WalArchiverStats {
    const w = this.writer;
    const c = w?.counters;
    const s: WalArchiverStats = {
      state: this.state,
      timeline: w?.timeline ?? 0,
      receivedLsn: this.stream?.positions().receivedLsn ?? w?.writtenLsn ?? 0n,
      writtenLsn: w?.writtenLsn ?? 0n,
      flushedLsn: w?.flushedLsn ?? 0n,
      bytesReceived: this.bytesReceived,
      segmentsStored: c?.segmentsStored ?? 0,
      segmentsAlreadyPresent: c?.segmentsAlreadyPresent ?? 0,
      partialFlushes: c?.partialFlushes ?? 0,
      storageRetries: c?.storageRetries ?? 0,
      reconnects: this.reconnects,
    };
    if (this.lastError) s.lastError = this.lastError;
    return s;
  }

  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      if (this.state !== 'failed' && this.state !== 'stopped') this.state = 'stopping';
      this.stream?.stop();
      this.wakeSleep?.();
    }
    await this.done.catch(() => undefined);
  }

  private get logger() {
    return this.o.logger ?? noopLogger;
  }

  private async run(): Promise<WalArchiverResult> {
    let attempt = 0;
    let gapStartedAt: number | undefined;
    try {
      while (!this.stopping) {
        try {
          this.state = 'connecting';
          await this.connectAndPrepare();
          const writer = this.writer!;
          if (gapStartedAt !== undefined) {
            emit(this.o, {
              type: 'replication.resumed',
              startLsn: formatLsn(writer.resumeLsn),
              timeline: writer.timeline,
              gapMs: Date.now() - gapStartedAt,
            });
            gapStartedAt = undefined;
          }
          attempt = 0;
          await this.streamTimelines();
        } catch (e) {
          if (this.writer?.error) throw this.writer.error;
          if (isFatal(e)) throw e;
          const err = e as PgarkError;
          this.lastError = { code: err.code, message: err.message };
          if (this.stopping) break;
          attempt++;
          this.reconnects++;
          gapStartedAt ??= Date.now();
          const initial = this.o.reconnectInitialMs ?? WAL_ARCHIVER_DEFAULTS.reconnectInitialMs;
          const max = this.o.reconnectMaxMs ?? WAL_ARCHIVER_DEFAULTS.reconnectMaxMs;
          const delay = Math.min(max, initial * 2 ** Math.min(attempt - 1, 16));
          emit(this.o, {
            type: 'replication.disconnected',
            code: err.code,
            message: err.message,
            retryInMs: delay,
            attempt,
          });
          this.logger.warn('wal archiver lost its stream, reconnecting', {
            code: err.code,
            attempt,
            retryInMs: delay,
          });
          this.state = 'waiting';
          await this.sleep(delay);
        } finally {
          this.stream = undefined;
          const c = this.conn;
          this.conn = undefined;
          await c?.close();
        }
      }
      return await this.finish();
    } catch (e) {
      this.state = 'failed';
      const err = isPgarkError(e)
        ? e
        : new StorageError('STORAGE_IO', `wal archiver failed: ${String(e)}`, { cause: e });
      this.lastError = { code: err.code, message: err.message };
      this.logger.error('wal archiver failed', { code: err.code, message: err.message });
      await this.writer?.close();
      throw err;
    }
  }

  /** Connects, checks the cluster identity against the stanza, and (first time) plans the start. */
  private async connectAndPrepare(): Promise<void> {
    const o = this.o;
    const conn = await ReplicationConnection.connect({
      ...o.connection,
      applicationName: o.connection.applicationName ?? o.slot,
      logger: o.connection.logger ?? o.logger,
      onEvent: o.connection.onEvent ?? o.onEvent,
    });
    this.conn = conn;
    const id = await identifySystem(conn);
    const segSize = await getWalSegmentSize(conn);
    const pgMajor = Math.floor(conn.serverVersionNum / 10000);
    // Checked on every (re)connect: a different cluster behind the same address is refused.
    const repo = await openRepository(o.storage, { create: true });
    this.stanza = await repo.openStanza(this.stanzaName, {
      systemIdentifier: id.systemIdentifier,
      pgMajor,
      walSegmentSize: segSize,
      create: true,
    });
    if (!this.slotChecked) {
      if (o.createSlot) {
        try {
          await createReplicationSlot(conn, { name: o.slot, reserveWal: true });
          this.logger.info('created replication slot', { slot: o.slot });
        } catch (e) {
          if (!(isPgarkError(e) && e.code === 'REPLICATION_SLOT_EXISTS')) throw e;
        }
      }
      this.slotChecked = true;
    }
    if (!this.writer) {
      this.segmentSize = segSize;
      let slotInfo;
      if (conn.serverVersionNum >= 150000) {
        slotInfo = await readReplicationSlot(conn, o.slot);
        if (!slotInfo) {
          throw new ReplicationError(
            'REPLICATION_SLOT_NOT_FOUND',
            `replication slot "${o.slot}" does not exist on ${conn.target}`,
            {
              slotName: o.slot,
              hint: 'create it (createSlot option / --create-slot)',
            },
          );
        }
      }
      const objects = [];
      for await (const obj of this.stanza.listWal()) {
        const p = obj.parsed;
        if (
          p.kind === 'wal-segment' ||
          p.kind === 'wal-partial' ||
          p.kind === 'wal-partial-chunk' ||
          p.kind === 'wal-partial-padded'
        ) {
          objects.push({ kind: p.kind, walName: p.walName, key: obj.key });
        }
      }
      const plan = planWalStart({
        objects,
        segmentSize: segSize,
        slot: slotInfo,
        server: { timeline: id.timeline, xlogPos: id.xlogPos },
      });
      if (plan.staleKeys.length) await o.storage.delete(plan.staleKeys);
      this.logger.info('wal archiver start position', {
        startLsn: formatLsn(plan.startLsn),
        timeline: plan.timeline,
        source: plan.source,
      });
      const writer = new WalSegmentWriter({
        storage: o.storage,
        stanza: this.stanzaName,
        segmentSize: segSize,
        synchronous: o.synchronous ?? WAL_ARCHIVER_DEFAULTS.synchronous,
        blockingFlush: o.blockingFlush === true,
        flushIntervalMs: o.flushIntervalMs ?? WAL_ARCHIVER_DEFAULTS.flushIntervalMs,
        logger: o.logger,
        onEvent: o.onEvent,
        onFlushed: (lsn) => {
          const s = this.stream;
          if (s) {
            s.reportFlushed(lsn, true);
            s.reportWritten(this.writer?.writtenLsn ?? lsn);
          }
          // Built only for a listener: in synchronous mode this runs once per commit group.
          if (this.o.onEvent)
            emit(this.o, {
              type: 'wal.flush',
              writtenLsn: formatLsn(this.writer?.writtenLsn ?? lsn),
              flushedLsn: formatLsn(lsn),
            });
        },
        onFailed: () => this.stream?.stop(),
        ...(o.maxPendingSegments !== undefined ? { maxPendingSegments: o.maxPendingSegments } : {}),
      });
      // Segments a previous run made wholly durable as chunks but did not store whole yet.
      const chunked = new Set(objects.filter((x) => x.kind === 'wal-partial-chunk').map((x) => x.walName));
      const whole = new Set(objects.filter((x) => x.kind === 'wal-segment').map((x) => x.walName));
      // And those whose padded file is complete (a newer segment exists: wal-start-plan.ts).
      const paddedComplete = new Set(plan.completedPadded);
      const candidates = [...new Set([...chunked, ...paddedComplete])]
        .filter((n) => !whole.has(n) && n !== plan.resumePartial)
        .sort()
        .map((name) => {
          const { timeline, segno } = parseWalFileName(name, segSize);
          return {
            timeline,
            name,
            startLsn: segmentStartLsn(segno, segSize),
            paddedComplete: paddedComplete.has(name),
          };
        });
      if (candidates.length) await writer.storeCompletedPartials(candidates);
      await writer.begin(plan.timeline, plan.startLsn);
      this.writer = writer;
    } else if (segSize !== this.segmentSize) {
      throw new IntegrityError(
        'INTEGRITY_SYSTEM_ID_MISMATCH',
        `the server's wal segment size changed from ${this.segmentSize} to ${segSize}`,
      );
    }
  }

  /** Streams from the writer's resume point, following timeline switches on the same connection. */
  private async streamTimelines(): Promise<void> {
    const conn = this.conn!;
    const writer = this.writer!;
    if (writer.timeline > 1) await this.archiveHistory(conn, writer.timeline);
    for (;;) {
      const startLsn = writer.resumeLsn;
      const timeline = writer.timeline;
      const stream = await WalStream.start({
        connection: conn,
        startLsn,
        timeline,
        slot: this.o.slot,
        statusIntervalMs: this.o.statusIntervalMs ?? WAL_ARCHIVER_DEFAULTS.statusIntervalMs,
        logger: this.o.logger,
        onEvent: this.o.onEvent,
      });
      this.stream = stream;
      this.state = 'streaming';
      // What the repository already holds is durable: tell the server at once.
      if (writer.flushedLsn > 0n) stream.reportFlushed(writer.flushedLsn, true);
      if (this.stopping) stream.stop();
      for await (const first of stream) {
        // Everything the connection has already received goes to the writer in one go (no promise
        // per message), then one flush covers all of it (synchronous mode with a blocking file: on
        // this tick, and the status update with it; otherwise the writer's loop flushes).
        for (let ev: WalStreamEvent | undefined = first; ev; ev = stream.takeBuffered()) {
          if (ev.type !== 'xlogdata') continue;
          const wait = writer.append(ev.startLsn, ev.data);
          if (wait) await wait;
          this.bytesReceived += ev.data.length;
          stream.reportWritten(writer.writtenLsn);
        }
        writer.flushNow();
      }
      if (writer.error) throw writer.error;
      const end = stream.end!;
      if (end.reason === 'end-of-timeline') {
        // The old timeline's last segment stays partial; the new timeline's copy of it comes next.
        await writer.compact(false);
        await this.archiveHistory(conn, end.nextTimeline);
        await writer.begin(end.nextTimeline, segmentStartOf(end.nextStartLsn, this.segmentSize));
        continue;
      }
      if (end.reason === 'stopped') return;
      throw new ReplicationError(
        'REPLICATION_WAL_GAP',
        `server ended the wal stream at ${formatLsn(end.receivedLsn)} without a next timeline`,
      );
    }
  }

  /** Stores `<tli>.history` (create-only; an existing one must have the same bytes). */
  private async archiveHistory(conn: ReplicationConnection, timeline: number): Promise<void> {
    const key = walHistoryKey(this.stanzaName, timeline);
    const { content } = await timelineHistory(conn, timeline);
    try {
      await this.o.storage.put(key, content, { ifAbsent: true, contentLength: content.length });
    } catch (e) {
      if (!(isPgarkError(e) && e.code === 'STORAGE_CONFLICT')) throw e;
      const chunks: Buffer[] = [];
      for await (const c of await this.o.storage.get(key)) chunks.push(c as Buffer);
      if (!Buffer.concat(chunks).equals(content)) {
        throw new IntegrityError(
          'INTEGRITY_WAL_CONFLICT',
          `timeline history ${timeline} already exists in the repository with different content`,
          {
            key,
            hint: 'two histories of this cluster write into one stanza (split-brain?)',
          },
        );
      }
    }
    emit(this.o, { type: 'wal.history.durable', timeline, key });
  }

  private async finish(): Promise<WalArchiverResult> {
    this.state = 'stopping';
    const writer = this.writer;
    if (writer) {
      const timeoutMs = this.o.stopTimeoutMs ?? WAL_ARCHIVER_DEFAULTS.stopTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      try {
        const r = await Promise.race([writer.compact(true).then(() => 'ok' as const), timedOut]);
        if (r === 'timeout')
          this.logger.warn('wal archiver stopped before the storage took the last bytes', {
            flushedLsn: formatLsn(writer.flushedLsn),
          });
      } finally {
        clearTimeout(timer);
        await writer.close();
      }
      if (writer.error && !(writer.error instanceof AbortError)) throw writer.error;
    }
    this.state = 'stopped';
    const result: WalArchiverResult = {
      flushedLsn: writer?.flushedLsn ?? 0n,
      timeline: writer?.timeline ?? 0,
      segmentsStored: writer?.counters.segmentsStored ?? 0,
      reconnects: this.reconnects,
    };
    this.logger.info('wal archiver stopped', {
      flushedLsn: formatLsn(result.flushedLsn),
      timeline: result.timeline,
    });
    return result;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeSleep = undefined;
        resolve();
      }, ms);
      this.wakeSleep = () => {
        clearTimeout(t);
        this.wakeSleep = undefined;
        resolve();
      };
    });
  }
}
