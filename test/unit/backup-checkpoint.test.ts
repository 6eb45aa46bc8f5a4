import { describe, expect, it } from 'vitest';
import { checkpointOldestActiveXid, recordBytes } from '../../src/restore/backup-checkpoint';
import { crc32c } from '../../src/verify/crc32c';

const SEG = 16 * 1024 * 1024;

/** A checkpoint record as xloginsert.c lays it out (header, short main data, CheckPoint), CRC set. */
function checkpointRecord(oldestActiveXid: number, info = 0x10): Buffer {
  const r = Buffer.alloc(24 + 2 + 88);
  r.writeUInt32LE(r.length, 0);
  r[16] = info;
  r[17] = 0; // RM_XLOG_ID
  r[24] = 255;
  r[25] = 88;
  r.writeUInt32LE(oldestActiveXid, 26 + 80);
  r.writeUInt32LE(crc32c(Buffer.concat([r.subarray(24), r.subarray(0, 20)])), 20);
  return r;
}

describe('backup checkpoint reader', () => {
  it('reads oldestActiveXid of an online or shutdown checkpoint record with a valid crc', () => {
    expect(checkpointOldestActiveXid(checkpointRecord(7777))).toBe(7777);
    expect(checkpointOldestActiveXid(checkpointRecord(0, 0x00))).toBe(0);
    const bad = checkpointRecord(7777);
    bad.writeUInt8(bad.readUInt8(26 + 80) ^ 1, 26 + 80);
    expect(checkpointOldestActiveXid(bad)).toBeUndefined(); // crc mismatch
    expect(checkpointOldestActiveXid(checkpointRecord(7777, 0x70))).toBeUndefined(); // a restore point
  });

  it('skips the page header of a page the record crosses', () => {
    const rec = checkpointRecord(4242);
    const pageStart = 8192 * 5;
    const offset = pageStart + 8192 - 40; // 40 bytes on this page, the rest after the next page's header
    const bytes = Buffer.alloc(2 * 8192, 0xee);
    rec.copy(bytes, offset - pageStart, 0, 40);
    rec.copy(bytes, 8192 + 24, 40);
    const got = recordBytes(bytes, pageStart, offset, rec.length, SEG);
    expect(got?.equals(rec)).toBe(true);
    expect(checkpointOldestActiveXid(got!)).toBe(4242);
    // Not all bytes there, or past the segment: undefined.
    expect(recordBytes(bytes.subarray(0, 8192 + 30), pageStart, offset, rec.length, SEG)).toBeUndefined();
    expect(recordBytes(bytes, SEG - 8192, SEG - 40, rec.length, SEG)).toBeUndefined();
  });
});
