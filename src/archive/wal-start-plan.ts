/**
 * Where the WAL archiver starts streaming, chosen from what the repository holds, then the slot,
 * then the server: pg_receivewal's FindStreamingStart order (pg_receivewal.c StreamLog), with
 * repository keys in place of files. Pure: no I/O.
 *
 * 1. The newest WAL object of the repository (highest segment number; on a tie the higher timeline;
 *    then a complete segment beats a partial one). After a complete segment, start at the next
 *    segment; on a partial one, re-stream that segment from its start (the bytes already durable
 *    are compared, not rewritten).
 * 2. Else the slot's restart_lsn / restart_tli (READ_REPLICATION_SLOT, PostgreSQL 15+).
 * 3. Else the server's flush position and timeline (IDENTIFY_SYSTEM).
 * Every start is rounded down to a segment start.
 *
 * A `.partial.padded` file (the synchronous writer's open segment on a directory repository) counts
 * as a partial. Its size does not tell whether it is complete, but the writer only creates a
 * segment's file after the previous segment's last byte was written and fdatasync'ed, so a padded
 * file with a newer segment object on its timeline is complete (`completedPadded`).
 */
import { lsnToSegmentNumber, parseWalFileName, segmentStartLsn, segmentStartOf, type Lsn } from '../lsn';

/** A WAL object of the repository as `parseRepositoryKey` describes it (only these kinds matter here). */
export interface PlanWalObject {
  kind: 'wal-segment' | 'wal-partial' | 'wal-partial-chunk' | 'wal-partial-padded' | string;
  walName?: string;
  key: string;
}

export interface WalStartPlanInput {
  objects: readonly PlanWalObject[];
  segmentSize: number;
  slot?: { restartLsn: Lsn | null; restartTimeline: number | null } | undefined;
  server: { timeline: number; xlogPos: Lsn };
}

export interface WalStartPlan {
  startLsn: Lsn;
  timeline: number;
  source: 'repository-segment' | 'repository-partial' | 'slot' | 'server';
  /** Segment name whose durable partial bytes must be loaded and verified (source repository-partial). */
  resumePartial?: string;
  /** Partial objects of segments that are already complete (left by a crash between the two steps): safe to delete. */
  staleKeys: string[];
  /**
   * Segments (not the resumed one, not stored whole) whose `.partial.padded` file is complete: a
   * newer segment of the same timeline has an object. To be published under their own names.
   */
  completedPadded: string[];
}

const PARTIAL_KINDS = new Set(['wal-partial', 'wal-partial-chunk', 'wal-partial-padded']);

export function planWalStart(input: WalStartPlanInput): WalStartPlan {
  const { segmentSize } = input;
  let best: { segno: bigint; timeline: number; complete: boolean; name: string } | undefined;
  const complete = new Set<string>();
  const partialKeys = new Map<string, string[]>();
  const padded: { name: string; timeline: number; segno: bigint }[] = [];
  const newestOfTimeline = new Map<number, bigint>();
  for (const o of input.objects) {
    if (!o.walName) continue;
    if (o.kind === 'wal-segment') complete.add(o.walName);
    else if (PARTIAL_KINDS.has(o.kind)) {
      const list = partialKeys.get(o.walName) ?? [];
      list.push(o.key);
      partialKeys.set(o.walName, list);
    } else continue;
    const { timeline, segno } = parseWalFileName(o.walName, segmentSize);
    if (o.kind === 'wal-partial-padded') padded.push({ name: o.walName, timeline, segno });
    if (segno > (newestOfTimeline.get(timeline) ?? -1n)) newestOfTimeline.set(timeline, segno);
    const isComplete = o.kind === 'wal-segment';
    if (
      !best ||
      segno > best.segno ||
      (segno === best.segno && timeline > best.timeline) ||
      (segno === best.segno && timeline === best.timeline && isComplete && !best.complete)
    ) {
      best = { segno, timeline, complete: isComplete, name: o.walName };
    }
  }
  const staleKeys: string[] = [];
  for (const [name, keys] of partialKeys) if (complete.has(name)) staleKeys.push(...keys);
  const completedPadded = padded
    .filter((p) => !complete.has(p.name) && p.segno < (newestOfTimeline.get(p.timeline) ?? -1n))
    .map((p) => p.name)
    .sort();

  if (best) {
    if (best.complete) {
      return {
        startLsn: segmentStartLsn(best.segno + 1n, segmentSize),
        timeline: best.timeline,
        source: 'repository-segment',
        staleKeys,
        completedPadded,
      };
    }
    return {
      startLsn: segmentStartLsn(best.segno, segmentSize),
      timeline: best.timeline,
      source: 'repository-partial',
      resumePartial: best.name,
      staleKeys,
      completedPadded,
    };
  }
  const slot = input.slot;
  if (slot && slot.restartLsn !== null && slot.restartLsn !== 0n && slot.restartTimeline) {
    return {
      startLsn: segmentStartOf(slot.restartLsn, segmentSize),
      timeline: slot.restartTimeline,
      source: 'slot',
      staleKeys,
      completedPadded,
    };
  }
  return {
    startLsn: segmentStartOf(input.server.xlogPos, segmentSize),
    timeline: input.server.timeline,
    source: 'server',
    staleKeys,
    completedPadded,
  };
}

/** The segment number of an LSN, re-exported for the archiver's bookkeeping. */
export { lsnToSegmentNumber };
