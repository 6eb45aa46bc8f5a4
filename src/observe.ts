/**
 * Observability without dependencies: a Logger interface (pino and console fit it) and the
 * PgarkEvent union with a stable `type` for every event a long-running operation emits.
 * Metrics and alerts hang off events. Nothing here writes anywhere by itself.
 *
 * Event payloads never carry secrets. LSNs in events are strings in PostgreSQL's `X/X` form so that
 * events serialise to JSON as they are.
 */

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/** The default logger: says nothing. */
export const noopLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** Every event pgark emits. Add new variants here; never change the meaning of an existing `type`. */
export type PgarkEvent =
  // storage
  | {
      type: 'storage.retry';
      operation: string;
      key?: string;
      attempt: number;
      delayMs: number;
      httpStatus?: number;
      code: string;
    }
  | { type: 'storage.upload.part'; key: string; partNumber: number; bytes: number }
  // connection
  | { type: 'connection.opened'; target: string; serverVersion: number }
  | { type: 'connection.closed'; target: string; error?: string }
  // base backup
  | { type: 'backup.started'; backupId: string; startLsn: string; timeline: number }
  | {
      type: 'backup.progress';
      backupId: string;
      bytesDone: number;
      bytesEstimated?: number;
      archive?: string;
    }
  | { type: 'backup.archive.completed'; backupId: string; archive: string; key: string; bytes: number }
  | { type: 'backup.completed'; backupId: string; startLsn: string; endLsn: string; bytes: number }
  | { type: 'backup.failed'; backupId: string; code: string; message: string }
  // WAL
  | { type: 'wal.segment.durable'; walName: string; key: string; flushedLsn: string }
  | { type: 'wal.partial.durable'; walName: string; key: string; flushedLsn: string }
  | { type: 'wal.flush'; writtenLsn: string; flushedLsn: string }
  | { type: 'wal.history.durable'; timeline: number; key: string }
  | {
      type: 'wal.archive.pushed';
      walName: string;
      kind: 'segment' | 'partial' | 'history' | 'backup-history';
      key: string;
      bytes: number;
      alreadyArchived: boolean;
    }
  | {
      type: 'wal.archive.fetched';
      walName: string;
      found: boolean;
      fromSpool: boolean;
      key?: string;
      bytes?: number;
      prefetched: number;
    }
  | { type: 'replication.timeline-switch'; fromTimeline: number; toTimeline: number; switchLsn: string }
  | { type: 'replication.disconnected'; code: string; message: string; retryInMs: number; attempt: number }
  | { type: 'replication.resumed'; startLsn: string; timeline: number; gapMs: number }
  // restore
  | { type: 'restore.started'; backupId: string; targetDir: string }
  | { type: 'restore.progress'; backupId: string; bytesDone: number; bytesTotal?: number }
  | { type: 'restore.completed'; backupId: string; targetDir: string; bytes: number }
  /** A restore-point or xid target looked up in the WAL a restore would replay (src/restore/target-scan.ts). */
  | {
      type: 'restore.target-scan';
      backupId: string;
      target: string;
      verdict: 'found' | 'before' | 'not-found' | 'unknown';
      lsn?: string;
      bytesScanned: number;
      segmentsScanned: number;
    };

export type PgarkEventType = PgarkEvent['type'];

/** Shared by every long-running operation: where its logs and events go. */
export interface ObserveOptions {
  /** @default a logger that says nothing */
  logger?: Logger;
  /** Called synchronously for each event; an exception thrown here is logged and ignored. */
  onEvent?: (event: PgarkEvent) => void;
}

/** Emits an event to the caller's handler without letting a faulty handler break the operation. */
export function emit(options: ObserveOptions | undefined, event: PgarkEvent): void {
  if (!options?.onEvent) return;
  try {
    options.onEvent(event);
  } catch (e) {
    (options.logger ?? noopLogger).warn('onEvent handler threw', { type: event.type, error: String(e) });
  }
}
