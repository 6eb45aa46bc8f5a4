import { describe, expect, it } from 'vitest';
import { planWalTail } from '../../src/archive/wal-tail';

const SEG = 16 * 1024 * 1024;
const seg = (tli: number, n: number) =>
  `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

describe('planWalTail', () => {
  it("takes the newest timeline's partial segments past its last complete segment, in order", () => {
    const p = planWalTail({
      segmentSize: SEG,
      backupTimeline: 1,
      objects: [
        { kind: 'wal-segment', timeline: 2, walName: seg(2, 5) },
        { kind: 'wal-partial-chunk', timeline: 2, walName: seg(2, 6) },
        { kind: 'wal-partial-chunk', timeline: 2, walName: seg(2, 7) },
        { kind: 'wal-partial', timeline: 2, walName: seg(2, 7) },
        { kind: 'wal-history', timeline: 2 },
      ],
    });
    expect(p).toEqual({ timeline: 2, segments: [seg(2, 6), seg(2, 7)] });
  });

  it("never uses an old timeline's partial, even one further ahead than the new timeline", () => {
    const objects = [
      { kind: 'wal-segment', timeline: 1, walName: seg(1, 4) },
      { kind: 'wal-partial', timeline: 1, walName: seg(1, 5) },
      { kind: 'wal-partial-chunk', timeline: 1, walName: seg(1, 9) },
      { kind: 'wal-history', timeline: 2 },
      { kind: 'wal-partial-chunk', timeline: 2, walName: seg(2, 5) },
    ];
    expect(planWalTail({ segmentSize: SEG, backupTimeline: 1, objects })).toEqual({
      timeline: 2,
      segments: [seg(2, 5)],
    });
    // Recovery that stays on timeline 1 gets nothing (its tip is a dead branch).
    expect(
      planWalTail({ segmentSize: SEG, backupTimeline: 1, objects, recoveryTimeline: 1 }).segments,
    ).toEqual([]);
    expect(
      planWalTail({ segmentSize: SEG, backupTimeline: 1, objects, recoveryTimeline: 'current' }).skipped,
    ).toBe('other-timeline');
    // A new timeline with only its history file: nothing, and not timeline 1's partial.
    expect(planWalTail({ segmentSize: SEG, backupTimeline: 1, objects: objects.slice(0, 4) })).toEqual({
      timeline: 2,
      segments: [],
      skipped: 'no-partial',
    });
  });

  it('ignores leftovers a complete segment supersedes and stops at a hole', () => {
    const p = planWalTail({
      segmentSize: SEG,
      backupTimeline: 1,
      objects: [
        { kind: 'wal-partial-chunk', timeline: 1, walName: seg(1, 2) },
        { kind: 'wal-segment', timeline: 1, walName: seg(1, 3) },
        { kind: 'wal-partial-chunk', timeline: 1, walName: seg(1, 3) },
        { kind: 'wal-partial', timeline: 1, walName: seg(1, 4) },
        { kind: 'wal-partial', timeline: 1, walName: seg(1, 6) },
      ],
    });
    expect(p.segments).toEqual([seg(1, 4)]);
  });
});
