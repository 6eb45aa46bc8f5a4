/**
 * The `<segment>.partial.padded` file of the synchronous writer on a directory repository: its key,
 * how the start plan and the restore tail count it, and its written extent.
 */
import { describe, expect, it } from 'vitest';
import {
  parseRepositoryKey,
  walPartialChunkKey,
  walPartialKey,
  walPartialPaddedKey,
  walSegmentKey,
} from '../../src/archive/repo-layout';
import { planPartialAssembly, writtenExtent } from '../../src/archive/wal-partial';
import { planWalStart } from '../../src/archive/wal-start-plan';
import { planWalTail } from '../../src/archive/wal-tail';

const SEG = 16 * 1024 * 1024;
const N4 = '000000010000000000000004';
const N5 = '000000010000000000000005';
const server = { timeline: 1, xlogPos: 0x1000000n };
const obj = (kind: string, walName: string, key: string) => ({ kind, walName, key });

describe('walPartialPaddedKey', () => {
  it('builds and parses the padded key, which is never a complete segment', () => {
    const key = walPartialPaddedKey('main', N4);
    expect(key).toBe(`stanzas/main/wal/00000001/${N4}.partial.padded`);
    expect(parseRepositoryKey(key)).toEqual({
      kind: 'wal-partial-padded',
      stanza: 'main',
      timeline: 1,
      walName: N4,
    });
    expect(parseRepositoryKey(`stanzas/main/wal/00000001/${N4}.partial.padde`)).toBeUndefined();
    expect(parseRepositoryKey(`stanzas/main/wal/00000002/${N4}.partial.padded`)).toBeUndefined();
  });
});

describe('planWalStart with padded files', () => {
  it('re-streams a padded segment from its start', () => {
    const p = planWalStart({
      objects: [
        obj('wal-segment', N4, walSegmentKey('main', N4)),
        obj('wal-partial-padded', N5, walPartialPaddedKey('main', N5)),
      ],
      segmentSize: SEG,
      server,
    });
    expect(p).toMatchObject({
      startLsn: 0x5000000n,
      source: 'repository-partial',
      resumePartial: N5,
      completedPadded: [],
    });
  });
  it('names a padded file followed by a newer segment as complete, never the resumed one', () => {
    const p = planWalStart({
      objects: [
        obj('wal-partial-padded', N4, walPartialPaddedKey('main', N4)),
        obj('wal-partial-padded', N5, walPartialPaddedKey('main', N5)),
      ],
      segmentSize: SEG,
      server,
    });
    expect(p).toMatchObject({ resumePartial: N5, completedPadded: [N4] });
  });
  it("does not count a newer segment of another timeline, and deletes a stored segment's padded file", () => {
    const t2 = '000000020000000000000005';
    const p = planWalStart({
      objects: [
        obj('wal-partial-padded', N4, walPartialPaddedKey('main', N4)),
        obj('wal-segment', N5, walSegmentKey('main', N5)),
        obj('wal-partial-padded', N5, walPartialPaddedKey('main', N5)),
        obj('wal-partial-chunk', t2, walPartialChunkKey('main', t2, 0)),
      ],
      segmentSize: SEG,
      server,
    });
    // N4 is followed by N5 on timeline 1: complete; N5's padded file is stale (N5 is stored whole).
    expect(p.completedPadded).toEqual([N4]);
    expect(p.staleKeys).toEqual([walPartialPaddedKey('main', N5)]);
    const q = planWalStart({
      objects: [
        obj('wal-partial-padded', N4, walPartialPaddedKey('main', N4)),
        obj('wal-partial-chunk', t2, walPartialChunkKey('main', t2, 0)),
      ],
      segmentSize: SEG,
      server,
    });
    expect(q.completedPadded).toEqual([]);
  });
});

describe('planPartialAssembly and writtenExtent', () => {
  it('reports the padded file apart from the exact pieces', () => {
    const p = planPartialAssembly(
      [
        { key: walPartialKey('main', N4), size: 100 },
        { key: walPartialPaddedKey('main', N4), size: SEG },
      ],
      N4,
    );
    expect(p.durableBytes).toBe(100);
    expect(p.paddedKey).toBe(walPartialPaddedKey('main', N4));
    expect(p.allKeys).toHaveLength(2);
    expect(p.pieces.map((x) => x.key)).toEqual([walPartialKey('main', N4)]);
  });
  it('is the offset after the last non-zero byte', () => {
    const b = Buffer.alloc(8192 * 4);
    expect(writtenExtent(b)).toBe(0);
    b[0] = 1;
    expect(writtenExtent(b)).toBe(1);
    b[8192 + 13] = 0xff;
    expect(writtenExtent(b)).toBe(8192 + 14);
    b[b.length - 1] = 2;
    expect(writtenExtent(b)).toBe(b.length);
    expect(writtenExtent(Buffer.from([0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]))).toBe(3);
  });
});

describe('planWalTail with padded files', () => {
  it('places padded segments of the newest timeline past its last complete segment', () => {
    const p = planWalTail({
      segmentSize: SEG,
      backupTimeline: 1,
      objects: [
        { kind: 'wal-segment', timeline: 1, walName: '000000010000000000000003' },
        { kind: 'wal-partial-padded', timeline: 1, walName: N4 },
        { kind: 'wal-partial', timeline: 1, walName: N5 },
        { kind: 'wal-partial-padded', timeline: 1, walName: N5 },
      ],
    });
    expect(p).toEqual({ timeline: 1, segments: [N4, N5] });
  });
});
