import { describe, expect, it } from 'vitest';
import { planWalStart } from '../../src/archive/wal-start-plan';
import { planPartialAssembly } from '../../src/archive/wal-partial';
import { buildStartReplicationCommand } from '../../src/replication/start-replication-command';
import { ConfigError } from '../../src/errors';
import { walPartialChunkKey, walPartialKey, walSegmentKey } from '../../src/archive/repo-layout';

const SEG = 16 * 1024 * 1024;
const server = { timeline: 3, xlogPos: 0x5123456n };
const seg = (name: string) => ({ kind: 'wal-segment', walName: name, key: walSegmentKey('main', name) });
const part = (name: string) => ({ kind: 'wal-partial', walName: name, key: walPartialKey('main', name) });
const chunk = (name: string, off: number) => ({
  kind: 'wal-partial-chunk',
  walName: name,
  key: walPartialChunkKey('main', name, off),
});

describe('planWalStart', () => {
  it('starts after the newest complete segment', () => {
    const p = planWalStart({
      objects: [seg('000000010000000000000002'), seg('000000010000000000000003')],
      segmentSize: SEG,
      server,
    });
    expect(p).toMatchObject({ startLsn: 0x4000000n, timeline: 1, source: 'repository-segment' });
  });
  it('re-streams a newer partial segment from its start', () => {
    const p = planWalStart({
      objects: [seg('000000010000000000000003'), chunk('000000010000000000000004', 0)],
      segmentSize: SEG,
      server,
    });
    expect(p).toMatchObject({
      startLsn: 0x4000000n,
      timeline: 1,
      source: 'repository-partial',
      resumePartial: '000000010000000000000004',
    });
  });
  it('prefers the higher timeline, and a complete segment over a partial of the same name', () => {
    const objs = [
      part('000000010000000000000004'),
      seg('000000020000000000000004'),
      chunk('000000020000000000000004', 0),
    ];
    const p = planWalStart({ objects: objs, segmentSize: SEG, server });
    expect(p).toMatchObject({ startLsn: 0x5000000n, timeline: 2, source: 'repository-segment' });
    expect(p.staleKeys).toEqual([walPartialChunkKey('main', '000000020000000000000004', 0)]);
  });
  it('falls back to the slot, then to the server, rounded to a segment start', () => {
    expect(
      planWalStart({
        objects: [],
        segmentSize: SEG,
        slot: { restartLsn: 0x2abcdefn, restartTimeline: 2 },
        server,
      }),
    ).toMatchObject({
      startLsn: 0x2000000n,
      timeline: 2,
      source: 'slot',
    });
    expect(
      planWalStart({
        objects: [],
        segmentSize: SEG,
        slot: { restartLsn: null, restartTimeline: null },
        server,
      }),
    ).toMatchObject({
      startLsn: 0x5000000n,
      timeline: 3,
      source: 'server',
    });
  });
});

describe('planPartialAssembly', () => {
  const name = '000000010000000000000004';
  it('covers the contiguous prefix over .partial and chunks, overlaps allowed, stops at a hole', () => {
    const objs = [
      { key: walPartialKey('main', name), size: 100 },
      { key: walPartialChunkKey('main', name, 50), size: 100 },
      { key: walPartialChunkKey('main', name, 150), size: 10 },
      { key: walPartialChunkKey('main', name, 200), size: 10 },
      { key: walSegmentKey('main', name), size: SEG },
    ];
    const p = planPartialAssembly(objs, name);
    expect(p.durableBytes).toBe(160);
    expect(p.pieces.map((x) => x.offset)).toEqual([0, 50, 150]);
    expect(p.allKeys).toHaveLength(4);
  });
  it('has nothing durable without the piece at offset 0', () => {
    expect(
      planPartialAssembly([{ key: walPartialChunkKey('main', name, 8192), size: 10 }], name).durableBytes,
    ).toBe(0);
  });
});

describe('buildStartReplicationCommand', () => {
  it('builds the command with a quoted slot', () => {
    expect(buildStartReplicationCommand({ startLsn: 0x16b374d848n, timeline: 2, slot: 'pgark_1' })).toBe(
      'START_REPLICATION SLOT "pgark_1" PHYSICAL 16/B374D848 TIMELINE 2',
    );
    expect(buildStartReplicationCommand({ startLsn: 0n, timeline: 1 })).toBe(
      'START_REPLICATION PHYSICAL 0/0 TIMELINE 1',
    );
  });
  it('refuses a slot name that could break out of the quotes', () => {
    expect(() =>
      buildStartReplicationCommand({ startLsn: 0n, timeline: 1, slot: 'a" TIMELINE 9 --' }),
    ).toThrow(ConfigError);
    try {
      buildStartReplicationCommand({ startLsn: 0n, timeline: 1, slot: 'Bad' });
    } catch (e) {
      expect((e as ConfigError).code).toBe('CONFIG_INVALID_SLOT_NAME');
    }
  });
});
