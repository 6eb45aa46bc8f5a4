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
 */
import { lsnToSegmentNumber, parseWalFileName, segmentStartLsn, segmentStartOf, type Lsn } from '../lsn';

/** A WAL object of the repository as `parseRepositoryKey` describes it (only these kinds matter here). */
export interface PlanWalObject {
  kind: 'wal-segment' | 'wal-partial' | 'wal-partial-chunk' | string;
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
}

export function planWalStart(input: WalStartPlanInput): WalStartPlan {
  const { segmentSize } = input;
  let best: { segno: bigint; timeline: number; complete: boolean; name: string } | undefined;
  const complete = new Set<string>();
  const partialKeys = new Map<string, string[]>();
  for (const o of input.objects) {
    if (!o.walName) continue;
    if (o.kind === 'wal-segment') complete.add(o.walName);
    else if (o.kind === 'wal-partial' || o.kind === 'wal-partial-chunk') {
      const list = partialKeys.get(o.walName) ?? [];
      list.push(o.key);
      partialKeys.set(o.walName, list);
    } else continue;
    const { timeline, segno } = parseWalFileName(o.walName, segmentSize);
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

  if (best) {
    if (best.complete) {
      return {
        startLsn: segmentStartLsn(best.segno + 1n, segmentSize),
        timeline: best.timeline,
        source: 'repository-segment',
        staleKeys,
      };
    }
    return {
      startLsn: segmentStartLsn(best.segno, segmentSize),
      timeline: best.timeline,
      source: 'repository-partial',
      resumePartial: best.name,
      staleKeys,
    };
  }
  const slot = input.slot;
  if (slot && slot.restartLsn !== null && slot.restartLsn !== 0n && slot.restartTimeline) {
    return {
      startLsn: segmentStartOf(slot.restartLsn, segmentSize),
      timeline: slot.restartTimeline,
      source: 'slot',
      staleKeys,
    };
  }
  return {
    startLsn: segmentStartOf(input.server.xlogPos, segmentSize),
    timeline: input.server.timeline,
    source: 'server',
    staleKeys,
  };
}

/** The segment number of an LSN, re-exported for the archiver's bookkeeping. */
export { lsnToSegmentNumber };
