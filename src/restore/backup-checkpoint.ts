/**
 * The oldest active xid of a backup's checkpoint, for the planner's xid check (recovery-target.ts):
 * backup_label (the first member of base.tar) names the CHECKPOINT LOCATION; the checkpoint record
 * there carries the CheckPoint struct whose `oldestActiveXid` is the oldest xid still running when
 * the checkpoint was written (xlog.c CreateCheckPoint, GetOldestActiveTransactionId): every older
 * xid had ended then, i.e. before the backup's end.
 *
 * Reads little: the first tar member of base.tar (the stream is dropped after it) and, by a ranged
 * get, the few hundred bytes of the record in the backup's own WAL object (`wal: 'stream'`) when
 * it is stored uncompressed. Anything else (another WAL method, a compressed WAL object, a record
 * that does not decode, a CRC mismatch) gives `undefined`: unknown, and the planner checks nothing.
 *
 * Record layout (access/xlogrecord.h, PostgreSQL 14-18): XLogRecord is 24 bytes (xl_tot_len u32,
 * xl_xid u32, xl_prev u64, xl_info u8, xl_rmid u8, 2 pad, xl_crc u32); a checkpoint's body follows
 * as short main data (block id 0xFF XLR_BLOCK_ID_DATA_SHORT, 1 length byte) and is the CheckPoint
 * struct (catalog/pg_control.h) with oldestActiveXid at offset 80 (see
 * /work/shared/docs/pg-control-and-rejoin.md §3a). The CRC is CRC-32C over the bytes after the
 * header, then the header up to xl_crc (xloginsert.c XLogRecordAssemble / xlog.c XLogInsertRecord).
 * A record may cross a page: every XLOG_BLCKSZ page starts with a 24-byte header (40 on a
 * segment's first page), which is skipped (xlogreader.c).
 */
import type { BackupCatalogEntry } from '../archive/backup-catalog';
import { parseBackupLabel } from '../archive/backup-label';
import { compressionFromFileName, createDecompressStream } from '../archive/compression';
import { scanTar } from '../archive/tar-scan';
import { WAL_PAGE_SIZE } from '../archive/wal-segment';
import { lsnToSegmentNumber, walFileName, type Lsn } from '../lsn';
import type { Storage } from '../storage/storage';
import { crc32c } from '../verify/crc32c';

const SIZE_OF_XLOG_RECORD = 24;
const SHORT_PAGE_HEADER = 24;
const LONG_PAGE_HEADER = 40;
const XLR_BLOCK_ID_DATA_SHORT = 255;
const RM_XLOG_ID = 0;
const XLOG_CHECKPOINT_SHUTDOWN = 0x00;
const XLOG_CHECKPOINT_ONLINE = 0x10;
const SIZE_OF_CHECKPOINT = 88;
const OLDEST_ACTIVE_XID_OFFSET = 80;

/**
 * Pure: the record bytes that start at `offset` of a segment, `length` of them, skipping page headers,
 * from `bytes` (which hold the segment from `bytesStart`). Undefined when they are not all there or
 * the record runs past the segment.
 */
export function recordBytes(
  bytes: Buffer,
  bytesStart: number,
  offset: number,
  length: number,
  segmentSize: number,
): Buffer | undefined {
  const out = Buffer.alloc(length);
  let got = 0;
  let pos = offset;
  while (got < length) {
    if (pos >= segmentSize) return undefined;
    const inPage = pos % WAL_PAGE_SIZE;
    if (inPage === 0) {
      pos += pos === 0 ? LONG_PAGE_HEADER : SHORT_PAGE_HEADER;
      continue;
    }
    const n = Math.min(length - got, WAL_PAGE_SIZE - inPage);
    const from = pos - bytesStart;
    if (from < 0 || from + n > bytes.length) return undefined;
    bytes.copy(out, got, from, from + n);
    got += n;
    pos += n;
  }
  return out;
}

/**
 * Pure: oldestActiveXid of the checkpoint record in `record` (its bytes from the record's start, page
 * headers removed). Undefined unless it is an XLOG checkpoint record with a valid CRC; 0 is returned
 * as is (a shutdown checkpoint, or wal_level minimal: unknown to the caller).
 */
export function checkpointOldestActiveXid(record: Buffer): number | undefined {
  if (record.length < SIZE_OF_XLOG_RECORD + 2 + SIZE_OF_CHECKPOINT) return undefined;
  const totLen = record.readUInt32LE(0);
  const info = record[16]! & 0xf0;
  const rmid = record[17]!;
  if (rmid !== RM_XLOG_ID || (info !== XLOG_CHECKPOINT_ONLINE && info !== XLOG_CHECKPOINT_SHUTDOWN))
    return undefined;
  if (totLen !== SIZE_OF_XLOG_RECORD + 2 + SIZE_OF_CHECKPOINT || record.length < totLen) return undefined;
  if (record[24] !== XLR_BLOCK_ID_DATA_SHORT || record[25] !== SIZE_OF_CHECKPOINT) return undefined;
  const crc = crc32c(Buffer.concat([record.subarray(SIZE_OF_XLOG_RECORD, totLen), record.subarray(0, 20)]));
  if (crc !== record.readUInt32LE(20)) return undefined;
  return record.readUInt32LE(SIZE_OF_XLOG_RECORD + 2 + OLDEST_ACTIVE_XID_OFFSET);
}

async function readBackupLabelCheckpoint(
  storage: Storage,
  entry: BackupCatalogEntry,
  signal?: AbortSignal,
): Promise<Lsn | undefined> {
  const base = entry.objects.find((o) => o.kind === 'archive' && o.spcOid === undefined);
  if (!base) return undefined;
  const src = await storage.get(base.key, signal ? { signal } : {});
  const c = compressionFromFileName(base.name);
  const input = c === 'none' ? src : src.pipe(createDecompressStream(c));
  try {
    for await (const m of scanTar(input, signal ? { signal } : {})) {
      // basebackup.c sends backup_label first.
      if (m.name !== 'backup_label') return undefined;
      const chunks: Buffer[] = [];
      for await (const ch of m.body) chunks.push(ch as Buffer);
      return parseBackupLabel(Buffer.concat(chunks)).checkpointLsn;
    }
    return undefined;
  } finally {
    src.destroy();
    if (input !== src) input.destroy();
  }
}

/**
 * The oldestActiveXid of a backup's checkpoint (see the module comment), or undefined when it cannot
 * be read cheaply and surely. Never throws for a missing or odd object: the check is an extra.
 */
export async function readBackupOldestActiveXid(
  storage: Storage,
  entry: BackupCatalogEntry,
  signal?: AbortSignal,
): Promise<number | undefined> {
  try {
    const checkpoint = await readBackupLabelCheckpoint(storage, entry, signal);
    if (checkpoint === undefined) return undefined;
    const segSize = entry.walSegmentSize;
    const segName = walFileName(entry.startTimeline, lsnToSegmentNumber(checkpoint, segSize), segSize);
    const wal = entry.objects.find((o) => o.kind === 'wal' && o.name === `wal/${segName}`);
    if (!wal || wal.size !== segSize) return undefined; // compressed or not carried: unknown
    const offset = Number(checkpoint % BigInt(segSize));
    // The record with its page headers fits in 2 pages from its page start.
    const start = offset - (offset % WAL_PAGE_SIZE);
    const end = Math.min(segSize, start + 2 * WAL_PAGE_SIZE) - 1;
    const chunks: Buffer[] = [];
    for await (const ch of await storage.get(wal.key, {
      range: { start, end },
      ...(signal ? { signal } : {}),
    }))
      chunks.push(ch as Buffer);
    const rec = recordBytes(
      Buffer.concat(chunks),
      start,
      offset,
      SIZE_OF_XLOG_RECORD + 2 + SIZE_OF_CHECKPOINT,
      segSize,
    );
    return rec ? checkpointOldestActiveXid(rec) : undefined;
  } catch (e) {
    // An abort is the caller's; a damaged or missing object is found (and reported) by the restore
    // itself, which checks every object's sha256: here it only leaves the xid check out.
    if (signal?.aborted) throw e;
    return undefined;
  }
}
