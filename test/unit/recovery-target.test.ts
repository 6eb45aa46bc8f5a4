import { describe, expect, it } from 'vitest';
import { RestoreError } from '../../src/errors';
import {
  planRestore,
  RecoveryTargetError,
  walRanges,
  type PlannerBackup,
  type PlannerSegment,
} from '../../src/restore/recovery-target';

const SEG = 16 * 1024 * 1024;
const b1: PlannerBackup = {
  backupId: '20260101T000000Z-F',
  startLsn: '0/2000028',
  endLsn: '0/2000138',
  startTimeline: 1,
  endTimeline: 1,
  finishedAt: '2026-01-01T00:00:05Z',
  walMethod: 'stream',
};
const b2: PlannerBackup = {
  backupId: '20260101T010000Z-F',
  startLsn: '0/6000028',
  endLsn: '0/6000100',
  startTimeline: 1,
  endTimeline: 1,
  finishedAt: '2026-01-01T01:00:05Z',
  walMethod: 'stream',
};
const seg = (tl: number, n: number, min: number): PlannerSegment => ({
  timeline: tl,
  segno: BigInt(n),
  lastModified: new Date(Date.UTC(2026, 0, 1, 0, min)),
});
// Timeline 1: segments 2..8 (0/2000000..0/9000000), the last one uploaded at 01:30; a gap, then 10.
const segments = [2, 3, 4, 5, 6, 7, 8].map((n) => seg(1, n, n === 8 ? 90 : n * 10)).concat([seg(1, 10, 100)]);

function refusal(f: () => unknown): RecoveryTargetError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RecoveryTargetError);
    expect((e as RestoreError).code).toBe('RESTORE_TARGET_OUT_OF_RANGE');
    return e as RecoveryTargetError;
  }
  throw new Error('expected a refusal');
}

describe('restore planner', () => {
  it('groups whole segments into contiguous ranges', () => {
    const r = walRanges(segments, SEG);
    expect(r.map((x) => [x.startSegment, x.endSegment, x.startLsn, x.endLsn])).toEqual([
      ['000000010000000000000002', '000000010000000000000008', '0/2000000', '0/9000000'],
      ['00000001000000000000000A', '00000001000000000000000A', '0/A000000', '0/B000000'],
    ]);
    expect(r[0]!.endTime).toBe('2026-01-01T01:30:00.000Z');
  });

  it('picks the newest backup that ends before a time or lsn target', () => {
    expect(
      planRestore({
        backups: [b2, b1],
        segments,
        walSegmentSize: SEG,
        target: { time: '2026-01-01T00:30:00Z' },
      }).backup.backupId,
    ).toBe(b1.backupId);
    expect(
      planRestore({
        backups: [b1, b2],
        segments,
        walSegmentSize: SEG,
        target: { time: '2026-01-01T01:10:00Z' },
      }).backup.backupId,
    ).toBe(b2.backupId);
    expect(
      planRestore({ backups: [b1, b2], segments, walSegmentSize: SEG, target: { lsn: '0/5000000' } }).backup
        .backupId,
    ).toBe(b1.backupId);
    const p = planRestore({ backups: [b1, b2], segments, walSegmentSize: SEG, target: { lsn: '0/8FFFFFF' } });
    expect(p.backup.backupId).toBe(b2.backupId);
    expect(p.windowEnd.lsn).toBe('0/9000000');
    // xid, name, immediate and no target: the newest (PostgreSQL checks xid and name while recovering).
    for (const target of [{ xid: 900 }, { name: 'x' }, { immediate: true as const }, undefined]) {
      expect(
        planRestore({ backups: [b1, b2], segments, walSegmentSize: SEG, ...(target ? { target } : {}) })
          .backup.backupId,
      ).toBe(b2.backupId);
    }
  });

  it('refuses a target before every backup, before the chosen one, or after the archive, listing what exists', () => {
    const e = refusal(() =>
      planRestore({
        backups: [b1, b2],
        segments,
        walSegmentSize: SEG,
        target: { time: '2025-12-31T23:00:00Z' },
      }),
    );
    expect(e.backups.map((b) => b.backupId)).toEqual([b1.backupId, b2.backupId]);
    expect(e.walRanges).toHaveLength(2);
    refusal(() =>
      planRestore({
        backups: [b1, b2],
        segments,
        walSegmentSize: SEG,
        backupId: b2.backupId,
        target: { lsn: '0/5000000' },
      }),
    );
    refusal(() =>
      planRestore({ backups: [b1, b2], segments, walSegmentSize: SEG, target: { lsn: '0/9000001' } }),
    );
    refusal(() =>
      planRestore({
        backups: [b1, b2],
        segments,
        walSegmentSize: SEG,
        target: { time: '2026-01-01T01:31:00Z' },
      }),
    );
    // Without any archive, a stream backup reaches only its own end.
    refusal(() =>
      planRestore({ backups: [b1], segments: [], walSegmentSize: SEG, target: { lsn: '0/2000200' } }),
    );
    expect(
      planRestore({ backups: [b1], segments: [], walSegmentSize: SEG, target: { lsn: '0/2000138' } }).backup
        .backupId,
    ).toBe(b1.backupId);
  });

  it('later timelines count for latest, not for current', () => {
    const tl2 = [seg(2, 9, 95), seg(2, 10, 99)];
    expect(
      planRestore({
        backups: [b1, b2],
        segments: [...segments, ...tl2],
        walSegmentSize: SEG,
        target: { lsn: '0/A800000' },
      }).windowEnd.lsn,
    ).toBe('0/B000000');
    refusal(() =>
      planRestore({
        backups: [b1, b2],
        segments: [...segments, ...tl2],
        walSegmentSize: SEG,
        target: { lsn: '0/A800000' },
        timeline: 'current',
      }),
    );
  });

  it('an unknown backup or an empty stanza is RESTORE_BACKUP_NOT_FOUND', () => {
    for (const f of [
      () => planRestore({ backups: [], segments, walSegmentSize: SEG }),
      () => planRestore({ backups: [b1], segments, walSegmentSize: SEG, backupId: '20990101T000000Z-F' }),
    ]) {
      try {
        f();
        expect.unreachable();
      } catch (e) {
        expect((e as RestoreError).code).toBe('RESTORE_BACKUP_NOT_FOUND');
      }
    }
  });
});
