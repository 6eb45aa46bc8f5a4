/**
 * One listing of a stanza's WAL for the restore planner: the whole archived segments (the window's
 * ranges) and the durable partial tail a restore would place into pg_wal (src/archive/wal-tail.ts).
 */
import { parseRepositoryKey } from '../archive/repo-layout';
import type { Stanza } from '../archive/repository';
import { readArchivedPartial } from '../archive/wal-partial';
import { parseWalFileName } from '../lsn';
import type { Storage } from '../storage/storage';
import type { RecoveryTimeline } from './recovery-config';
import {
  partialTailExtent,
  planPartialTailSegments,
  type ListedWalObject,
  type PlannerPartialTail,
  type PlannerSegment,
} from './recovery-target';

export interface RestoreWindowListing {
  segments: PlannerSegment[];
  /** Present when `withPartialTail` and the archive holds a durable partial tail. */
  partialTail?: PlannerPartialTail;
}

/**
 * Lists the stanza's WAL once. `withPartialTail`: the restore will place the tail (archive recovery,
 * not a standby, walTail not off, not an `immediate` target: the conditions of restoreBackup); its
 * durable bytes are then read with readArchivedPartial, the very function placeWalTail uses (a
 * listing cannot tell the durable extent of a pre-padded partial file), usually one segment.
 */
export async function listRestoreWindow(
  storage: Storage,
  stanza: Stanza,
  options: { withPartialTail: boolean; recoveryTimeline?: RecoveryTimeline; signal?: AbortSignal },
): Promise<RestoreWindowListing> {
  const segSize = stanza.info.walSegmentSize;
  const segments: PlannerSegment[] = [];
  const listed: ListedWalObject[] = [];
  for await (const o of stanza.listWal(options.signal ? { signal: options.signal } : {})) {
    const p = o.parsed;
    if (p.kind === 'wal-segment') {
      const { timeline, segno } = parseWalFileName(p.walName, segSize);
      segments.push(o.lastModified ? { timeline, segno, lastModified: o.lastModified } : { timeline, segno });
    }
    // planWalTail needs every segment and history object too (the newest timeline, the newest complete segment).
    if (options.withPartialTail)
      listed.push({ key: o.key, size: o.size, ...(o.lastModified ? { lastModified: o.lastModified } : {}) });
  }
  if (!options.withPartialTail) return { segments };
  const plan = planPartialTailSegments(listed, segSize, options.recoveryTimeline);
  const durable: { walName: string; durableBytes: number; lastModified?: Date }[] = [];
  const buf = plan.segments.length ? Buffer.allocUnsafe(segSize) : undefined;
  for (const [index, walName] of plan.segments.entries()) {
    const read = await readArchivedPartial(storage, stanza.name, walName, segSize, buf);
    // As placeWalTail counts it: a padded file followed by a newer segment is whole, even when its
    // last bytes are zeros (the rest of a segment after a WAL switch is zeros).
    const whole = read.paddedKey !== undefined && index < plan.segments.length - 1;
    const bytes = whole ? buf! : read.bytes;
    let newest: number | undefined;
    for (const o of listed) {
      const p = parseRepositoryKey(o.key);
      const t = o.lastModified?.getTime();
      if (p && 'walName' in p && p.walName === walName && t !== undefined) newest = Math.max(newest ?? t, t);
    }
    durable.push({
      walName,
      durableBytes: bytes.length,
      ...(newest !== undefined ? { lastModified: new Date(newest) } : {}),
    });
    if (bytes.length < segSize) break;
  }
  const partialTail = partialTailExtent(plan.timeline, durable, segSize);
  return partialTail ? { segments, partialTail } : { segments };
}
