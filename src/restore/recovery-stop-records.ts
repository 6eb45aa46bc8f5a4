/**
 * The WAL records a restore-point or xid recovery target stops at, recognised as PostgreSQL's
 * recovery does (xlogrecovery.c recoveryStopsBefore / recoveryStopsAfter). Pure.
 *
 * - recovery_target_name: an RM_XLOG_ID record with info XLOG_RESTORE_POINT (0x70) whose
 *   xl_restore_point.rp_name (after TimestampTz rp_time; char[64], NUL-terminated) equals the name
 *   (strcmp).
 * - recovery_target_xid: an RM_XACT_ID record whose `info & XLOG_XACT_OPMASK` is COMMIT (0x00),
 *   ABORT (0x20), COMMIT_PREPARED (0x30) or ABORT_PREPARED (0x40) (PREPARE is no stop point). Its
 *   xid is XLogRecGetXid for COMMIT/ABORT, and the twophase xid parsed from the main data for the
 *   prepared variants (xactdesc.c ParseCommitRecord / ParseAbortRecord: xl_xact_commit or abort
 *   (TimestampTz), xinfo u32 when XLOG_XACT_HAS_INFO, then in order dbinfo (8 bytes), subxacts
 *   (int n + 4n), relfilelocators (int n + 12n), dropped stats (15+: int n + 12n; 18: 16n),
 *   invals (commit only: int n + 16n), twophase xid u32).
 */
import {
  decodeRecordData,
  RM_XLOG_ID,
  XLR_INFO_MASK,
  type WalRecord,
  type WalRecordHeader,
} from '../archive/wal-record-reader';

const RM_XACT_ID = 1;
const XLOG_RESTORE_POINT = 0x70;
const XLOG_XACT_OPMASK = 0x70;
const XLOG_XACT_COMMIT = 0x00;
const XLOG_XACT_ABORT = 0x20;
const XLOG_XACT_COMMIT_PREPARED = 0x30;
const XLOG_XACT_ABORT_PREPARED = 0x40;
const XLOG_XACT_HAS_INFO = 0x80;
const XACT_XINFO_HAS_DBINFO = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS = 1 << 1;
const XACT_XINFO_HAS_RELFILELOCATORS = 1 << 2;
const XACT_XINFO_HAS_INVALS = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE = 1 << 4;
const XACT_XINFO_HAS_DROPPED_STATS = 1 << 8;
/** MAXFNAMELEN: rp_name's size. */
const RESTORE_POINT_NAME_BYTES = 64;

export type XactStopKind = 'commit' | 'abort' | 'commit-prepared' | 'abort-prepared';

const xactKind = (h: WalRecordHeader): XactStopKind | undefined => {
  if (h.rmid !== RM_XACT_ID) return undefined;
  switch (h.info & XLOG_XACT_OPMASK) {
    case XLOG_XACT_COMMIT:
      return 'commit';
    case XLOG_XACT_ABORT:
      return 'abort';
    case XLOG_XACT_COMMIT_PREPARED:
      return 'commit-prepared';
    case XLOG_XACT_ABORT_PREPARED:
      return 'abort-prepared';
    default:
      return undefined;
  }
};

/** True for an XLOG_RESTORE_POINT record. */
export function isRestorePointRecord(h: WalRecordHeader): boolean {
  return h.rmid === RM_XLOG_ID && (h.info & ~XLR_INFO_MASK & 0xff) === XLOG_RESTORE_POINT;
}

/**
 * Which records' bodies a scan for this target must read: restore points for a name; the prepared
 * commit/abort records for an xid (their xid is in the body; plain commits carry it in the header).
 */
export function stopRecordNeedsBody(h: WalRecordHeader, target: 'name' | 'xid'): boolean {
  if (target === 'name') return isRestorePointRecord(h);
  const k = xactKind(h);
  return k === 'commit-prepared' || k === 'abort-prepared';
}

/** rp_name of a restore-point record (its bytes), or undefined when it is not one. */
export function restorePointName(record: WalRecord, pgMajor: number): string | undefined {
  if (!isRestorePointRecord(record) || !record.bytes) return undefined;
  const main = decodeRecordData(record.bytes, pgMajor).mainData;
  if (main.length < 8 + RESTORE_POINT_NAME_BYTES) return undefined;
  const name = main.subarray(8, 8 + RESTORE_POINT_NAME_BYTES);
  const nul = name.indexOf(0);
  return name.subarray(0, nul < 0 ? name.length : nul).toString('utf8');
}

/**
 * The xid a recovery_target_xid compares with at this record, or undefined when the record is no
 * transaction end. The prepared variants need `record.bytes` (see stopRecordNeedsBody).
 */
export function xactStopXid(
  record: WalRecord,
  pgMajor: number,
): { xid: number; kind: XactStopKind } | undefined {
  const kind = xactKind(record);
  if (!kind) return undefined;
  if (kind === 'commit' || kind === 'abort') return { xid: record.xid, kind };
  if (!record.bytes) return undefined;
  const main = decodeRecordData(record.bytes, pgMajor).mainData;
  let pos = 8; // xact_time
  // A prepared end always carries xinfo.
  if (!(record.info & XLOG_XACT_HAS_INFO) || main.length < pos + 4) return undefined;
  const xinfo = main.readUInt32LE(pos);
  pos += 4;
  const counted = (itemBytes: number): void => {
    // Past the end: pos stays beyond main.length and the twophase check below fails.
    const n = pos + 4 <= main.length ? main.readInt32LE(pos) : 0;
    pos += 4 + Math.max(0, n) * itemBytes;
  };
  if (xinfo & XACT_XINFO_HAS_DBINFO) pos += 8;
  if (xinfo & XACT_XINFO_HAS_SUBXACTS) counted(4);
  if (xinfo & XACT_XINFO_HAS_RELFILELOCATORS) counted(12);
  if (xinfo & XACT_XINFO_HAS_DROPPED_STATS) counted(pgMajor >= 18 ? 16 : 12);
  if (kind === 'commit-prepared' && xinfo & XACT_XINFO_HAS_INVALS) counted(16);
  if (!(xinfo & XACT_XINFO_HAS_TWOPHASE) || pos + 4 > main.length) return undefined;
  return { xid: main.readUInt32LE(pos), kind };
}
