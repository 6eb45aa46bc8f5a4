/**
 * A physical WAL stream: `START_REPLICATION [SLOT s] PHYSICAL X/X TIMELINE n` on a replication
 * connection, pulled message by message (the socket stays paused while the consumer is busy).
 *
 * What it does for the consumer:
 * - yields XLogData chunks with their LSNs and checks that each starts where the previous ended
 *   (receivelog.c ProcessXLogDataMsg: "got WAL data offset %08x, expected %08x");
 * - answers a keepalive that asks for a reply at once, and sends a standby status update at least
 *   every `statusIntervalMs` from a timer, so a consumer blocked on slow storage is not dropped for
 *   wal_sender_timeout (walsender.c WalSndCheckTimeOut counts any client message);
 * - reports the write and flush positions the CONSUMER gives it, never more: the server moves a
 *   slot's restart_lsn to the flush position (walsender.c PhysicalConfirmReceivedLocation) and
 *   releases synchronous commits up to it (SyncRepReleaseWaiters). Until the consumer reports a
 *   flush, flush is sent as 0 ("invalid"), which leaves the slot where it is.
 * - surfaces the end of a historic timeline: the server's CopyDone, then the tuple
 *   (next_tli, next_tli_startpos) (walsender.c StartReplication; receivelog.c
 *   ReadEndOfStreamingResult). A historic timeline asked for exactly at its switch point returns
 *   that tuple without entering COPY; both look the same here.
 * - stops at a requested end LSN (`endLsn`/`setEndLsn`) or on `stop()`: it sends CopyDone and
 *   drains the server's answer, so the connection can be reused afterwards.
 *
 * It does not store anything and does not reconnect: the archiver and the base backup's `-X stream`
 * build those on top.
 */
import { ConfigError, PgarkError, ProtocolError, ReplicationError } from '../errors';
import { formatLsn, parseLsn, type Lsn } from '../lsn';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import { buildStandbyStatusUpdate, parseReplicationMessage } from '../protocol';
import type {
  CommandEvent,
  CommandStream,
  ReplicationConnection,
} from '../connection/replication-connection';
import { buildStartReplicationCommand } from './start-replication-command';

export interface WalStreamOptions extends ObserveOptions {
  /** An open physical replication connection with no command running. */
  connection: ReplicationConnection;
  /** Where the stream starts (pg_receivewal rounds it down to a segment start; so should you). */
  startLsn: Lsn;
  timeline: number;
  /** A physical slot to stream through (it must exist). */
  slot?: string;
  /** Stop once WAL up to this LSN has been received. Can also be set later with `setEndLsn`. */
  endLsn?: Lsn;
  /** Interval of unsolicited standby status updates. @default 10000 (pg_receivewal's -s) */
  statusIntervalMs?: number;
  signal?: AbortSignal;
}

/** What the stream yields. `data` is a view that pgark never overwrites; keep it or copy it as you like. */
export type WalStreamEvent =
  | { type: 'xlogdata'; startLsn: Lsn; endLsn: Lsn; walEnd: Lsn; data: Buffer }
  | { type: 'keepalive'; walEnd: Lsn; replyRequested: boolean };

/** Why the stream ended (available as `stream.end` once the iterator is done). */
export type WalStreamEnd =
  /** The timeline ended on the server (promotion); continue on `nextTimeline` from the segment of `nextStartLsn`. */
  | { reason: 'end-of-timeline'; timeline: number; nextTimeline: number; nextStartLsn: Lsn; receivedLsn: Lsn }
  /** `stop()` was called, or `endLsn` was reached. */
  | { reason: 'stopped'; receivedLsn: Lsn }
  /** The server ended the copy without a next timeline (it should not happen on a current timeline). */
  | { reason: 'server-ended'; receivedLsn: Lsn };

export interface WalStreamPositions {
  /** End of the WAL received so far (last byte + 1). */
  receivedLsn: Lsn;
  /** As reported by the consumer through `reportWritten`. */
  writtenLsn: Lsn;
  /** As reported by the consumer through `reportFlushed`: durable in its storage. */
  flushedLsn: Lsn;
  /** The server's last walEnd (its send limit), from XLogData or keepalive. */
  serverWalEnd: Lsn;
  /** Time of the last message from the server. */
  lastMessageAt: Date | undefined;
}

export const WAL_STREAM_DEFAULTS = {
  statusIntervalMs: 10_000,
} as const;

/**
 * An open WAL stream. Iterate it once (`for await (const ev of stream)`); when the loop ends,
 * `end` says why. Errors (server errors, a closed connection, a WAL gap) are thrown from the loop.
 */
export class WalStream implements AsyncIterable<WalStreamEvent> {
  readonly startLsn: Lsn;
  readonly timeline: number;
  private readonly conn: ReplicationConnection;
  private readonly cmd: CommandStream;
  private readonly options: WalStreamOptions;
  private received: Lsn;
  private written: Lsn = 0n;
  private flushed: Lsn = 0n;
  private serverWalEnd: Lsn = 0n;
  /** Date.now() of the last message (a number: this runs per message). */
  private lastMessageAtMs: number | undefined;
  /** The last xlogdata handed out may have reached endLsn: checked before the next event. */
  private endCheckPending = false;
  private endLsn: Lsn | undefined;
  private inCopy = false;
  private clientCopyDone = false;
  private timer: NodeJS.Timeout | undefined;
  private endResult: WalStreamEnd | undefined;
  private firstEvent: CommandEvent | undefined;
  private nextTuple: (Buffer | null)[] | undefined;
  private stopRequested = false;
  private sendChain: Promise<void> = Promise.resolve();
  /** Status updates written whose sendCopyData has not settled (waiting for 'drain'). */
  private sendsPending = 0;
  private iterating = false;
  private readonly onAbort = (): void => this.stop();

  private constructor(options: WalStreamOptions, cmd: CommandStream) {
    this.options = options;
    this.conn = options.connection;
    this.cmd = cmd;
    this.startLsn = options.startLsn;
    this.timeline = options.timeline;
    this.received = options.startLsn;
    this.endLsn = options.endLsn;
  }

  /**
   * Sends START_REPLICATION and waits for the server to accept it (CopyBothResponse) or to answer
   * at once with the end of a historic timeline. Server refusals (slot missing, start ahead of the
   * server's flush, timeline not in history, WAL removed) throw typed errors.
   *
   * Errors: ReplicationError REPLICATION_SLOT_NOT_FOUND, REPLICATION_SLOT_IN_USE,
   * REPLICATION_WAL_REMOVED, REPLICATION_TIMELINE_MISMATCH; PostgresServerError for others;
   * ConnectionError when the connection fails.
   */
  static async start(options: WalStreamOptions): Promise<WalStream> {
    const sql = buildStartReplicationCommand(options);
    const interval = options.statusIntervalMs ?? WAL_STREAM_DEFAULTS.statusIntervalMs;
    if (!(interval > 0))
      throw new ConfigError('CONFIG_INVALID_OPTION', `statusIntervalMs must be > 0 (got ${interval})`);
    const cmd = options.connection.copyBoth(sql);
    const stream = new WalStream(options, cmd);
    let first: IteratorResult<CommandEvent, undefined>;
    try {
      first = await cmd.next();
    } catch (e) {
      throw mapStartError(e, options);
    }
    if (!first.done) {
      if (first.value.type === 'copyBothStart') {
        stream.inCopy = true;
        stream.timer = setInterval(() => stream.queueStatus(false), interval);
        stream.timer.unref();
        options.signal?.addEventListener('abort', stream.onAbort, { once: true });
        if (options.signal?.aborted) stream.stop();
      } else {
        stream.firstEvent = first.value;
      }
    } else {
      stream.endResult = { reason: 'server-ended', receivedLsn: stream.received };
    }
    (options.logger ?? noopLogger).debug('wal stream started', {
      startLsn: formatLsn(options.startLsn),
      timeline: options.timeline,
      slot: options.slot,
      copy: stream.inCopy,
    });
    return stream;
  }

  /** Why the stream ended; `undefined` while it runs. */
  get end(): WalStreamEnd | undefined {
    return this.endResult;
  }

  positions(): WalStreamPositions {
    return {
      receivedLsn: this.received,
      writtenLsn: this.written,
      flushedLsn: this.flushed,
      serverWalEnd: this.serverWalEnd,
      lastMessageAt: this.lastMessageAtMs === undefined ? undefined : new Date(this.lastMessageAtMs),
    };
  }

  /** The consumer has written (not necessarily made durable) WAL up to `lsn`. Never moves back. */
  reportWritten(lsn: Lsn): void {
    if (lsn > this.written) this.written = lsn;
  }

  /**
   * The consumer has made WAL up to `lsn` durable. Never report more than is durable: the slot's
   * restart_lsn follows it and synchronous commits are released by it. Never moves back.
   * With `sendNow`, a status update goes out at once (synchronous replication needs that).
   */
  reportFlushed(lsn: Lsn, sendNow = false): void {
    if (lsn > this.flushed) this.flushed = lsn;
    if (lsn > this.written) this.written = lsn;
    if (sendNow) this.queueStatus(false);
  }

  /** Sets (or moves) the LSN at which the stream stops by itself. */
  setEndLsn(lsn: Lsn): void {
    this.endLsn = lsn;
    if (this.received >= lsn) this.stop();
  }

  /** Sends a standby status update now, with the reported positions. */
  sendStatus(replyRequested = false): Promise<void> {
    this.queueStatus(replyRequested);
    return this.sendChain;
  }

  /**
   * Ends the stream: sends a last status update and CopyDone. The iterator yields what the server
   * still sends before its own CopyDone, then finishes with `end.reason === 'stopped'`.
   */
  stop(): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    if (this.inCopy && !this.clientCopyDone) {
      this.queueStatus(false);
      this.sendChain = this.sendChain.then(() => this.sendCopyDoneOnce());
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<WalStreamEvent> {
    if (this.iterating)
      throw new ConfigError('CONFIG_INVALID_OPTION', 'a wal stream can be iterated only once');
    this.iterating = true;
    return this.events();
  }

  // -------------------------------------------------------------------------------------------

  /**
   * The next event the connection has already received, decoded without waiting (no promise), or
   * `undefined` when none is buffered: then go on iterating. Used while iterating, between two
   * events of the loop, to take everything one socket read delivered before acting on it (a
   * synchronous flush covers all of it, as pg_receivewal drains its socket before each fsync).
   */
  takeBuffered(): WalStreamEvent | undefined {
    try {
      for (;;) {
        this.checkEnd();
        const ev = this.takeReceived();
        if (ev === undefined) return undefined;
        const out = this.handle(ev);
        if (out !== undefined) return out;
      }
    } catch (e) {
      throw mapStreamError(e, this.options);
    }
  }

  private async *events(): AsyncGenerator<WalStreamEvent, void, undefined> {
    try {
      for (;;) {
        this.checkEnd();
        let ev = this.takeReceived();
        if (ev === undefined) {
          const r = await this.cmd.next();
          if (r.done) break;
          ev = r.value;
        }
        const out = this.handle(ev);
        if (out !== undefined) yield out;
      }
      await this.sendChain;
      this.endResult = this.decideEnd();
    } catch (e) {
      throw mapStreamError(e, this.options);
    } finally {
      this.clearTimer();
      this.options.signal?.removeEventListener('abort', this.onAbort);
      if (!this.cmd.finished) await this.cmd.return?.();
    }
  }

  /** The next command event already here: the one START_REPLICATION's answer left, then the buffered ones. */
  private takeReceived(): CommandEvent | undefined {
    const first = this.firstEvent;
    if (first === undefined) return this.cmd.takeBuffered();
    this.firstEvent = undefined;
    return first;
  }

  /** Stops once the consumer had the xlogdata that reached endLsn (it asks for more after it). */
  private checkEnd(): void {
    if (!this.endCheckPending) return;
    this.endCheckPending = false;
    if (this.endLsn !== undefined && this.received >= this.endLsn) this.stop();
  }

  /** Decodes one event of the copy: what to hand to the consumer, if anything. */
  private handle(ev: CommandEvent): WalStreamEvent | undefined {
    this.lastMessageAtMs = Date.now();
    switch (ev.type) {
      case 'copyData': {
        const msg = parseReplicationMessage(ev.data);
        if (msg.type === 'keepalive') {
          if (msg.walEnd > this.serverWalEnd) this.serverWalEnd = msg.walEnd;
          // receivelog.c: reply at once when asked; the server drops us otherwise.
          if (msg.replyRequested) this.queueStatus(false);
          return { type: 'keepalive', walEnd: msg.walEnd, replyRequested: msg.replyRequested };
        }
        if (msg.walEnd > this.serverWalEnd) this.serverWalEnd = msg.walEnd;
        if (msg.dataStart !== this.received) {
          throw new ReplicationError(
            'REPLICATION_WAL_GAP',
            `got wal data at ${formatLsn(msg.dataStart)}, expected ${formatLsn(this.received)}`,
          );
        }
        if (msg.data.length === 0) return undefined;
        const startLsn = this.received;
        this.received += BigInt(msg.data.length);
        this.endCheckPending = true;
        return { type: 'xlogdata', startLsn, endLsn: this.received, walEnd: msg.walEnd, data: msg.data };
      }
      case 'copyDone':
        // The server ended its half (end of a historic timeline, or the echo of our CopyDone).
        this.inCopy = false;
        this.clearTimer();
        if (!this.clientCopyDone) {
          // receivelog.c HandleEndOfCopyStream: answer with our CopyDone; no status updates after it.
          this.sendChain = this.sendChain.then(() => this.sendCopyDoneOnce());
        }
        return undefined;
      case 'dataRow':
        this.nextTuple = ev.values;
        return undefined;
      case 'rowDescription':
      case 'commandComplete':
      case 'notice':
      case 'copyBothStart':
        return undefined;
      default:
        throw new ProtocolError(
          'PROTOCOL_UNEXPECTED_MESSAGE',
          `unexpected ${ev.type} during START_REPLICATION`,
        );
    }
  }

  private decideEnd(): WalStreamEnd {
    const t = this.nextTuple;
    if (t && t.length >= 2 && t[0] && t[1]) {
      const nextTimeline = Number(t[0].toString('utf8'));
      const nextStartLsn = parseLsn(t[1].toString('utf8'));
      // receivelog.c ReadEndOfStreamingResult: the next timeline must be newer.
      if (!(nextTimeline > this.timeline)) {
        throw new ReplicationError(
          'REPLICATION_TIMELINE_MISMATCH',
          `server reported next timeline ${nextTimeline} after timeline ${this.timeline}`,
        );
      }
      emit(this.options, {
        type: 'replication.timeline-switch',
        fromTimeline: this.timeline,
        toTimeline: nextTimeline,
        switchLsn: formatLsn(nextStartLsn),
      });
      return {
        reason: 'end-of-timeline',
        timeline: this.timeline,
        nextTimeline,
        nextStartLsn,
        receivedLsn: this.received,
      };
    }
    if (this.stopRequested) return { reason: 'stopped', receivedLsn: this.received };
    return { reason: 'server-ended', receivedLsn: this.received };
  }

  private queueStatus(replyRequested: boolean): void {
    if (!this.inCopy || this.clientCopyDone) return;
    const payload = buildStandbyStatusUpdate({
      writeLsn: this.written,
      flushLsn: this.flushed,
      // An archiver applies nothing (receivelog.c sends InvalidXLogRecPtr).
      applyLsn: 0n,
      replyRequested,
    });
    // Nothing queued before it: written on this tick, not a few promise hops later (a synchronous
    // commit waits for this message; bench-wal.md measured ~60 µs of hops). Otherwise in order.
    if (this.sendsPending === 0) this.sendChain = this.sendStatusNow(payload);
    else this.sendChain = this.sendChain.then(() => this.sendStatusNow(payload));
  }

  private sendStatusNow(payload: Buffer): Promise<void> {
    if (!this.inCopy || this.clientCopyDone || this.conn.closed) return Promise.resolve();
    this.sendsPending++;
    // sendCopyData writes to the socket before it returns; its promise only waits for 'drain'.
    return this.conn
      .sendCopyData(payload)
      .catch((e: unknown) => {
        // The read side reports a broken connection; a failed status write must not be unhandled.
        (this.options.logger ?? noopLogger).debug('status update not sent', { error: String(e) });
      })
      .finally(() => {
        this.sendsPending--;
      });
  }

  private sendCopyDoneOnce(): void {
    if (this.clientCopyDone || this.conn.closed) return;
    this.clientCopyDone = true;
    this.clearTimer();
    try {
      this.conn.sendCopyDone();
    } catch (e) {
      (this.options.logger ?? noopLogger).debug('copy done not sent', { error: String(e) });
    }
  }

  private clearTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Starts a WAL stream; see WalStream.start. */
export function startWalStream(options: WalStreamOptions): Promise<WalStream> {
  return WalStream.start(options);
}

/** Maps a server refusal of START_REPLICATION to the typed replication errors. */
function mapStartError(e: unknown, o: WalStreamOptions): unknown {
  return mapStreamError(e, o);
}

function mapStreamError(e: unknown, o: WalStreamOptions): unknown {
  if (!(e instanceof PgarkError) || e.code !== 'SERVER_ERROR') return e;
  const se = e as PgarkError & { sqlstate?: string };
  const msg = e.message;
  const opts = { cause: e, sqlstate: se.sqlstate, ...(o.slot ? { slotName: o.slot } : {}) };
  // walsender.c StartReplication / slot.c ReplicationSlotAcquire; WalSndSegmentOpen (xlogreader).
  if (se.sqlstate === '42704' || /replication slot .* does not exist/.test(msg)) {
    return new ReplicationError('REPLICATION_SLOT_NOT_FOUND', msg, {
      ...opts,
      hint: 'create the slot first (createSlot option / --create-slot)',
    });
  }
  if (se.sqlstate === '55006' || /is active for PID/.test(msg)) {
    return new ReplicationError('REPLICATION_SLOT_IN_USE', msg, opts);
  }
  if (/has already been removed/.test(msg)) {
    return new ReplicationError('REPLICATION_WAL_REMOVED', msg, {
      ...opts,
      hint: 'use a replication slot so the server keeps the WAL the archive still needs',
    });
  }
  if (/not in this server's history|timeline .* is not|invalid timeline/i.test(msg)) {
    return new ReplicationError('REPLICATION_TIMELINE_MISMATCH', msg, opts);
  }
  if (
    /cannot use a logical replication slot|cannot be used with a logical|logical replication slot/i.test(msg)
  ) {
    return new ReplicationError('REPLICATION_SLOT_INVALID', msg, opts);
  }
  return e;
}
