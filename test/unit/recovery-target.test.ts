import { describe, expect, it } from 'vitest';
import { RestoreError } from '../../src/errors';
import { walPartialChunkKey, walPartialKey, walSegmentKey } from '../../src/archive/repo-layout';
import {
  partialTailExtent,
  partialTailFromObjects,
  planRestore,
  RecoveryTargetError,
  targetXid32,
  walRanges,
  xidPrecedes,
  type PlannerBackup,
  type PlannerPartialTail,
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

  it('the durable partial tail extends the window when it continues the archived wal', () => {
    const tail: PlannerPartialTail = {
      timeline: 1,
      startLsn: '0/9000000',
      endLsn: '0/9400000',
      endTime: '2026-01-01T01:35:00.000Z',
    };
    const base = { backups: [b1, b2], segments, walSegmentSize: SEG, partialTail: tail };
    const p = planRestore({ ...base, target: { lsn: '0/9300000' } });
    expect(p.windowEnd).toEqual({ lsn: '0/9400000', time: '2026-01-01T01:35:00.000Z' });
    expect(planRestore({ ...base, target: { time: '2026-01-01T01:34:00Z' } }).backup.backupId).toBe(
      b2.backupId,
    );
    const e = refusal(() => planRestore({ ...base, target: { lsn: '0/9400001' } }));
    expect(e.partialTail).toEqual(tail);
    refusal(() => planRestore({ ...base, target: { time: '2026-01-01T01:37:00Z' } }));
    // Without the tail (restore will not place it) the same target is refused.
    refusal(() =>
      planRestore({ backups: [b1, b2], segments, walSegmentSize: SEG, target: { lsn: '0/9300000' } }),
    );
    // A tail that does not continue the archived run (a hole before it) does not count.
    refusal(() =>
      planRestore({
        ...base,
        partialTail: { timeline: 1, startLsn: '0/B000000', endLsn: '0/B400000' },
        target: { lsn: '0/B100000' },
      }),
    );
    // A later timeline's tail counts for 'latest', not for 'current'.
    const tl2Tail = { timeline: 2, startLsn: '0/8000000', endLsn: '0/8800000' };
    expect(planRestore({ ...base, partialTail: tl2Tail, target: { lsn: '0/8F00000' } }).windowEnd.lsn).toBe(
      '0/9000000',
    );
    expect(
      planRestore({
        ...base,
        segments: segments.filter((x) => x.segno < 8n),
        partialTail: tl2Tail,
        target: { lsn: '0/8700000' },
      }).windowEnd.lsn,
    ).toBe('0/8800000');
    refusal(() =>
      planRestore({
        ...base,
        segments: segments.filter((x) => x.segno < 8n),
        partialTail: tl2Tail,
        target: { lsn: '0/8700000' },
        timeline: 'current',
      }),
    );
  });

  it('computes the partial tail from a listing as placeWalTail plans it', () => {
    const at = (min: number) => new Date(Date.UTC(2026, 0, 1, 1, min));
    const objects = [
      { key: walSegmentKey('s', '000000010000000000000008'), size: SEG, lastModified: at(30) },
      { key: walPartialKey('s', '000000010000000000000009'), size: 0x400000, lastModified: at(31) },
      {
        key: walPartialChunkKey('s', '000000010000000000000009', 0x400000),
        size: 0x1000,
        lastModified: at(32),
      },
      // A stale partial older than a complete segment is not part of the tail.
      { key: walPartialKey('s', '000000010000000000000007'), size: 0x100, lastModified: at(1) },
    ];
    expect(partialTailFromObjects(objects, SEG)).toEqual({
      timeline: 1,
      startLsn: '0/9000000',
      endLsn: '0/9401000',
      endTime: '2026-01-01T01:32:00.000Z',
    });
    // Recovery that does not follow the newest timeline places nothing.
    expect(partialTailFromObjects(objects, SEG, 2)).toBeUndefined();
    expect(partialTailFromObjects(objects.slice(0, 1), SEG)).toBeUndefined();
    // A full first segment continues into the next; an empty one ends the tail.
    expect(
      partialTailExtent(
        1,
        [
          { walName: '000000010000000000000009', durableBytes: SEG },
          { walName: '00000001000000000000000A', durableBytes: 0x20 },
        ],
        SEG,
      )?.endLsn,
    ).toBe('0/A000020');
    expect(
      partialTailExtent(1, [{ walName: '000000010000000000000009', durableBytes: 0 }], SEG),
    ).toBeUndefined();
  });

  it('a restore point or xid target needs wal after the backup: the newest backup that has some, else refused', () => {
    // No archive at all: a stream backup reaches only its own end, where no stop record can be.
    for (const target of [{ name: 'before_upgrade' }, { xid: 900 }]) {
      const e = refusal(() => planRestore({ backups: [b1, b2], segments: [], walSegmentSize: SEG, target }));
      expect(e.backups).toHaveLength(2);
      expect(e.walRanges).toEqual([]);
    }
    // The archive stops before b2's end: b1 (whose wal continues) is chosen.
    const upTo5 = segments.filter((x) => x.segno <= 5n);
    expect(
      planRestore({ backups: [b1, b2], segments: upTo5, walSegmentSize: SEG, target: { name: 'x' } }).backup
        .backupId,
    ).toBe(b1.backupId);
    // Asked for b2 explicitly: refused.
    refusal(() =>
      planRestore({
        backups: [b1, b2],
        segments: upTo5,
        walSegmentSize: SEG,
        backupId: b2.backupId,
        target: { name: 'x' },
      }),
    );
    // A 'fetch' backup's pg_wal files may hold wal past its end: not refused.
    const fetchB: PlannerBackup = { ...b1, walMethod: 'fetch' };
    expect(
      planRestore({ backups: [fetchB], segments: [], walSegmentSize: SEG, target: { name: 'x' } }).backup
        .backupId,
    ).toBe(b1.backupId);
    // The partial tail counts as wal after the backup.
    expect(
      planRestore({
        backups: [b1],
        segments: [],
        walSegmentSize: SEG,
        partialTail: { timeline: 1, startLsn: '0/2000000', endLsn: '0/2100000' },
        target: { name: 'x' },
      }).windowEnd.lsn,
    ).toBe('0/2100000');
  });

  it("an xid that precedes a backup's oldest active xid is before that backup's end", () => {
    const x1 = { ...b1, oldestActiveXid: 700 };
    const x2 = { ...b2, oldestActiveXid: 1000 };
    const base = { backups: [x1, x2], segments, walSegmentSize: SEG };
    expect(planRestore({ ...base, target: { xid: 1000 } }).backup.backupId).toBe(b2.backupId);
    expect(planRestore({ ...base, target: { xid: '5000' } }).backup.backupId).toBe(b2.backupId);
    expect(planRestore({ ...base, target: { xid: 999 } }).backup.backupId).toBe(b1.backupId);
    // An epoch-qualified xid (xid8) counts by its low 32 bits, as recovery_target_xid does.
    expect(planRestore({ ...base, target: { xid: (1n << 32n) + 800n } }).backup.backupId).toBe(b1.backupId);
    const e = refusal(() => planRestore({ ...base, target: { xid: 600 } }));
    expect(e.backups.map((b) => b.backupId)).toEqual([b1.backupId, b2.backupId]);
    refusal(() => planRestore({ ...base, backupId: b2.backupId, target: { xid: 999 } }));
    // Unknown (0): not checked.
    expect(
      planRestore({ ...base, backups: [{ ...b2, oldestActiveXid: 0 }], target: { xid: 5 } }).backup.backupId,
    ).toBe(b2.backupId);
  });

  it('compares xids modulo 2^32 as TransactionIdPrecedes does', () => {
    expect(xidPrecedes(100, 200)).toBe(true);
    expect(xidPrecedes(200, 100)).toBe(false);
    expect(xidPrecedes(100, 100)).toBe(false);
    expect(xidPrecedes(0xfffffff0, 10)).toBe(true); // wrapped around
    expect(xidPrecedes(10, 0xfffffff0)).toBe(false);
    expect(xidPrecedes(2, 100)).toBe(true); // special xids: plain order
    expect(targetXid32('4294967396')).toBe(100);
  });
});
