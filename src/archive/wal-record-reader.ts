/**
 * A streaming WAL record reader: segments in, record headers out (and, for the records a caller asks
 * for, the whole record with its CRC checked). Pure: bytes in, records out; no I/O, no timers.
 *
 * Memory is bounded: the reader keeps no segment (the caller hands one at a time and may reuse its
 * buffer after the generator finished), only the 24-byte header of the record in progress and the
 * bytes of a record the caller wants, up to `maxRecordBytes`; every other record body is skipped by
 * counting.
 *
 * Layout (identical in PostgreSQL 14-18, checked against each branch's headers):
 * - access/xlog_internal.h: every XLOG_BLCKSZ (8192) page starts with XLogPageHeaderData (xlp_magic
 *   u16, xlp_info u16, xlp_tli u32, xlp_pageaddr u64, xlp_rem_len u32, MAXALIGNed to 24 bytes); the
 *   first page of a segment has the long header (XLP_LONG_HEADER, + xlp_sysid u64, xlp_seg_size u32,
 *   xlp_xlog_blcksz u32: 40 bytes). XLP_FIRST_IS_CONTRECORD: the page starts with the rest of a record
 *   begun on an earlier page, xlp_rem_len bytes of it (counted over all following pages);
 *   XLP_FIRST_IS_OVERWRITE_CONTRECORD (14+): that rest was never written, and a new record starts
 *   after the header (xlogreader.c XLogDecodeNextRecord abandons the partial record).
 * - access/xlogrecord.h: XLogRecord is 24 bytes (xl_tot_len u32, xl_xid u32, xl_prev u64, xl_info u8,
 *   xl_rmid u8, 2 pad, xl_crc u32); records start MAXALIGNed (8); a record (even its header, past
 *   xl_tot_len) may continue on the next page and the next segment. xl_crc is CRC-32C over the bytes
 *   after the header, then the header up to xl_crc (xloginsert.c XLogRecordAssemble).
 * - An XLOG_SWITCH record (RM_XLOG_ID, info 0x40) ends the segment: the next record starts at the
 *   next segment (xlogreader.c "Pretend it extends to end of segment").
 * - The end of WAL is where the next record does not decode (xlogreader.c: xl_tot_len 0 or < 24 on
 *   a zeroed page, a page header with another address (a recycled segment), a wrong xl_prev, a CRC
 *   mismatch): the reader stops there and says why (`end`), as recovery would.
 *
 * decodeRecordData follows xlogreader.c DecodeXLogRecord: after the header come block-reference
 * headers (XLogRecordBlockHeader: id u8, fork_flags u8, data_length u16; an image header when
 * BKPBLOCK_HAS_IMAGE: length u16, hole_offset u16, bimg_info u8, + hole_length u16 when the image
 * has a hole and is compressed (BKPIMAGE_IS_COMPRESSED 0x02 in 14; BKPIMAGE_COMPRESS_* 0x04|0x08|0x10
 * in 15+); a RelFileLocator (12 bytes) unless BKPBLOCK_SAME_REL; a BlockNumber u32), the origin
 * (XLR_BLOCK_ID_ORIGIN 253, u16), the top-level xid (XLR_BLOCK_ID_TOPLEVEL_XID 252, u32), and last
 * the main-data header (XLR_BLOCK_ID_DATA_SHORT 255 with a u8 length, XLR_BLOCK_ID_DATA_LONG 254 with
 * a u32 length). The block data follow the headers, and the main data come last in the record.
 */
import { IntegrityError } from '../errors';
import { formatLsn, type Lsn } from '../lsn';
import { crc32c } from '../verify/crc32c';
import { WAL_PAGE_SIZE, pgMajorForWalMagic } from './wal-segment';

/** SizeOfXLogRecord. */
export const SIZE_OF_XLOG_RECORD = 24;
const SHORT_PAGE_HEADER = 24;
const LONG_PAGE_HEADER = 40;
const XLP_FIRST_IS_CONTRECORD = 0x0001;
const XLP_LONG_HEADER = 0x0002;
const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
const XLP_ALL_FLAGS = 0x000f;
/** XLogRecordMaxSize (xlogrecord.h, 16+; older servers used the 1 GB palloc limit, a little larger). */
const MAX_RECORD_BYTES = 0x3fffffff;
/** RM_XLOG_ID, and its XLOG_SWITCH info (catalog/pg_control.h). */
export const RM_XLOG_ID = 0;
const XLOG_SWITCH = 0x40;
/** XLR_INFO_MASK: the low info bits belong to the record layer, the high ones to the resource manager. */
export const XLR_INFO_MASK = 0x0f;

/** The fixed header of one record, and where it lies. */
export interface WalRecordHeader {
  /** Start of the record (the LSN PostgreSQL reports for it). */
  lsn: Lsn;
  /** xl_tot_len: the record's length without page headers. */
  totLen: number;
  /** xl_xid (XLogRecGetXid). */
  xid: number;
  /** xl_prev: start of the previous record. */
  prev: Lsn;
  /** xl_info (the resource manager's bits are `info & 0xF0`). */
  info: number;
  /** xl_rmid. */
  rmid: number;
}

export interface WalRecord extends WalRecordHeader {
  /** End of the record, MAXALIGNed (EndRecPtr: where the next record starts, as pg_walinspect's end_lsn). */
  endLsn: Lsn;
  /**
   * The whole record without page headers (header, block headers, data), CRC checked; only for the
   * records `wantRecord` asked for and no larger than `maxRecordBytes`. A fresh buffer: keep it.
   */
  bytes?: Buffer;
}

/** Why the reader stopped: the end of WAL as recovery would see it. */
export interface WalReadEnd {
  reason:
    | 'zeros' // xl_tot_len 0 or a zeroed page: the end of the WAL written
    | 'invalid-record' // a header that cannot be a record (length, xl_prev)
    | 'invalid-page' // a page header that does not fit (magic, address, continuation)
    | 'crc' // a wanted record whose CRC does not match
    | 'gap'; // the next segment handed over is not the one that follows
  /** Where the next record (or page) was expected. */
  lsn: Lsn;
}

export interface WalRecordReaderOptions {
  /** wal_segment_size in bytes. */
  segmentSize: number;
  /** Records starting before it are read over (not reported). @default the start of the first segment */
  startLsn?: Lsn;
  /** Which records the caller wants whole (asked once per record, with its header). @default none */
  wantRecord?: (header: WalRecordHeader) => boolean;
  /** A wanted record larger than this is reported without `bytes`. @default 16 MiB */
  maxRecordBytes?: number;
}

/** A record being assembled across pages and segments. */
interface PendingRecord {
  lsn: Lsn;
  totLen: number;
  got: number;
  header: Buffer;
  parsed?: WalRecordHeader;
  keep?: Buffer;
}

const maxAlign = (n: number): number => (n + 7) & ~7;

/**
 * Reads records from consecutive segments. Feed each segment (or the durable prefix of the last
 * one) in order with `feed`, which yields the records that end in it; `end` is set once the end of
 * WAL is found (later feeds then yield nothing).
 */
export class WalRecordReader {
  private readonly segmentSize: number;
  private readonly startLsn: Lsn | undefined;
  private readonly wantRecord: (header: WalRecordHeader) => boolean;
  private readonly maxRecordBytes: number;
  /** Next byte to read (page headers included); undefined before the first segment. */
  private pos: Lsn | undefined;
  private pending: PendingRecord | undefined;
  /** Bytes of a record begun before the first page read, still to skip (xlp_rem_len). */
  private skipRemaining = 0;
  private firstPage = true;
  private lastRecordLsn: Lsn | undefined;
  /** The server major of the WAL (from the first page's magic), when known. */
  pgMajor: number | undefined;
  /** Set when the end of WAL was found. */
  end: WalReadEnd | undefined;
  /** Records read (reported or not). */
  recordsRead = 0;

  constructor(options: WalRecordReaderOptions) {
    this.segmentSize = options.segmentSize;
    this.startLsn = options.startLsn;
    this.wantRecord = options.wantRecord ?? (() => false);
    this.maxRecordBytes = options.maxRecordBytes ?? 16 * 1024 * 1024;
  }

  /** Where the next record would start (or the reader stopped). */
  get position(): Lsn | undefined {
    return this.end ? this.end.lsn : this.pos;
  }

  /** True when a record was begun but not finished by the bytes fed so far. */
  get inRecord(): boolean {
    return this.pending !== undefined;
  }

  private stop(reason: WalReadEnd['reason'], lsn: Lsn): void {
    this.end = { reason, lsn };
    this.pending = undefined;
  }

  /**
   * Reads the segment that starts at `segmentStart` (`bytes` from its first byte: the whole segment,
   * or a prefix of it for the last, partial one). Yields every record that ends in it.
   */
  *feed(segmentStart: Lsn, bytes: Buffer): Generator<WalRecord> {
    if (this.end) return;
    if (bytes.length > this.segmentSize) {
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `wal segment at ${formatLsn(segmentStart)} has ${bytes.length} bytes, more than the segment size ${this.segmentSize}`,
      );
    }
    this.pos ??= segmentStart;
    if (this.pos >= segmentStart + BigInt(this.segmentSize)) return; // after an XLOG_SWITCH: not needed
    if (this.pos < segmentStart) {
      this.stop('gap', this.pos);
      return;
    }
    let off = Number(this.pos - segmentStart);
    const len = bytes.length;
    while (off < len) {
      const pageOff = off % WAL_PAGE_SIZE;
      if (pageOff === 0) {
        // A page header: validate as XLogReaderValidatePageHeader does (magic, flags, address).
        if (len - off < SHORT_PAGE_HEADER) break;
        const magic = bytes.readUInt16LE(off);
        const info = bytes.readUInt16LE(off + 2);
        const pageAddr = bytes.readBigUInt64LE(off + 8);
        const remLen = bytes.readUInt32LE(off + 16);
        const here = segmentStart + BigInt(off);
        if (magic === 0 && pageAddr === 0n) {
          this.stop('zeros', this.pending?.lsn ?? here);
          return;
        }
        const major = pgMajorForWalMagic(magic);
        if (
          major === undefined ||
          (this.pgMajor !== undefined && major !== this.pgMajor) ||
          (info & ~XLP_ALL_FLAGS) !== 0 ||
          pageAddr !== here ||
          ((info & XLP_LONG_HEADER) !== 0) !== (off === 0)
        ) {
          this.stop('invalid-page', this.pending?.lsn ?? here);
          return;
        }
        this.pgMajor = major;
        const headerLen = info & XLP_LONG_HEADER ? LONG_PAGE_HEADER : SHORT_PAGE_HEADER;
        if (len - off < headerLen) break;
        if (this.pending) {
          if (info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) {
            // The rest of the pending record was never written; a new record starts after the header.
            this.pending = undefined;
          } else if (!(info & XLP_FIRST_IS_CONTRECORD) || remLen !== this.pending.totLen - this.pending.got) {
            this.stop('invalid-page', this.pending.lsn);
            return;
          }
        } else if (this.firstPage && info & XLP_FIRST_IS_CONTRECORD) {
          // The scan begins inside a record that started earlier: skip its rest (XLogFindNextRecord).
          this.skipRemaining = remLen;
        }
        this.firstPage = false;
        off += headerLen;
        continue;
      }
      const pageEnd = off - pageOff + WAL_PAGE_SIZE;
      const avail = Math.min(pageEnd, len) - off;
      if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, avail);
        off += n;
        this.skipRemaining -= n;
        if (this.skipRemaining === 0) off = maxAlign(off);
        continue;
      }
      if (!this.pending) {
        // A new record: xl_tot_len always lies on this page (records are 8-aligned, headers 24/40).
        if (avail < 4) break;
        const totLen = bytes.readUInt32LE(off);
        const lsn = segmentStart + BigInt(off);
        if (totLen === 0) {
          this.stop('zeros', lsn);
          return;
        }
        if (totLen < SIZE_OF_XLOG_RECORD || totLen > MAX_RECORD_BYTES) {
          this.stop('invalid-record', lsn);
          return;
        }
        this.pending = { lsn, totLen, got: 0, header: Buffer.alloc(SIZE_OF_XLOG_RECORD) };
      }
      const p = this.pending;
      const n = Math.min(p.totLen - p.got, avail);
      if (p.got < SIZE_OF_XLOG_RECORD) {
        const h = Math.min(n, SIZE_OF_XLOG_RECORD - p.got);
        bytes.copy(p.header, p.got, off, off + h);
      }
      const gotBefore = p.got;
      p.got += n;
      if (!p.parsed && p.got >= SIZE_OF_XLOG_RECORD) {
        const parsed: WalRecordHeader = {
          lsn: p.lsn,
          totLen: p.totLen,
          xid: p.header.readUInt32LE(4),
          prev: p.header.readBigUInt64LE(8),
          info: p.header[16]!,
          rmid: p.header[17]!,
        };
        // xl_prev must name the record before (xlogreader.c ValidXLogRecordHeader).
        if (this.lastRecordLsn !== undefined && parsed.prev !== this.lastRecordLsn) {
          this.stop('invalid-record', p.lsn);
          return;
        }
        p.parsed = parsed;
        if (p.totLen <= this.maxRecordBytes && this.wantRecord(parsed)) {
          p.keep = Buffer.allocUnsafe(p.totLen);
          p.header.copy(p.keep, 0);
          // The bytes of this page past the header.
          if (p.got > SIZE_OF_XLOG_RECORD)
            bytes.copy(p.keep, SIZE_OF_XLOG_RECORD, off + (SIZE_OF_XLOG_RECORD - gotBefore), off + n);
        }
      } else if (p.keep) {
        bytes.copy(p.keep, gotBefore, off, off + n);
      }
      off += n;
      if (p.got < p.totLen) continue; // the record goes on after this page (or buffer)
      this.pending = undefined;
      const header = p.parsed!;
      // EndRecPtr: the end MAXALIGNed, i.e. where the next record starts (XLogInsert returns it too).
      off = maxAlign(off);
      const isSwitch = header.rmid === RM_XLOG_ID && (header.info & ~XLR_INFO_MASK) === XLOG_SWITCH;
      // The rest of the segment after an XLOG_SWITCH is padding: the next record starts at the next
      // segment, and the record counts as ending there (pg_walinspect's end_lsn).
      if (isSwitch) off = this.segmentSize;
      const recordEnd = segmentStart + BigInt(off);
      if (p.keep) {
        const crc = crc32c(Buffer.concat([p.keep.subarray(SIZE_OF_XLOG_RECORD), p.keep.subarray(0, 20)]));
        if (crc !== p.keep.readUInt32LE(20)) {
          this.stop('crc', p.lsn);
          return;
        }
      }
      this.lastRecordLsn = p.lsn;
      this.recordsRead++;
      if (this.startLsn === undefined || p.lsn >= this.startLsn) {
        // The header object is this record's own (made per record): completed in place, not copied.
        const rec = header as WalRecord;
        rec.endLsn = recordEnd;
        if (p.keep) rec.bytes = p.keep;
        yield rec;
      }
    }
    this.pos = segmentStart + BigInt(off);
  }
}

/** What DecodeXLogRecord finds in a record's body. */
export interface DecodedWalRecord {
  /** The main data (a view into the record). */
  mainData: Buffer;
  /** Block references. */
  blockCount: number;
  /** Of them, with a full-page image; and compressed images with a hole (an extra hole_length header). */
  imageCount: number;
  compressedHoleImages: number;
  /** XLR_BLOCK_ID_ORIGIN, when present. */
  origin?: number;
  /** XLR_BLOCK_ID_TOPLEVEL_XID, when present. */
  toplevelXid?: number;
}

const XLR_MAX_BLOCK_ID = 32;
const XLR_BLOCK_ID_DATA_SHORT = 255;
const XLR_BLOCK_ID_DATA_LONG = 254;
const XLR_BLOCK_ID_ORIGIN = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID = 252;
const BKPBLOCK_HAS_IMAGE = 0x10;
const BKPBLOCK_HAS_DATA = 0x20;
const BKPBLOCK_SAME_REL = 0x80;
const BKPIMAGE_HAS_HOLE = 0x01;
const SIZE_OF_REL_FILE_LOCATOR = 12;

/** BKPIMAGE_COMPRESSED(): 14 has one flag, 15+ one per method (xlogrecord.h of each branch). */
function imageCompressed(bimgInfo: number, pgMajor: number): boolean {
  return pgMajor <= 14 ? (bimgInfo & 0x02) !== 0 : (bimgInfo & (0x04 | 0x08 | 0x10)) !== 0;
}

/**
 * Pure: the main data and block count of a whole record (WalRecord.bytes), as DecodeXLogRecord
 * finds them. `pgMajor` picks the image-compression flags (14 differs from 15+).
 * @throws IntegrityError INTEGRITY_WAL_INVALID when the headers do not fit the record.
 */
export function decodeRecordData(record: Buffer, pgMajor: number): DecodedWalRecord {
  const totLen = record.readUInt32LE(0);
  const bad = (what: string): IntegrityError =>
    new IntegrityError('INTEGRITY_WAL_INVALID', `wal record does not decode: ${what}`);
  if (totLen !== record.length) throw bad(`xl_tot_len ${totLen} but ${record.length} bytes`);
  let pos = SIZE_OF_XLOG_RECORD;
  let remaining = totLen - SIZE_OF_XLOG_RECORD;
  let dataTotal = 0;
  let mainDataLen = 0;
  let blockCount = 0;
  let imageCount = 0;
  let compressedHoleImages = 0;
  const out: Omit<DecodedWalRecord, 'mainData' | 'blockCount' | 'imageCount' | 'compressedHoleImages'> = {};
  const take = (n: number): number => {
    if (remaining < n) throw bad('a header runs past the record');
    const at = pos;
    pos += n;
    remaining -= n;
    return at;
  };
  while (remaining > dataTotal) {
    const id = record[take(1)]!;
    if (id === XLR_BLOCK_ID_DATA_SHORT) {
      mainDataLen = record[take(1)]!;
      dataTotal += mainDataLen;
      break; // by convention the main data come last
    } else if (id === XLR_BLOCK_ID_DATA_LONG) {
      mainDataLen = record.readUInt32LE(take(4));
      dataTotal += mainDataLen;
      break;
    } else if (id === XLR_BLOCK_ID_ORIGIN) {
      out.origin = record.readUInt16LE(take(2));
    } else if (id === XLR_BLOCK_ID_TOPLEVEL_XID) {
      out.toplevelXid = record.readUInt32LE(take(4));
    } else if (id <= XLR_MAX_BLOCK_ID) {
      blockCount++;
      const forkFlags = record[take(1)]!;
      const dataLength = record.readUInt16LE(take(2));
      if ((forkFlags & BKPBLOCK_HAS_DATA) === 0 && dataLength !== 0) throw bad('block data without HAS_DATA');
      dataTotal += dataLength;
      if (forkFlags & BKPBLOCK_HAS_IMAGE) {
        const imageLength = record.readUInt16LE(take(2));
        take(2); // hole_offset
        const bimgInfo = record[take(1)]!;
        imageCount++;
        if (bimgInfo & BKPIMAGE_HAS_HOLE && imageCompressed(bimgInfo, pgMajor)) {
          take(2); // hole_length
          compressedHoleImages++;
        }
        dataTotal += imageLength;
      }
      if (!(forkFlags & BKPBLOCK_SAME_REL)) take(SIZE_OF_REL_FILE_LOCATOR);
      take(4); // BlockNumber
    } else {
      throw bad(`invalid block id ${id}`);
    }
  }
  if (remaining !== dataTotal) throw bad(`${remaining} bytes of data, headers say ${dataTotal}`);
  return {
    ...out,
    mainData: record.subarray(totLen - mainDataLen, totLen),
    blockCount,
    imageCount,
    compressedHoleImages,
  };
}
