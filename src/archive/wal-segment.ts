/**
 * WAL segment page-header validation: does this file belong to this cluster, at this position, on this timeline?
 * Pure (bytes in, verdict out) plus a streaming Transform for a whole segment; no I/O.
 *
 * Layout from src/include/access/xlog_internal.h (XLogPageHeaderData, XLogLongPageHeaderData, XLP_* flags) in
 * server-native byte order (little-endian on every platform PostgreSQL ships on). Checks follow
 * src/backend/access/transam/xlogreader.c XLogReaderValidatePageHeader: magic, no unknown info bits, long header on
 * page 0 carrying sysid / seg_size / blcksz, pageaddr = segment start + i * XLOG_BLCKSZ, tli not beyond the
 * timeline in the file name (after a switch the new timeline's first segment keeps the old tli on copied pages).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { ConfigError, IntegrityError } from '../errors';
import { parseWalFileName, segmentStartLsn, type Lsn } from '../lsn';

/** XLOG_PAGE_MAGIC per major version (xlog_internal.h of each release branch). */
export const WAL_PAGE_MAGIC_BY_MAJOR: Readonly<Record<number, number>> = {
  13: 0xd106,
  14: 0xd10d,
  15: 0xd110,
  16: 0xd113,
  17: 0xd116,
  18: 0xd118,
};

/** XLOG_BLCKSZ of standard builds. */
export const WAL_PAGE_SIZE = 8192;
const XLP_LONG_HEADER = 0x0002;
const XLP_ALL_FLAGS = 0x000f;
const SIZE_OF_SHORT_HEADER = 24;
const SIZE_OF_LONG_HEADER = 40;

/** The PostgreSQL major that writes this magic, if known. */
export function pgMajorForWalMagic(magic: number): number | undefined {
  for (const [major, m] of Object.entries(WAL_PAGE_MAGIC_BY_MAJOR)) if (m === magic) return Number(major);
  return undefined;
}

export interface WalPageHeader {
  magic: number;
  info: number;
  tli: number;
  pageAddr: Lsn;
  remLen: number;
  /** Long header only (page 0 of a segment). */
  sysid?: string;
  segSize?: number;
  blcksz?: number;
}

/** Decodes one page header (short or long, by XLP_LONG_HEADER). `page` must hold at least 24 (or 40) bytes. */
export function readWalPageHeader(page: Uint8Array): WalPageHeader {
  const b = Buffer.isBuffer(page) ? page : Buffer.from(page.buffer, page.byteOffset, page.byteLength);
  if (b.length < SIZE_OF_SHORT_HEADER) {
    throw new IntegrityError(
      'INTEGRITY_WAL_INVALID',
      `wal page header needs ${SIZE_OF_SHORT_HEADER} bytes, got ${b.length}`,
    );
  }
  const h: WalPageHeader = {
    magic: b.readUInt16LE(0),
    info: b.readUInt16LE(2),
    tli: b.readUInt32LE(4),
    pageAddr: b.readBigUInt64LE(8),
    remLen: b.readUInt32LE(16),
  };
  if (h.info & XLP_LONG_HEADER) {
    if (b.length < SIZE_OF_LONG_HEADER) {
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `wal long page header needs ${SIZE_OF_LONG_HEADER} bytes, got ${b.length}`,
      );
    }
    h.sysid = b.readBigUInt64LE(24).toString();
    h.segSize = b.readUInt32LE(32);
    h.blcksz = b.readUInt32LE(36);
  }
  return h;
}

/** The system identifier in a segment's first page (its long header). */
export function readWalSysid(firstPage: Uint8Array): string {
  const h = readWalPageHeader(firstPage);
  if (h.sysid === undefined) {
    throw new IntegrityError(
      'INTEGRITY_WAL_INVALID',
      'the first wal page has no long header, so no system identifier',
    );
  }
  return h.sysid;
}

export interface CheckWalSegmentOptions {
  /** The segment's file name (24 hex digits; `.partial` suffix allowed). Gives the timeline and the segment start. */
  expectedName: string;
  /** wal_segment_size in bytes. */
  segmentSize: number;
  /** When given, the long header's xlp_sysid must equal it (decimal string, 64-bit). */
  systemIdentifier?: string;
  /** When given, the magic must be this major's; otherwise any known magic (13-18) is accepted. */
  pgMajor?: number;
}

export interface WalSegmentHeaderCheck {
  ok: true;
  magic: number;
  /** The major that writes this magic. */
  pgMajor: number | undefined;
  tli: number;
  sysid: string;
  segmentSize: number;
  blcksz: number;
  pageAddr: Lsn;
}

function bad(name: string, what: string, expected?: string, actual?: string): IntegrityError {
  return new IntegrityError('INTEGRITY_WAL_INVALID', `wal segment ${name}: ${what}`, {
    key: name,
    expected,
    actual,
    hint: 'the file is not the wal segment its name says (another cluster, another position, or damaged)',
  });
}

function nameParts(
  expectedName: string,
  segmentSize: number,
): { name: string; timeline: number; start: Lsn } {
  const name = expectedName.replace(/\.partial$/, '');
  try {
    const { timeline, segno } = parseWalFileName(name, segmentSize);
    return { name, timeline, start: segmentStartLsn(segno, segmentSize) };
  } catch (e) {
    throw new ConfigError('CONFIG_INVALID_WAL_NAME', `"${expectedName}" is not a wal segment name`, {
      cause: e,
    });
  }
}

/** Checks one page header against its expected address; shared by the first-page and the streaming checks. */
function checkPage(
  h: WalPageHeader,
  pageIndex: number,
  ctx: { name: string; timeline: number; start: Lsn; magic?: number },
): void {
  const known = ctx.magic !== undefined ? h.magic === ctx.magic : pgMajorForWalMagic(h.magic) !== undefined;
  if (!known) {
    throw bad(
      ctx.name,
      `page ${pageIndex} has magic 0x${h.magic.toString(16)}`,
      ctx.magic?.toString(16),
      h.magic.toString(16),
    );
  }
  if ((h.info & ~XLP_ALL_FLAGS) !== 0)
    throw bad(ctx.name, `page ${pageIndex} has unknown info bits 0x${h.info.toString(16)}`);
  const expectedAddr = ctx.start + BigInt(pageIndex * WAL_PAGE_SIZE);
  if (h.pageAddr !== expectedAddr) {
    throw bad(
      ctx.name,
      `page ${pageIndex} has address ${h.pageAddr.toString(16)}`,
      expectedAddr.toString(16),
      h.pageAddr.toString(16),
    );
  }
  if (h.tli < 1 || h.tli > ctx.timeline) {
    throw bad(
      ctx.name,
      `page ${pageIndex} has timeline ${h.tli}, beyond the name's ${ctx.timeline}`,
      String(ctx.timeline),
      String(h.tli),
    );
  }
  if (pageIndex > 0 && h.info & XLP_LONG_HEADER) throw bad(ctx.name, `page ${pageIndex} has a long header`);
}

/**
 * Validates a WAL segment's first page (at least 40 bytes; 8192 for a whole page).
 *
 * @throws IntegrityError `INTEGRITY_WAL_INVALID` on a wrong magic, missing long header, sysid / segment size /
 *   page size mismatch, page address not the segment start, or a timeline beyond the one in the name.
 * @throws ConfigError `CONFIG_INVALID_WAL_NAME` when `expectedName` is not a segment name.
 */
export function checkWalSegmentHeader(
  firstPage: Uint8Array,
  options: CheckWalSegmentOptions,
): WalSegmentHeaderCheck {
  const ctx = nameParts(options.expectedName, options.segmentSize);
  const wantMagic = options.pgMajor !== undefined ? WAL_PAGE_MAGIC_BY_MAJOR[options.pgMajor] : undefined;
  if (options.pgMajor !== undefined && wantMagic === undefined) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `no wal page magic known for major ${options.pgMajor}`);
  }
  const h = readWalPageHeader(firstPage);
  checkPage(h, 0, wantMagic === undefined ? ctx : { ...ctx, magic: wantMagic });
  if (h.sysid === undefined || h.segSize === undefined || h.blcksz === undefined) {
    throw bad(ctx.name, 'the first page has no long header');
  }
  if (options.systemIdentifier !== undefined && h.sysid !== options.systemIdentifier) {
    throw bad(ctx.name, 'system identifier differs', options.systemIdentifier, h.sysid);
  }
  if (h.segSize !== options.segmentSize)
    throw bad(ctx.name, 'segment size differs', String(options.segmentSize), String(h.segSize));
  if (h.blcksz !== WAL_PAGE_SIZE)
    throw bad(ctx.name, 'wal block size differs', String(WAL_PAGE_SIZE), String(h.blcksz));
  return {
    ok: true,
    magic: h.magic,
    pgMajor: pgMajorForWalMagic(h.magic),
    tli: h.tli,
    sysid: h.sysid,
    segmentSize: h.segSize,
    blcksz: h.blcksz,
    pageAddr: h.pageAddr,
  };
}

/** What a streaming segment check saw. */
export interface WalSegmentStreamResult {
  header: WalSegmentHeaderCheck;
  /** Pages whose header was checked. */
  pagesChecked: number;
  /** Bytes that passed through. */
  bytes: number;
  /** Index of the first all-zero page (the unwritten tail of a `.partial`), if any. */
  firstZeroPage?: number;
}

/**
 * A pass-through Transform that validates every page header of a segment as it streams (page 0 as in
 * `checkWalSegmentHeader`, later pages: same magic, pageaddr, tli bound). All-zero pages are accepted only as a
 * tail (a `.partial` is zero beyond the last received byte). At the end the total must be exactly the segment size
 * unless `allowPartial`. Memory: at most one page header is held across chunk boundaries.
 * `result()` is available after 'finish'.
 */
export class WalSegmentCheckStream extends Transform {
  private readonly ctx: { name: string; timeline: number; start: Lsn; magic?: number };
  private readonly opts: CheckWalSegmentOptions & { allowPartial?: boolean };
  private bytes = 0;
  private pages = 0;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private header: WalSegmentHeaderCheck | undefined;
  private firstZeroPage: number | undefined;

  constructor(options: CheckWalSegmentOptions & { allowPartial?: boolean }) {
    super();
    this.opts = options;
    this.ctx = nameParts(options.expectedName, options.segmentSize);
  }

  result(): WalSegmentStreamResult {
    if (!this.header) throw bad(this.ctx.name, 'no page was checked');
    const r: WalSegmentStreamResult = { header: this.header, pagesChecked: this.pages, bytes: this.bytes };
    if (this.firstZeroPage !== undefined) r.firstZeroPage = this.firstZeroPage;
    return r;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      let off = 0;
      while (off < chunk.length) {
        const posInPage = (this.bytes + off) % WAL_PAGE_SIZE;
        const pageIndex = Math.floor((this.bytes + off) / WAL_PAGE_SIZE);
        const headerLen = pageIndex === 0 ? SIZE_OF_LONG_HEADER : SIZE_OF_SHORT_HEADER;
        if (posInPage < headerLen) {
          const take = Math.min(headerLen - posInPage, chunk.length - off);
          this.pending.push(chunk.subarray(off, off + take));
          this.pendingLen += take;
          off += take;
          if (this.pendingLen === headerLen)
            this.checkHeader(Buffer.concat(this.pending, headerLen), pageIndex);
        } else {
          off += Math.min(WAL_PAGE_SIZE - posInPage, chunk.length - off);
        }
      }
      this.bytes += chunk.length;
      if (this.bytes > this.opts.segmentSize) throw bad(this.ctx.name, 'is longer than the segment size');
      cb(null, chunk);
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.bytes !== this.opts.segmentSize && !this.opts.allowPartial) {
      cb(
        bad(
          this.ctx.name,
          `has ${this.bytes} bytes, not the segment size`,
          String(this.opts.segmentSize),
          String(this.bytes),
        ),
      );
      return;
    }
    cb();
  }

  private checkHeader(h: Buffer, pageIndex: number): void {
    this.pending = [];
    this.pendingLen = 0;
    if (pageIndex === 0) {
      this.header = checkWalSegmentHeader(h, this.opts);
      this.ctx.magic = this.header.magic;
    } else if (h.every((x) => x === 0)) {
      this.firstZeroPage ??= pageIndex;
      return;
    } else {
      if (this.firstZeroPage !== undefined)
        throw bad(this.ctx.name, `page ${pageIndex} follows an all-zero page`);
      checkPage(readWalPageHeader(h), pageIndex, this.ctx);
    }
    this.pages++;
  }
}
