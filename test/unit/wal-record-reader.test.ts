/**
 * The WAL record reader on real segments (test/fixtures/wal-records, made by
 * scripts/capture-wal-record-fixtures.ts with 1 MiB segments), against pg_walinspect's list of the
 * same records as the oracle: every record's start, end, xid, resource manager and length; the
 * restore points and transaction ends a recovery target stops at; records crossing pages, segments,
 * an XLOG_SWITCH, record headers split by a page boundary; and the end of WAL.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeRecordData, WalRecordReader, type WalRecord } from '../../src/archive/wal-record-reader';
import { formatLsn, parseLsn, parseWalFileName, segmentStartLsn, type Lsn } from '../../src/lsn';
import { restorePointName, stopRecordNeedsBody, xactStopXid } from '../../src/restore/recovery-stop-records';

const DIR = resolve(import.meta.dirname, '..', 'fixtures', 'wal-records');
const PAGE = 8192;

/** pg_get_wal_records_info: start, end, xid, resource manager, record type, length, main data length, fpi length. */
type OracleRow = [string, string, number, string, string, number, number, number];
interface Fixture {
  major: number;
  segmentSize: number;
  segments: string[];
  startLsn: string;
  endLsn: string;
  restorePoints: { name: string; endLsn: string }[];
  xids: { commit: string; abort: string; commitPrepared: string; abortPrepared: string };
  /** null for PG14 (no pg_walinspect). */
  records: OracleRow[] | null;
  bytes: { start: Lsn; data: Buffer }[];
}

function load(major: number): Fixture {
  const dir = join(DIR, `pg${major}`);
  const f = JSON.parse(gunzipSync(readFileSync(join(dir, 'records.json.gz'))).toString('utf8')) as Fixture;
  f.bytes = f.segments.map((name) => ({
    start: segmentStartLsn(parseWalFileName(name, f.segmentSize).segno, f.segmentSize),
    data: gunzipSync(readFileSync(join(dir, `${name}.gz`))),
  }));
  return f;
}

function readAll(
  f: Fixture,
  opts: { startLsn?: Lsn; want?: 'all' | 'name' | 'xid'; from?: number; cut?: number } = {},
): { records: WalRecord[]; reader: WalRecordReader } {
  const reader = new WalRecordReader({
    segmentSize: f.segmentSize,
    ...(opts.startLsn !== undefined ? { startLsn: opts.startLsn } : {}),
    wantRecord: (h) => (opts.want === 'all' ? true : opts.want ? stopRecordNeedsBody(h, opts.want) : false),
  });
  const records: WalRecord[] = [];
  const segs = f.bytes.slice(opts.from ?? 0);
  for (const [i, s] of segs.entries()) {
    const data = opts.cut !== undefined && i === segs.length - 1 ? s.data.subarray(0, opts.cut) : s.data;
    for (const r of reader.feed(s.start, data)) records.push(r);
  }
  return { records, reader };
}

describe.each([14, 15, 18])('wal record reader, PG%i segments', (major) => {
  const f = load(major);
  const oracleEnd = parseLsn(f.endLsn);

  it("finds exactly pg_walinspect's records (15+), every one decodes, then the end of WAL", () => {
    const { records, reader } = readAll(f, { startLsn: parseLsn(f.startLsn), want: 'all' });
    const mine = records.filter((r) => r.lsn < oracleEnd);
    // Every record kept, CRC checked, and its block headers add up to its length (DecodeXLogRecord).
    const decoded = mine.map((r) => decodeRecordData(r.bytes!, major));
    // Compressed full-page images with a hole (the header that differs between 14 and 15+) are there.
    expect(decoded.filter((d) => d.compressedHoleImages > 0).length).toBeGreaterThan(10);
    expect(decoded.filter((d) => d.imageCount > d.compressedHoleImages).length).toBeGreaterThan(0);
    expect(mine.at(-1)!.endLsn).toBe(oracleEnd);
    if (f.records) {
      expect(mine.map((r) => [formatLsn(r.lsn), formatLsn(r.endLsn), r.xid, r.totLen])).toEqual(
        f.records.map((o) => [o[0], o[1], o[2], o[5]]),
      );
      expect(decoded.map((d) => d.mainData.length)).toEqual(f.records.map((o) => o[6]));
      expect(decoded.map((d) => d.imageCount > 0)).toEqual(f.records.map((o) => o[7] > 0));
    }
    expect(reader.pgMajor).toBe(major);
    expect(reader.end?.reason).toMatch(/^(zeros|invalid-page)$/);
    expect(reader.end!.lsn).toBeGreaterThanOrEqual(oracleEnd);
  });

  it('the fixture holds what the reader must handle', () => {
    const { records } = readAll(f);
    const crossesPage = records.some(
      (r) => r.lsn / BigInt(PAGE) !== (r.endLsn - 1n) / BigInt(PAGE) && r.totLen < PAGE,
    );
    const headerSplit = records.some((r) => Number(r.lsn % BigInt(PAGE)) > PAGE - 24);
    const seg = BigInt(f.segmentSize);
    const crossesSegment = records.some((r) => r.lsn / seg !== (r.endLsn - 1n) / seg);
    const switchRec = records.some((r) => r.rmid === 0 && (r.info & 0xf0) === 0x40);
    expect({ crossesPage, headerSplit, crossesSegment, switchRec }).toEqual({
      crossesPage: true,
      headerSplit: true,
      crossesSegment: true,
      switchRec: true,
    });
  });

  it('recognises the restore points (name, end LSN as pg_create_restore_point returned it)', () => {
    const { records } = readAll(f, { want: 'name' });
    const points = records
      .map((r) => ({ name: restorePointName(r, major), endLsn: formatLsn(r.endLsn) }))
      .filter((p) => p.name !== undefined);
    // pg_create_restore_point returns XLogInsert's end position: the record's end.
    expect(points).toEqual(f.restorePoints);
  });

  it('recognises the transaction ends recovery_target_xid stops at, prepared ones by their twophase xid', () => {
    const { records } = readAll(f, { want: 'xid' });
    const ends = records.map((r) => xactStopXid(r, major)).filter((x) => x !== undefined);
    const byXid = new Map(ends.map((e) => [String(e.xid), e.kind]));
    expect(byXid.get(f.xids.commit)).toBe('commit');
    expect(byXid.get(f.xids.abort)).toBe('abort');
    expect(byXid.get(f.xids.commitPrepared)).toBe('commit-prepared');
    expect(byXid.get(f.xids.abortPrepared)).toBe('abort-prepared');
    // A prepared transaction's end record carries the xid of whoever ran COMMIT PREPARED (0 here), not its own.
    const cp = records.find((r) => xactStopXid(r, major)?.kind === 'commit-prepared')!;
    expect(String(cp.xid)).not.toBe(f.xids.commitPrepared);
  });

  it('starts inside a record (XLP_FIRST_IS_CONTRECORD) at a later segment', () => {
    const all = readAll(f).records;
    for (let from = 1; from < f.bytes.length; from++) {
      const { records } = readAll(f, { from });
      const first = records[0]!;
      expect(first.lsn).toBeGreaterThanOrEqual(f.bytes[from]!.start);
      // The same records as the full read from there on.
      const rest = all.filter((r) => r.lsn >= first.lsn);
      expect(records.map((r) => r.lsn)).toEqual(rest.map((r) => r.lsn));
    }
  });

  it('a partial last segment (cut at many offsets) yields a prefix of the records, never an error', () => {
    const full = readAll(f).records;
    const all = full.map((r) => r.lsn);
    const last = f.bytes.length - 1;
    const lastStart = f.bytes[last]!.start;
    const used = Number(oracleEnd - lastStart);
    for (const cut of [0, 1, 23, 24, 40, 41, 100, PAGE - 1, PAGE, PAGE + 24, PAGE + 25, used - 1, used]) {
      const { records, reader } = readAll(f, { cut });
      const got = records.map((r) => r.lsn);
      expect(got).toEqual(all.slice(0, got.length));
      // Every record that ends within the cut is there.
      const complete = full.filter((r) => r.endLsn <= lastStart + BigInt(cut));
      expect(got.length).toBeGreaterThanOrEqual(complete.length);
      expect(reader.end === undefined || reader.end.reason === 'zeros').toBe(true);
    }
  });

  it('a wanted record with a damaged byte ends the scan (CRC), as recovery would', () => {
    const rp = readAll(f, { want: 'name' }).records.find((r) => restorePointName(r, major) === 'rp_first')!;
    const seg = f.bytes.find((s) => rp.lsn >= s.start && rp.lsn < s.start + BigInt(f.segmentSize))!;
    const damaged = Buffer.from(seg.data);
    damaged[Number(rp.lsn - seg.start) + 24 + 2 + 10]! ^= 0xff; // inside rp_name
    const reader = new WalRecordReader({ segmentSize: f.segmentSize, wantRecord: () => true });
    const got = [...reader.feed(seg.start, damaged)];
    expect(got.every((r) => r.lsn < rp.lsn)).toBe(true);
    expect(reader.end).toEqual({ reason: 'crc', lsn: rp.lsn });
  });

  it('a zeroed segment ends the scan cleanly', () => {
    const reader = new WalRecordReader({ segmentSize: f.segmentSize });
    expect([...reader.feed(f.bytes[0]!.start, Buffer.alloc(f.segmentSize))]).toEqual([]);
    expect(reader.end?.reason).toBe('zeros');
  });

  it('a segment that does not follow is a gap', () => {
    const reader = new WalRecordReader({ segmentSize: f.segmentSize });
    expect([...reader.feed(f.bytes[0]!.start, f.bytes[0]!.data)].length).toBeGreaterThan(0);
    const next = f.bytes[0]!.start + 5n * BigInt(f.segmentSize);
    expect([...reader.feed(next, f.bytes[1]!.data)]).toEqual([]);
    expect(reader.end?.reason).toBe('gap');
  });
});
