import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import {
  classifyWalFileName,
  dateFromPgTimestamp,
  endLsnToSegmentNumber,
  formatLsn,
  historyFileName,
  parseLsn,
  parseTimelineHistory,
  parseWalFileName,
  parseWalSegmentSizeSetting,
  pgTimestampFromDate,
  segmentStartOf,
  timelineOfLsn,
  walFileName,
  walFileNameForLsn,
} from '../../src/lsn';

const MB16 = 16 * 1024 * 1024;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).code;
  }
  return undefined;
}

describe('lsn', () => {
  it('parses and formats like PostgreSQL 14-18', () => {
    expect(parseLsn('16/B374D848')).toBe(0x16b374d848n);
    expect(formatLsn(0x16b374d848n)).toBe('16/B374D848');
    expect(formatLsn(0n)).toBe('0/0');
    expect(formatLsn(0xffffffffffffffffn)).toBe('FFFFFFFF/FFFFFFFF');
    expect(parseLsn('0/174b2c8')).toBe(0x174b2c8n);
  });

  it("accepts PG19's zero-padded form", () => {
    expect(parseLsn('0/0174B2C8')).toBe(0x174b2c8n);
  });

  it('rejects malformed text with CONFIG_INVALID_LSN', () => {
    for (const bad of ['', '0', '0/', '/1', 'G/1', '123456789/0', '0/1/2', '0x1/2']) {
      expect(codeOf(() => parseLsn(bad))).toBe('CONFIG_INVALID_LSN');
    }
    expect(codeOf(() => formatLsn(-1n))).toBe('CONFIG_INVALID_LSN');
  });

  it('names WAL segments as XLogFileName does (16 MiB and other sizes)', () => {
    // IDENTIFY_SYSTEM xlogpos 0/174B2C8 on timeline 1 lives in segment 000000010000000000000001.
    expect(walFileNameForLsn(1, 0x174b2c8n, MB16)).toBe('000000010000000000000001');
    expect(walFileNameForLsn(2, parseLsn('16/B374D848'), MB16)).toBe('0000000200000016000000B3');
    // 1 GiB segments: 4 per xlogid.
    expect(walFileNameForLsn(1, parseLsn('5/C0000000'), 1024 ** 3)).toBe('000000010000000500000003');
    // 1 MiB segments: 4096 per xlogid.
    expect(walFileName(1, 4097n, 1024 * 1024)).toBe('000000010000000100000001');
    expect(parseWalFileName('0000000200000016000000B3', MB16)).toEqual({
      timeline: 2,
      segno: 0x16n * 256n + 0xb3n,
    });
    expect(codeOf(() => parseWalFileName('000000010000000000000100', MB16))).toBe('CONFIG_INVALID_WAL_NAME');
    expect(codeOf(() => parseWalFileName('00000001000000000000000g', MB16))).toBe('CONFIG_INVALID_WAL_NAME');
  });

  it('rounds and uses the previous segment for end pointers', () => {
    expect(segmentStartOf(parseLsn('0/2000028'), MB16)).toBe(parseLsn('0/2000000'));
    expect(endLsnToSegmentNumber(parseLsn('0/3000000'), MB16)).toBe(2n);
  });

  it('parses SHOW wal_segment_size', () => {
    expect(parseWalSegmentSizeSetting('16MB')).toBe(MB16);
    expect(parseWalSegmentSizeSetting('1GB')).toBe(1024 ** 3);
    expect(codeOf(() => parseWalSegmentSizeSetting('3MB'))).toBe('CONFIG_INVALID_SEGMENT_SIZE');
  });

  it('classifies archive file names', () => {
    expect(classifyWalFileName('000000010000000000000003')).toBe('segment');
    expect(classifyWalFileName('000000010000000000000003.partial')).toBe('partial');
    expect(classifyWalFileName(historyFileName(2))).toBe('history');
    expect(classifyWalFileName('000000010000000000000002.00000028.backup')).toBe('backup-history');
    expect(codeOf(() => classifyWalFileName('../etc/passwd'))).toBe('CONFIG_INVALID_WAL_NAME');
  });

  it('parses timeline history files and finds the timeline of an LSN', () => {
    const h = parseTimelineHistory(
      '1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-11-24\n',
    );
    expect(h).toEqual([
      { timeline: 1, switchLsn: parseLsn('0/3000158'), reason: 'no recovery target specified' },
      { timeline: 2, switchLsn: parseLsn('0/5000000'), reason: 'before 2026-11-24' },
    ]);
    expect(timelineOfLsn(parseLsn('0/3000157'), h, 3)).toBe(1);
    expect(timelineOfLsn(parseLsn('0/3000158'), h, 3)).toBe(2);
    expect(timelineOfLsn(parseLsn('0/6000000'), h, 3)).toBe(3);
    expect(codeOf(() => parseTimelineHistory('2\t0/1\tx\n1\t0/2\ty\n'))).toBe('CONFIG_INVALID_OPTION');
  });

  it('converts timestamps with the 2000-01-01 epoch', () => {
    expect(pgTimestampFromDate(new Date('2000-01-01T00:00:00Z'))).toBe(0n);
    expect(dateFromPgTimestamp(1_000_000n).toISOString()).toBe('2000-01-01T00:00:01.000Z');
  });
});
