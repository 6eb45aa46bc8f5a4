/**
 * Turns the response to BASE_BACKUP into ONE event sequence whatever the server's wire format
 * (protocol notes §3.2, §3.3):
 *
 * - PG15+: one CopyOut whose CopyData payloads carry a type byte: `n` new archive, `d` data,
 *   `p` progress, `m` manifest follows (basebackup_copy.c bbsink_copystream_*).
 * - PG14 (legacy): one CopyOut per tablespace, in the order of the tablespace rows (main directory
 *   last), each an UNTERMINATED tar of raw CopyData; then, with MANIFEST, the manifest in its own
 *   CopyOut (PG14 basebackup.c perform_base_backup, backup_manifest.c SendBackupManifest). This module
 *   appends the missing 1024-byte tar trailer (pg_basebackup: astreamer_tar_terminator) and
 *   synthesises progress from the bytes seen, so callers never see the difference.
 *
 * Both formats start with the start-position result set (recptr, tli) and the tablespace result set
 * (spcoid, spclocation, size kB), and end with the end-position result set. A late ErrorResponse
 * (SQLSTATE XX001 after a page checksum failure, sent after all data and the end position) makes the
 * iterator throw ReplicationError REPLICATION_BACKUP_FAILED: the backup must not be used.
 *
 * Pull-based: the next CopyData is read from the connection only when the consumer asks for the
 * next event, so the socket stays paused while a `data` chunk is being written to storage. `data`
 * buffers are views that the connection never overwrites (see ReplicationConnection), so they may
 * be kept past the next pull; unless the command was run with `leaseCopyData`: then a `data` or
 * `manifest-data` event may carry `release` (call it once nothing reads `data` any more, and the
 * connection reads new bytes into that memory), and the payloads this module only parses (archive
 * names, progress, the manifest marker) are released here at once.
 */
import { ConfigError, PgarkError, PostgresServerError, ProtocolError, ReplicationError } from '../errors';
import { parseLsn, type Lsn } from '../lsn';
import { parseBaseBackupMessage } from '../protocol';
import type { CommandEvent, CommandStream } from '../connection/replication-connection';

export interface BackupTablespace {
  /** The tablespace OID; undefined for the main data directory. */
  oid: number | undefined;
  /** The tablespace's location on the server; undefined for the main data directory. */
  location: string | undefined;
  /** The server's size estimate in bytes (PROGRESS only; the row's `size` is in kB). */
  sizeEstimateBytes: number | undefined;
}

export type BaseBackupEvent =
  | { type: 'start'; startLsn: Lsn; startTimeline: number }
  | { type: 'tablespaces'; tablespaces: BackupTablespace[] }
  /** An archive begins. `name` is what the server calls it (base.tar, 16384.tar.gz, …). */
  | {
      type: 'archive-start';
      name: string;
      spcOid: number | undefined;
      spcLocation: string | undefined;
      sizeEstimateBytes: number | undefined;
    }
  /**
   * Archive bytes (as the server sent them: compressed with server-side compression). `release`:
   * see the module comment (present only for a command run with `leaseCopyData`).
   */
  | { type: 'data'; data: Buffer; release?: () => void }
  | { type: 'archive-end'; name: string; bytes: number }
  /** Cumulative uncompressed archive bytes of the whole backup so far. */
  | { type: 'progress'; bytesDone: number }
  | { type: 'manifest-start' }
  | { type: 'manifest-data'; data: Buffer; release?: () => void }
  | { type: 'manifest-end'; bytes: number }
  | { type: 'end'; endLsn: Lsn; endTimeline: number };

/** The tar end-of-archive marker: two 512-byte zero blocks (PostgreSQL < 15 omits it). */
export const TAR_TRAILER = Buffer.alloc(1024);

/** Synthesised progress for the legacy format: at most one event per this many bytes. */
const LEGACY_PROGRESS_STEP = 1024 * 1024;

function text(v: Buffer | null | undefined): string | undefined {
  return v === null || v === undefined ? undefined : v.toString('utf8');
}

function unexpected(what: string): ProtocolError {
  return new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', `unexpected ${what} in the BASE_BACKUP response`);
}

/** The tablespace OID an archive name carries (`16384.tar.gz` → 16384; `base.tar` → undefined). */
export function archiveSpcOid(name: string): number | undefined {
  const m = /^([1-9][0-9]*)\.tar/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** A data event, with `release` only when there is one (the event's shape is unchanged otherwise). */
function withRelease(
  type: 'data' | 'manifest-data',
  data: Buffer,
  release: (() => void) | undefined,
): BaseBackupEvent {
  return release === undefined ? { type, data } : { type, data, release };
}

/** Rejects archive names pg_basebackup rejects (empty, leading '.', a path separator). */
function assertArchiveName(name: string): void {
  if (name.length === 0 || name.startsWith('.') || name.includes('/') || name.includes('\\')) {
    throw new ProtocolError(
      'PROTOCOL_MALFORMED_MESSAGE',
      `invalid archive name ${JSON.stringify(name)} from the server`,
    );
  }
}

/**
 * Maps the server's errors during BASE_BACKUP to pgark's codes: a failure after the data (page
 * checksum failure, XX001) → REPLICATION_BACKUP_FAILED; a compression the build lacks →
 * CONFIG_UNSUPPORTED_COMPRESSION; promotion of the standby → REPLICATION_STANDBY_PROMOTED.
 */
export function mapBaseBackupError(e: unknown, afterData: boolean): unknown {
  if (!(e instanceof PostgresServerError)) return e;
  const msg = e.fields.message;
  if (/does not support compression|invalid compression specification/i.test(msg)) {
    return new ConfigError('CONFIG_UNSUPPORTED_COMPRESSION', `the server cannot compress this way: ${msg}`, {
      cause: e,
      hint: 'this server was built without that compression library; use gzip, client-side compression, or none',
    });
  }
  if (/standby was promoted during online backup/i.test(msg)) {
    return new ReplicationError('REPLICATION_STANDBY_PROMOTED', `base backup failed: ${msg}`, {
      cause: e,
      sqlstate: e.sqlstate,
    });
  }
  if (afterData || e.sqlstate === 'XX001') {
    return new ReplicationError(
      'REPLICATION_BACKUP_FAILED',
      `the server reported a failure of the base backup: ${msg}`,
      {
        cause: e,
        sqlstate: e.sqlstate,
        hint:
          e.sqlstate === 'XX001'
            ? 'page checksum failures: check the server log, or take the backup with verifyChecksums: false'
            : undefined,
      },
    );
  }
  return e;
}

/**
 * Reads a BASE_BACKUP response (the connection's event stream for the command) as BaseBackupEvents.
 * `legacy` is true for servers before 15.
 */
export async function* readBaseBackupStream(
  events: AsyncIterable<CommandEvent>,
  legacy: boolean,
): AsyncGenerator<BaseBackupEvent, void, undefined> {
  let resultSet = 0; // 0: start position, 1: tablespaces, 2: end position
  let rows: (Buffer | null)[][] = [];
  let tablespaces: BackupTablespace[] = [];
  let copyPhase = 0; // legacy: index of the current CopyOut
  let inCopy = false;
  let archive: { name: string; bytes: number } | undefined;
  let manifest: { bytes: number } | undefined;
  let manifestSeen = false;
  let endSeen = false;
  let progressDone = 0;
  let lastProgress = 0;

  function* closeArchive(): Generator<BaseBackupEvent> {
    if (!archive) return;
    const a = archive;
    archive = undefined;
    if (legacy) {
      yield { type: 'data', data: TAR_TRAILER };
      a.bytes += TAR_TRAILER.length;
      yield { type: 'progress', bytesDone: progressDone };
      lastProgress = progressDone;
    }
    yield { type: 'archive-end', name: a.name, bytes: a.bytes };
  }

  function* closeManifest(): Generator<BaseBackupEvent> {
    if (!manifest) return;
    const bytes = manifest.bytes;
    manifest = undefined;
    yield { type: 'manifest-end', bytes };
  }

  // Events already received are taken without a promise (takeBuffered, when the source has it):
  // a backup is tens of thousands of CopyData messages, one per 32 kB.
  const it = events[Symbol.asyncIterator]();
  const takeBuffered = (it as Partial<CommandStream>).takeBuffered?.bind(it);
  let ended = false;
  try {
    for (;;) {
      let ev = takeBuffered?.();
      if (ev === undefined) {
        const r = await it.next();
        if (r.done) {
          ended = true;
          break;
        }
        ev = r.value;
      }
      switch (ev.type) {
        case 'notice':
        case 'commandComplete':
          if (ev.type === 'commandComplete' && !inCopy && rows !== undefined) {
            // A result set ended.
            if (resultSet === 0) {
              const r = rows[0];
              if (!r || r.length < 2) throw unexpected('start position result');
              yield {
                type: 'start',
                startLsn: parseLsn(text(r[0]) ?? ''),
                startTimeline: Number(text(r[1])),
              };
              resultSet = 1;
            } else if (resultSet === 1) {
              tablespaces = rows.map((r) => {
                const oid = text(r[0]);
                const size = text(r[2]);
                return {
                  oid: oid === undefined ? undefined : Number(oid),
                  location: text(r[1]),
                  sizeEstimateBytes: size === undefined ? undefined : Number(size) * 1024,
                };
              });
              yield { type: 'tablespaces', tablespaces };
              resultSet = 2;
            } else if (resultSet === 2 && rows.length > 0) {
              const r = rows[0]!;
              if (r.length < 2) throw unexpected('end position result');
              yield* closeArchive();
              yield* closeManifest();
              yield { type: 'end', endLsn: parseLsn(text(r[0]) ?? ''), endTimeline: Number(text(r[1])) };
              endSeen = true;
              resultSet = 3;
            }
            rows = [];
          }
          break;
        case 'rowDescription':
          rows = [];
          break;
        case 'dataRow':
          // Copy the values: the row outlives this event only as parsed numbers/strings, but be safe.
          rows.push(ev.values);
          break;
        case 'copyOutStart':
          if (resultSet !== 2) throw unexpected('CopyOutResponse before the tablespace list');
          inCopy = true;
          if (legacy) {
            if (copyPhase < tablespaces.length) {
              const ts = tablespaces[copyPhase]!;
              const name = ts.oid === undefined ? 'base.tar' : `${ts.oid}.tar`;
              archive = { name, bytes: 0 };
              yield {
                type: 'archive-start',
                name,
                spcOid: ts.oid,
                spcLocation: ts.location,
                sizeEstimateBytes: ts.sizeEstimateBytes,
              };
            } else if (copyPhase === tablespaces.length) {
              manifest = { bytes: 0 };
              manifestSeen = true;
              yield { type: 'manifest-start' };
            } else {
              throw unexpected('extra CopyOutResponse');
            }
          }
          copyPhase++;
          break;
        case 'copyData': {
          if (!inCopy) throw unexpected('CopyData outside COPY');
          if (legacy) {
            if (manifest) {
              manifest.bytes += ev.data.length;
              yield withRelease('manifest-data', ev.data, ev.release);
            } else if (archive) {
              archive.bytes += ev.data.length;
              progressDone += ev.data.length;
              yield withRelease('data', ev.data, ev.release);
              if (progressDone - lastProgress >= LEGACY_PROGRESS_STEP) {
                lastProgress = progressDone;
                yield { type: 'progress', bytesDone: progressDone };
              }
            } else {
              throw unexpected('CopyData outside an archive');
            }
            break;
          }
          const m = parseBaseBackupMessage(ev.data);
          // Only the data payloads are passed on; the others are parsed into strings and numbers.
          if (m.type !== 'data') ev.release?.();
          switch (m.type) {
            case 'archive': {
              if (manifestSeen) throw unexpected('archive after the manifest');
              yield* closeArchive();
              assertArchiveName(m.archiveName);
              const spcOid = archiveSpcOid(m.archiveName);
              const ts = tablespaces.find((t) => t.oid === spcOid);
              archive = { name: m.archiveName, bytes: 0 };
              yield {
                type: 'archive-start',
                name: m.archiveName,
                spcOid,
                spcLocation: m.spcLocation === '' ? undefined : m.spcLocation,
                sizeEstimateBytes: ts?.sizeEstimateBytes,
              };
              break;
            }
            case 'data':
              if (manifest) {
                manifest.bytes += m.data.length;
                yield withRelease('manifest-data', m.data, ev.release);
              } else if (archive) {
                archive.bytes += m.data.length;
                yield withRelease('data', m.data, ev.release);
              } else {
                throw unexpected('archive data before any archive');
              }
              break;
            case 'progress':
              progressDone = Number(m.bytesDone);
              yield { type: 'progress', bytesDone: progressDone };
              break;
            case 'manifest':
              yield* closeArchive();
              manifest = { bytes: 0 };
              manifestSeen = true;
              yield { type: 'manifest-start' };
              break;
          }
          break;
        }
        case 'copyDone':
          inCopy = false;
          if (legacy) {
            yield* closeArchive();
            yield* closeManifest();
          }
          break;
        default:
          throw unexpected(ev.type);
      }
    }
  } catch (e) {
    throw mapBaseBackupError(e, endSeen || manifestSeen);
  } finally {
    // As `for await` does: a consumer that stops early (or a failure here) ends the source.
    if (!ended) await it.return?.();
  }
  if (!endSeen) throw unexpected('end of response without the end position');
  if (!manifestSeen) {
    throw new ReplicationError('REPLICATION_BACKUP_FAILED', 'the server sent no backup manifest');
  }
}

/** True when an error is one the base backup stream raises for a server-side failure. */
export function isBackupFailure(e: unknown): boolean {
  return e instanceof PgarkError && e.code === 'REPLICATION_BACKUP_FAILED';
}
