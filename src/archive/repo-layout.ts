/**
 * The repository layout: EVERY storage key pgark reads or writes is built and parsed here, so the
 * on-storage format can be read in one place. Pure functions only (no I/O).
 *
 * On-storage format, version 1 (keys relative to the storage root or s3 prefix):
 *
 * ```
 * pgark.json                                             repository format object (RepositoryFormat):
 *                                                        { format: 1, createdAt, createdBy: "pgark <version>" }
 *                                                        written once (ifAbsent), checked on every open
 * stanzas/<stanza>/stanza.json                           one cluster ("stanza"): { stanza, systemIdentifier,
 *                                                        pgMajor, walSegmentSize, createdAt }; a cluster with
 *                                                        another system identifier may not use the stanza
 * stanzas/<stanza>/catalog/<backupId>.json               catalog entry of a backup = its COMPLETION MARKER,
 *                                                        written LAST, after every object of the backup is
 *                                                        durable. A backup without it does not exist for any
 *                                                        reader (a crashed or running backup leaves only
 *                                                        objects under backups/<backupId>/). Deleting a
 *                                                        backup deletes its catalog entry first.
 * stanzas/<stanza>/backups/<backupId>/<archive>          tar archives as the server sends them: base.tar,
 *                                                        <tablespace oid>.tar, each optionally .gz/.lz4/.zst
 * stanzas/<stanza>/backups/<backupId>/backup_manifest    the server's backup manifest, unchanged
 * stanzas/<stanza>/backups/<backupId>/wal/<walfile>      WAL a self-contained backup carries (start to end
 *                                                        of the backup): whole segments and the .history
 *                                                        files needed, one object each (not a pg_wal.tar, so
 *                                                        each object has its own size and sha256 in the
 *                                                        catalog and a restore can fetch them one by one)
 * stanzas/<stanza>/wal/<timeline 8 hex>/<segment>        archived WAL, whole segments only (exactly
 *                                                        walSegmentSize bytes once decompressed); optional
 *                                                        compression suffix .gz/.lz4/.zst
 * stanzas/<stanza>/wal/<timeline>/<segment>.partial      the newest, incomplete segment (replaced as it grows)
 * stanzas/<stanza>/wal/<timeline>/<segment>.partial.<seq 8 hex>
 *                                                        sequenced chunks of a partial segment: bytes
 *                                                        [seq, seq + size) of it (seq = start offset)
 * stanzas/<stanza>/wal/<timeline>/<segment>.partial.padded
 *                                                        the synchronous writer's open segment on a
 *                                                        directory repository: always walSegmentSize
 *                                                        bytes, written in place, zeros past what was
 *                                                        written (its size does NOT tell its durable
 *                                                        prefix); never served as a complete segment
 * stanzas/<stanza>/wal/<timeline>/<segment>.<offset 8 hex>.backup
 *                                                        backup-history files
 * stanzas/<stanza>/wal/history/<timeline 8 hex>.history  timeline history files
 * ```
 *
 * Why a separate catalog/ prefix: listing the backups is one list of small keys, whatever the number
 * of archives and WAL files each backup holds; and the marker's absence is cheap to check.
 *
 * Backup ids sort by time: `YYYYMMDDTHHMMSSZ-F` (full) or `-I` (incremental), in UTC, for example
 * `20261124T231500Z-F`. Two backups of one stanza cannot share a second: a writer checks that the id
 * is unused (no catalog entry, no object under backups/<backupId>/; Stanza.isBackupIdInUse) before it
 * writes, and writes the catalog entry with ifAbsent.
 *
 * A reader looks a WAL segment up by listing the prefix `wal/<timeline>/<segment>` (one request), since
 * the object may carry a compression suffix.
 *
 * Stanza names: `[A-Za-z0-9_.-]{1,64}`, not `.` or `..`.
 */
import { ConfigError } from '../errors';
import {
  isBackupHistoryFileName,
  isHistoryFileName,
  isValidTimeline,
  isWalFileName,
  timelineOfHistoryFile,
} from '../lsn';

/** The repository format version this pgark writes and reads. */
export const REPOSITORY_FORMAT_VERSION = 1;

export type ArchiveCompression = 'gz' | 'lz4' | 'zst';
const COMPRESSION_SUFFIXES: readonly ArchiveCompression[] = ['gz', 'lz4', 'zst'];

export type BackupKind = 'full' | 'incremental';

const STANZA_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const BACKUP_ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-([FI])$/;
const ARCHIVE_RE = /^(base|[1-9][0-9]{0,9})\.tar(?:\.(gz|lz4|zst))?$/;
const TIMELINE_DIR_RE = /^[0-9A-F]{8}$/;
const PARTIAL_CHUNK_RE = /^([0-9A-F]{24})\.partial\.([0-9a-f]{8})$/;
const SEGMENT_RE = /^([0-9A-F]{24})(?:\.(gz|lz4|zst))?$/;
const PARTIAL_RE = /^([0-9A-F]{24})\.partial$/;
const PARTIAL_PADDED_RE = /^([0-9A-F]{24})\.partial\.padded$/;

// ---------------------------------------------------------------------------------------------
// Validation

export function isValidStanzaName(name: string): boolean {
  return typeof name === 'string' && STANZA_RE.test(name) && name !== '.' && name !== '..';
}

/** Throws ConfigError CONFIG_INVALID_IDENTIFIER for a stanza name outside `[A-Za-z0-9_.-]{1,64}`. */
export function assertStanzaName(name: string): void {
  if (!isValidStanzaName(name)) {
    throw new ConfigError('CONFIG_INVALID_IDENTIFIER', `invalid stanza name ${JSON.stringify(name)}`, {
      hint: 'a stanza name has 1 to 64 characters of A-Z, a-z, 0-9, "_", "." and "-"',
    });
  }
}

export function isValidBackupId(id: string): boolean {
  const m = BACKUP_ID_RE.exec(id);
  if (!m) return false;
  const d = backupIdDate(m);
  return !Number.isNaN(d.getTime()) && formatStamp(d) === id.substring(0, 16);
}

export function assertBackupId(id: string): void {
  if (!isValidBackupId(id)) {
    throw new ConfigError('CONFIG_INVALID_IDENTIFIER', `invalid backup id ${JSON.stringify(id)}`, {
      hint: 'a backup id looks like 20261124T231500Z-F (full) or 20261124T231500Z-I (incremental)',
    });
  }
}

function assertArchiveName(name: string): void {
  if (!ARCHIVE_RE.test(name)) {
    throw new ConfigError(
      'CONFIG_INVALID_IDENTIFIER',
      `invalid backup archive name ${JSON.stringify(name)}`,
      {
        hint: 'archive names are base.tar or <tablespace oid>.tar, optionally with .gz, .lz4 or .zst',
      },
    );
  }
}

function assertWalName(name: string): void {
  if (!isWalFileName(name)) {
    throw new ConfigError('CONFIG_INVALID_WAL_NAME', `invalid wal segment name ${JSON.stringify(name)}`);
  }
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

function timelineOfSegment(segment: string): number {
  return parseInt(segment.substring(0, 8), 16);
}

// ---------------------------------------------------------------------------------------------
// Backup ids

function formatStamp(d: Date): string {
  // 2026-11-24T23:15:00.000Z → 20261124T231500Z
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

function backupIdDate(m: RegExpExecArray): Date {
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

/** A backup id for a backup started at `startedAt` (UTC, whole seconds): `20261124T231500Z-F`. */
export function makeBackupId(startedAt: Date, kind: BackupKind): string {
  if (Number.isNaN(startedAt.getTime())) {
    throw new ConfigError('CONFIG_INVALID_OPTION', 'invalid backup start time');
  }
  return `${formatStamp(startedAt)}-${kind === 'full' ? 'F' : 'I'}`;
}

export interface ParsedBackupId {
  startedAt: Date;
  kind: BackupKind;
}

export function parseBackupId(id: string): ParsedBackupId {
  assertBackupId(id);
  const m = BACKUP_ID_RE.exec(id)!;
  return { startedAt: backupIdDate(m), kind: m[7] === 'F' ? 'full' : 'incremental' };
}

// ---------------------------------------------------------------------------------------------
// Key builders

export const REPOSITORY_FORMAT_KEY = 'pgark.json';
export const STANZAS_PREFIX = 'stanzas/';

export function stanzaPrefix(stanza: string): string {
  assertStanzaName(stanza);
  return `${STANZAS_PREFIX}${stanza}/`;
}

export function stanzaInfoKey(stanza: string): string {
  return `${stanzaPrefix(stanza)}stanza.json`;
}

/** Prefix of every catalog entry of a stanza (list it to find complete backups). */
export function catalogPrefix(stanza: string): string {
  return `${stanzaPrefix(stanza)}catalog/`;
}

/** The catalog entry = completion marker of a backup; written last. */
export function catalogEntryKey(stanza: string, backupId: string): string {
  assertBackupId(backupId);
  return `${catalogPrefix(stanza)}${backupId}.json`;
}

/** Prefix of every object of one backup (archives, manifest, carried WAL); not the catalog entry. */
export function backupPrefix(stanza: string, backupId: string): string {
  assertBackupId(backupId);
  return `${stanzaPrefix(stanza)}backups/${backupId}/`;
}

export function backupArchiveKey(stanza: string, backupId: string, archiveName: string): string {
  assertArchiveName(archiveName);
  return `${backupPrefix(stanza, backupId)}${archiveName}`;
}

/** The archive name of a tablespace (`base` for the main data directory) with its compression suffix. */
export function backupArchiveName(tablespace: 'base' | number, compression?: ArchiveCompression): string {
  const name = `${tablespace}.tar${compression ? `.${compression}` : ''}`;
  assertArchiveName(name);
  return name;
}

export function backupManifestKey(stanza: string, backupId: string): string {
  return `${backupPrefix(stanza, backupId)}backup_manifest`;
}

/** WAL carried inside a self-contained backup: a segment name or a `.history` file name. */
export function backupWalKey(stanza: string, backupId: string, walName: string): string {
  if (!isWalFileName(walName) && !isHistoryFileName(walName)) assertWalName(walName);
  return `${backupPrefix(stanza, backupId)}wal/${walName}`;
}

export function walPrefix(stanza: string): string {
  return `${stanzaPrefix(stanza)}wal/`;
}

export function walTimelinePrefix(stanza: string, timeline: number): string {
  if (!isValidTimeline(timeline)) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid timeline ${timeline}`);
  }
  return `${walPrefix(stanza)}${hex8(timeline)}/`;
}

/** A whole archived WAL segment (its timeline directory comes from the name). */
export function walSegmentKey(stanza: string, segment: string, compression?: ArchiveCompression): string {
  assertWalName(segment);
  if (compression !== undefined && !COMPRESSION_SUFFIXES.includes(compression)) {
    throw new ConfigError('CONFIG_UNSUPPORTED_COMPRESSION', `unknown compression ${String(compression)}`);
  }
  return `${walTimelinePrefix(stanza, timelineOfSegment(segment))}${segment}${compression ? `.${compression}` : ''}`;
}

export function walPartialKey(stanza: string, segment: string): string {
  assertWalName(segment);
  return `${walTimelinePrefix(stanza, timelineOfSegment(segment))}${segment}.partial`;
}

/**
 * The open, zero-padded segment file of the synchronous writer on a directory repository
 * (Storage.openFixedSizeFile): segment-sized, overwritten in place; see docs/design-wal.md.
 */
export function walPartialPaddedKey(stanza: string, segment: string): string {
  assertWalName(segment);
  return `${walTimelinePrefix(stanza, timelineOfSegment(segment))}${segment}.partial.padded`;
}

/** Chunk `seq` (its start offset in the segment) of a partial segment (sorts by seq). */
export function walPartialChunkKey(stanza: string, segment: string, seq: number): string {
  assertWalName(segment);
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid partial chunk sequence ${seq}`);
  }
  return `${walTimelinePrefix(stanza, timelineOfSegment(segment))}${segment}.partial.${seq.toString(16).padStart(8, '0')}`;
}

/** A backup-history file name as the server writes it: `<segment>.<offset 8 hex>.backup`. */
export function walBackupHistoryKey(stanza: string, backupHistoryName: string): string {
  if (!isBackupHistoryFileName(backupHistoryName)) {
    throw new ConfigError(
      'CONFIG_INVALID_WAL_NAME',
      `invalid backup history file name ${JSON.stringify(backupHistoryName)}`,
    );
  }
  return `${walTimelinePrefix(stanza, timelineOfSegment(backupHistoryName))}${backupHistoryName}`;
}

export function walHistoryPrefix(stanza: string): string {
  return `${walPrefix(stanza)}history/`;
}

export function walHistoryKey(stanza: string, timeline: number): string {
  if (!isValidTimeline(timeline)) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid timeline ${timeline}`);
  }
  return `${walHistoryPrefix(stanza)}${hex8(timeline)}.history`;
}

// ---------------------------------------------------------------------------------------------
// Key parser

/** What a repository key is. `parseRepositoryKey` returns `undefined` for keys outside the layout. */
export type RepositoryKey =
  | { kind: 'repository-format' }
  | { kind: 'stanza-info'; stanza: string }
  | { kind: 'catalog-entry'; stanza: string; backupId: string }
  | {
      kind: 'backup-archive';
      stanza: string;
      backupId: string;
      archiveName: string;
      tablespace: 'base' | number;
      compression?: ArchiveCompression;
    }
  | { kind: 'backup-manifest'; stanza: string; backupId: string }
  | { kind: 'backup-wal'; stanza: string; backupId: string; walName: string }
  | {
      kind: 'wal-segment';
      stanza: string;
      timeline: number;
      walName: string;
      compression?: ArchiveCompression;
    }
  | { kind: 'wal-partial'; stanza: string; timeline: number; walName: string }
  | { kind: 'wal-partial-chunk'; stanza: string; timeline: number; walName: string; seq: number }
  | { kind: 'wal-partial-padded'; stanza: string; timeline: number; walName: string }
  | { kind: 'wal-backup-history'; stanza: string; timeline: number; fileName: string }
  | { kind: 'wal-history'; stanza: string; timeline: number };

/** Tells what a key is (the inverse of the builders above), or `undefined` for a foreign key. */
export function parseRepositoryKey(key: string): RepositoryKey | undefined {
  if (key === REPOSITORY_FORMAT_KEY) return { kind: 'repository-format' };
  const parts = key.split('/');
  if (parts[0] !== 'stanzas' || parts.length < 3) return undefined;
  const stanza = parts[1]!;
  if (!isValidStanzaName(stanza)) return undefined;
  const rest = parts.slice(2);
  const [a, b, c, d] = rest;

  if (rest.length === 1 && a === 'stanza.json') return { kind: 'stanza-info', stanza };

  if (rest.length === 2 && a === 'catalog' && b!.endsWith('.json')) {
    const backupId = b!.substring(0, b!.length - 5);
    return isValidBackupId(backupId) ? { kind: 'catalog-entry', stanza, backupId } : undefined;
  }

  if (a === 'backups' && b !== undefined && isValidBackupId(b)) {
    const backupId = b;
    if (rest.length === 3 && c === 'backup_manifest') return { kind: 'backup-manifest', stanza, backupId };
    if (rest.length === 3) {
      const m = ARCHIVE_RE.exec(c!);
      if (!m) return undefined;
      const tablespace = m[1] === 'base' ? 'base' : Number(m[1]);
      const out: RepositoryKey = { kind: 'backup-archive', stanza, backupId, archiveName: c!, tablespace };
      if (m[2]) out.compression = m[2] as ArchiveCompression;
      return out;
    }
    if (rest.length === 4 && c === 'wal' && (isWalFileName(d!) || isHistoryFileName(d!))) {
      return { kind: 'backup-wal', stanza, backupId, walName: d! };
    }
    return undefined;
  }

  if (a === 'wal' && rest.length === 3) {
    if (b === 'history') {
      if (!isHistoryFileName(c!)) return undefined;
      return { kind: 'wal-history', stanza, timeline: timelineOfHistoryFile(c!) };
    }
    if (!TIMELINE_DIR_RE.test(b!)) return undefined;
    const timeline = parseInt(b!, 16);
    if (!isValidTimeline(timeline)) return undefined;
    const name = c!;
    // The file's own timeline must match its directory.
    if (name.substring(0, 8) !== b) return undefined;
    let m = SEGMENT_RE.exec(name);
    if (m) {
      const out: RepositoryKey = { kind: 'wal-segment', stanza, timeline, walName: m[1]! };
      if (m[2]) out.compression = m[2] as ArchiveCompression;
      return out;
    }
    m = PARTIAL_RE.exec(name);
    if (m) return { kind: 'wal-partial', stanza, timeline, walName: m[1]! };
    m = PARTIAL_CHUNK_RE.exec(name);
    if (m) return { kind: 'wal-partial-chunk', stanza, timeline, walName: m[1]!, seq: parseInt(m[2]!, 16) };
    m = PARTIAL_PADDED_RE.exec(name);
    if (m) return { kind: 'wal-partial-padded', stanza, timeline, walName: m[1]! };
    if (isBackupHistoryFileName(name))
      return { kind: 'wal-backup-history', stanza, timeline, fileName: name };
    return undefined;
  }
  return undefined;
}
