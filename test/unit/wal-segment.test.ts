import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ConfigError, IntegrityError } from '../../src/errors';
import {
  WAL_PAGE_MAGIC_BY_MAJOR,
  WalSegmentCheckStream,
  checkWalSegmentHeader,
  readWalSysid,
} from '../../src/archive/wal-segment';

const FIX = join(__dirname, '../fixtures/backup/wal');
const SEG = 16 * 1024 * 1024;
const NAME = '000000010000000000000001';
const load = (major: number): { page: Buffer; sysid: string } => ({
  page: readFileSync(join(FIX, `pg${major}-${NAME}.head`)),
  sysid: (JSON.parse(readFileSync(join(FIX, `pg${major}.json`), 'utf8')) as { systemIdentifier: string })
    .systemIdentifier,
});

function expectWalInvalid(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as IntegrityError).code).toBe('INTEGRITY_WAL_INVALID');
    return;
  }
  throw new Error('expected INTEGRITY_WAL_INVALID');
}

describe.each([14, 15, 16, 17, 18])('real first pages of PG%i', (major) => {
  const { page, sysid } = load(major);

  it('pass with the right magic, sysid, tli and sizes', () => {
    const r = checkWalSegmentHeader(page, {
      expectedName: NAME,
      segmentSize: SEG,
      systemIdentifier: sysid,
      pgMajor: major,
    });
    expect(r.ok).toBe(true);
    expect(r.magic).toBe(WAL_PAGE_MAGIC_BY_MAJOR[major]);
    expect(r.pgMajor).toBe(major);
    expect(r.tli).toBe(1);
    expect(r.sysid).toBe(sysid);
    expect(r.segmentSize).toBe(SEG);
    expect(r.blcksz).toBe(8192);
    expect(r.pageAddr).toBe(0x1000000n);
    expect(readWalSysid(page)).toBe(sysid);
  });

  it("pass on a higher timeline name (tli <= the name's) and as .partial", () => {
    expect(
      checkWalSegmentHeader(page, { expectedName: '000000030000000000000001', segmentSize: SEG }).tli,
    ).toBe(1);
    expect(checkWalSegmentHeader(page, { expectedName: `${NAME}.partial`, segmentSize: SEG }).ok).toBe(true);
  });

  it('fail on a wrong sysid, position, major, segment size or a damaged header', () => {
    const other = (BigInt(sysid) + 1n).toString();
    expectWalInvalid(() =>
      checkWalSegmentHeader(page, { expectedName: NAME, segmentSize: SEG, systemIdentifier: other }),
    );
    expectWalInvalid(() =>
      checkWalSegmentHeader(page, { expectedName: '000000010000000000000002', segmentSize: SEG }),
    );
    expectWalInvalid(() =>
      checkWalSegmentHeader(page, { expectedName: NAME, segmentSize: SEG, pgMajor: major === 14 ? 15 : 14 }),
    );
    expectWalInvalid(() =>
      checkWalSegmentHeader(page, { expectedName: '000000000000000100000001', segmentSize: 1024 * 1024 }),
    );
    const noLong = Buffer.from(page);
    noLong[2] = 0; // clear XLP_LONG_HEADER
    expectWalInvalid(() => checkWalSegmentHeader(noLong, { expectedName: NAME, segmentSize: SEG }));
    const badMagic = Buffer.from(page);
    badMagic[0] = 0x00;
    expectWalInvalid(() => checkWalSegmentHeader(badMagic, { expectedName: NAME, segmentSize: SEG }));
    expectWalInvalid(() =>
      checkWalSegmentHeader(page.subarray(0, 30), { expectedName: NAME, segmentSize: SEG }),
    );
  });

  it('streams: real page 0 and 1 pass, then an all-zero tail is a partial; a wrong page address fails', async () => {
    const body = Buffer.concat([page, Buffer.alloc(SEG - page.length)]);
    const check = new WalSegmentCheckStream({
      expectedName: NAME,
      segmentSize: SEG,
      systemIdentifier: sysid,
    });
    const chunks = [
      body.subarray(0, 13),
      body.subarray(13, 8200),
      body.subarray(8200, 8230),
      body.subarray(8230),
    ];
    await pipeline(Readable.from(chunks), check, async function (src: AsyncIterable<unknown>) {
      for await (const _ of src) void _;
    });
    const r = check.result();
    expect(r.pagesChecked).toBe(2);
    expect(r.firstZeroPage).toBe(2);
    expect(r.bytes).toBe(SEG);

    const moved = Buffer.from(page);
    moved.writeBigUInt64LE(0x1000000n + 3n * 8192n, 8192 + 8); // page 1 claims the address of page 3
    const bad = new WalSegmentCheckStream({ expectedName: NAME, segmentSize: SEG, allowPartial: true });
    await expect(
      pipeline(Readable.from([moved]), bad, async function (src: AsyncIterable<unknown>) {
        for await (const _ of src) void _;
      }),
    ).rejects.toMatchObject({ code: 'INTEGRITY_WAL_INVALID' });
  });
});

it('rejects a name that is not a segment name with ConfigError', () => {
  const { page } = load(17);
  expect(() => checkWalSegmentHeader(page, { expectedName: '00000001.history', segmentSize: SEG })).toThrow(
    ConfigError,
  );
});
