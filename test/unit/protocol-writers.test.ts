import { describe, expect, it } from 'vitest';
import {
  buildStandbyStatusUpdate,
  writeCopyData,
  writeCopyDataHeader,
  writeCopyDone,
  writeCopyFail,
  writeQuery,
  writeStandbyStatusUpdate,
  writeTerminate,
} from '../../src/protocol';
import { ProtocolError } from '../../src/errors';

describe('frontend message writers', () => {
  it('Query: Q, length, text, NUL', () => {
    expect(writeQuery('IDENTIFY_SYSTEM')).toEqual(Buffer.from('Q\0\0\0\x14IDENTIFY_SYSTEM\0', 'latin1'));
    expect(() => writeQuery('a\0b')).toThrow(ProtocolError);
  });

  it('CopyData, CopyDone, CopyFail, Terminate', () => {
    expect(writeCopyData(Buffer.from('xy'))).toEqual(Buffer.from('d\0\0\0\x06xy', 'latin1'));
    expect(writeCopyDataHeader(2)).toEqual(Buffer.from('d\0\0\0\x06', 'latin1'));
    expect(writeCopyDone()).toEqual(Buffer.from('c\0\0\0\x04', 'latin1'));
    expect(writeCopyFail('no')).toEqual(Buffer.from('f\0\0\0\x07no\0', 'latin1'));
    expect(writeTerminate()).toEqual(Buffer.from('X\0\0\0\x04', 'latin1'));
  });

  it("standby status update 'r': 34 bytes, three LSNs, µs since 2000-01-01, replyRequested", () => {
    const b = buildStandbyStatusUpdate({
      writeLsn: 0x1_0000_0010n,
      flushLsn: 0xffff_ffff_ffff_fff0n,
      applyLsn: 0n,
      clientTime: new Date(Date.UTC(2000, 0, 1, 0, 0, 1)),
      replyRequested: true,
    });
    expect(b.length).toBe(34);
    expect(b[0]).toBe(0x72);
    expect(b.readBigUInt64BE(1)).toBe(0x1_0000_0010n);
    expect(b.readBigUInt64BE(9)).toBe(0xffff_ffff_ffff_fff0n);
    expect(b.readBigUInt64BE(17)).toBe(0n);
    expect(b.readBigInt64BE(25)).toBe(1_000_000n);
    expect(b[33]).toBe(1);
    // Now: within a second of the Unix clock shifted by 946684800 s.
    const now = buildStandbyStatusUpdate({ writeLsn: 1n, flushLsn: 1n, applyLsn: 1n }).readBigInt64BE(25);
    expect(Math.abs(Number(now / 1000n) - (Date.now() - 946_684_800_000))).toBeLessThan(1000);
    const msg = writeStandbyStatusUpdate({ writeLsn: 1n, flushLsn: 1n, applyLsn: 1n, clientTime: 5n });
    expect(msg.length).toBe(39);
    expect(msg.readInt32BE(1)).toBe(38);
    expect(msg.readBigInt64BE(5 + 25)).toBe(5n);
    expect(msg[38]).toBe(0);
  });
});
