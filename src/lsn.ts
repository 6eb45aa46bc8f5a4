/**
 * LSNs, WAL segment names and timelines: pure arithmetic, no I/O.
 *
 * An LSN is a 64-bit WAL position, held as `bigint` (it does not fit a JS number) and shown as
 * `X/X` in upper-case hex, as PostgreSQL 14-18 print it (`LSN_FORMAT_ARGS`); PG19 zero-pads the
 * low half (`X/%08X`), which `parseLsn` accepts too. File-name rules follow
 * src/include/access/xlog_internal.h (XLogFileName, XLByteToSeg, XLByteToPrevSeg, IsXLogFileName,
 * TLHistoryFileName, BackupHistoryFileName).
 */
import { ConfigError } from './errors';

export type Lsn = bigint;

export const INVALID_LSN: Lsn = 0n;
const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
const MAX_LSN = (1n << 64n) - 1n;

/** Parses `16/B374D848` (or PG19's `16/0B374D84`) into a bigint LSN. */
export function parseLsn(text: string): Lsn {
  const m = LSN_RE.exec(text.trim());
  if (!m) {
    throw new ConfigError('CONFIG_INVALID_LSN', `invalid lsn "${text}"`, {
      hint: 'an lsn is two hexadecimal numbers of at most 8 digits separated by a slash, e.g. 0/16B3748',
    });
  }
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2]);
}

/** True when the text is a valid LSN. */
export function isLsn(text: string): boolean {
  return LSN_RE.test(text.trim());
}

/** Formats an LSN as PostgreSQL 14-18 do: upper-case hex, no padding. */
export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > MAX_LSN) {
    throw new ConfigError('CONFIG_INVALID_LSN', `lsn ${lsn} is outside the 64-bit range`);
  }
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

// ---------------------------------------------------------------------------------------------
// WAL segment size

export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;
const MIN_SEG = 1024 * 1024;
const MAX_SEG = 1024 * 1024 * 1024;

/** IsValidWalSegSize: a power of two in [1 MiB, 1 GiB]. */
export function isValidWalSegmentSize(bytes: number): boolean {
  return Number.isInteger(bytes) && bytes >= MIN_SEG && bytes <= MAX_SEG && (bytes & (bytes - 1)) === 0;
}

export function assertWalSegmentSize(bytes: number): void {
  if (!isValidWalSegmentSize(bytes)) {
    throw new ConfigError('CONFIG_INVALID_SEGMENT_SIZE', `invalid wal segment size ${bytes}`, {
      hint: 'a wal segment size is a power of two between 1 MiB and 1 GiB',
    });
  }
}

/**
 * Parses the text of `SHOW wal_segment_size` (`16MB`, `1GB`, `1024kB`) into bytes, as
 * streamutil.c RetrieveWalSegSize does.
 */
export function parseWalSegmentSizeSetting(text: string): number {
  const m = /^(\d+)\s*(kB|MB|GB)?$/.exec(text.trim());
  if (!m) {
    throw new ConfigError('CONFIG_INVALID_SEGMENT_SIZE', `cannot parse wal_segment_size "${text}"`);
  }
  const mult = m[2] === 'GB' ? 1024 ** 3 : m[2] === 'MB' ? 1024 ** 2 : m[2] === 'kB' ? 1024 : 1;
  const bytes = Number(m[1]) * mult;
  assertWalSegmentSize(bytes);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Segment numbers and names

/** XLByteToSeg: the segment number holding the byte at `lsn`. */
export function lsnToSegmentNumber(lsn: Lsn, segmentSize: number): bigint {
  return lsn / BigInt(segmentSize);
}

/** XLByteToPrevSeg: the segment holding the byte just before `lsn` (for end pointers). */
export function endLsnToSegmentNumber(lsn: Lsn, segmentSize: number): bigint {
  return (lsn - 1n) / BigInt(segmentSize);
}

export function segmentStartLsn(segno: bigint, segmentSize: number): Lsn {
  return segno * BigInt(segmentSize);
}

/** The LSN rounded down to the start of its segment. */
export function segmentStartOf(lsn: Lsn, segmentSize: number): Lsn {
  return lsn - (lsn % BigInt(segmentSize));
}

function hex8(n: bigint | number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

function segmentsPerXLogId(segmentSize: number): bigint {
  return 0x1_0000_0000n / BigInt(segmentSize);
}

/** XLogFileName: `TTTTTTTTXXXXXXXXYYYYYYYY`. */
export function walFileName(timeline: number, segno: bigint, segmentSize: number): string {
  assertTimeline(timeline);
  const per = segmentsPerXLogId(segmentSize);
  return hex8(timeline) + hex8(segno / per) + hex8(segno % per);
}

/** The WAL file name holding the byte at `lsn` on `timeline`. */
export function walFileNameForLsn(timeline: number, lsn: Lsn, segmentSize: number): string {
  return walFileName(timeline, lsnToSegmentNumber(lsn, segmentSize), segmentSize);
}

export interface ParsedWalFileName {
  timeline: number;
  segno: bigint;
}

const WAL_NAME_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

/** IsXLogFileName: 24 upper-case hex digits. */
export function isWalFileName(name: string): boolean {
  return WAL_NAME_RE.test(name);
}

/** XLogFromFileName: the timeline and segment number encoded in a WAL file name. */
export function parseWalFileName(name: string, segmentSize: number): ParsedWalFileName {
  const m = WAL_NAME_RE.exec(name);
  if (!m) {
    throw new ConfigError('CONFIG_INVALID_WAL_NAME', `invalid wal file name "${name}"`, {
      hint: 'a wal file name is 24 upper-case hexadecimal digits',
    });
  }
  const timeline = parseInt(m[1]!, 16);
  const log = BigInt('0x' + m[2]);
  const seg = BigInt('0x' + m[3]);
  const per = segmentsPerXLogId(segmentSize);
  if (seg >= per) {
    throw new ConfigError(
      'CONFIG_INVALID_WAL_NAME',
      `wal file name "${name}" does not fit a segment size of ${segmentSize} bytes`,
    );
  }
  return { timeline, segno: log * per + seg };
}

const HISTORY_RE = /^([0-9A-F]{8})\.history$/;
const BACKUP_HISTORY_RE = /^([0-9A-F]{24})\.([0-9A-F]{8})\.backup$/;
const PARTIAL_RE = /^([0-9A-F]{24})\.partial$/;

export function historyFileName(timeline: number): string {
  assertTimeline(timeline);
  return `${hex8(timeline)}.history`;
}

export function isHistoryFileName(name: string): boolean {
  return HISTORY_RE.test(name);
}

export function isBackupHistoryFileName(name: string): boolean {
  return BACKUP_HISTORY_RE.test(name);
}

export function isPartialWalFileName(name: string): boolean {
  return PARTIAL_RE.test(name);
}

export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup-history';

/** Classifies a name as restore_command/archive_command see them; throws CONFIG_INVALID_WAL_NAME otherwise. */
export function classifyWalFileName(name: string): WalFileKind {
  if (isWalFileName(name)) return 'segment';
  if (isPartialWalFileName(name)) return 'partial';
  if (isHistoryFileName(name)) return 'history';
  if (isBackupHistoryFileName(name)) return 'backup-history';
  throw new ConfigError(
    'CONFIG_INVALID_WAL_NAME',
    `"${name}" is not a wal segment, history or backup history file name`,
  );
}

/** The timeline encoded in a history file name (`00000002.history` → 2). */
export function timelineOfHistoryFile(name: string): number {
  const m = HISTORY_RE.exec(name);
  if (!m) throw new ConfigError('CONFIG_INVALID_WAL_NAME', `invalid history file name "${name}"`);
  return parseInt(m[1]!, 16);
}

// ---------------------------------------------------------------------------------------------
// Timelines

export function isValidTimeline(tli: number): boolean {
  return Number.isInteger(tli) && tli >= 1 && tli <= 0xffffffff;
}

export function assertTimeline(tli: number): void {
  if (!isValidTimeline(tli)) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid timeline ${tli}`, {
      hint: 'a timeline id is an integer from 1 to 4294967295',
    });
  }
}

/** One line of a `.history` file: timeline `timeline` ended at `switchLsn` (the first LSN of the child). */
export interface TimelineHistoryEntry {
  timeline: number;
  switchLsn: Lsn;
  reason: string;
}

/**
 * Parses a timeline history file (timeline.c writeTimeLineHistory / readTimeLineHistory):
 * `parentTLI<TAB>switchpoint<TAB>reason` per line; blank lines and `#` comments are skipped.
 * Entries come back in file order (oldest first). Timelines must ascend.
 */
export function parseTimelineHistory(content: string | Buffer): TimelineHistoryEntry[] {
  const text = typeof content === 'string' ? content : content.toString('utf8');
  const out: TimelineHistoryEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})\s*(.*)$/.exec(line);
    if (!m) {
      throw new ConfigError('CONFIG_INVALID_OPTION', `invalid timeline history line "${line}"`, {
        hint: 'expected "<timeline> <X/X> <reason>"',
      });
    }
    const timeline = Number(m[1]);
    assertTimeline(timeline);
    const prev = out[out.length - 1];
    if (prev && timeline <= prev.timeline) {
      throw new ConfigError(
        'CONFIG_INVALID_OPTION',
        `timeline history is not in ascending order at "${line}"`,
      );
    }
    out.push({ timeline, switchLsn: parseLsn(m[2]!), reason: m[3] ?? '' });
  }
  return out;
}

/**
 * Which timeline holds `lsn`, given the history of the newest timeline `currentTimeline`
 * (tliOfPointInHistory in timeline.c): the first entry whose switch point is after `lsn`.
 */
export function timelineOfLsn(lsn: Lsn, history: TimelineHistoryEntry[], currentTimeline: number): number {
  for (const e of history) {
    if (lsn < e.switchLsn) return e.timeline;
  }
  return currentTimeline;
}

/** The LSN where `timeline` ends in `history` (its switch point), or undefined when it is the newest. */
export function timelineEnd(timeline: number, history: TimelineHistoryEntry[]): Lsn | undefined {
  return history.find((e) => e.timeline === timeline)?.switchLsn;
}

// ---------------------------------------------------------------------------------------------
// Timestamps on the wire: microseconds since 2000-01-01 00:00:00 UTC.

/** 946 684 800 s between the Unix epoch and PostgreSQL's epoch (feGetCurrentTimestamp in streamutil.c). */
export const PG_EPOCH_OFFSET_MS = 946_684_800_000;

export function pgTimestampFromDate(date: Date): bigint {
  return (BigInt(date.getTime()) - BigInt(PG_EPOCH_OFFSET_MS)) * 1000n;
}

export function dateFromPgTimestamp(us: bigint): Date {
  return new Date(Number(us / 1000n) + PG_EPOCH_OFFSET_MS);
}
