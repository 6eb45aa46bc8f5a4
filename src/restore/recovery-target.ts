/**
 * The restore planner (pure: the caller lists the repository): which backup to restore for a
 * recovery target, and whether the target lies inside the window that backup plus the archived WAL
 * can reach. Out-of-window targets are refused before anything is written, with a typed error that
 * lists the backups and the WAL ranges the repository holds.
 *
 * What is checked, and how:
 * - A backup is consistent only at its end LSN (protocol notes §7.2.3): a target before it cannot be
 *   reached from that backup (PostgreSQL would stop with "requested recovery stop point is before
 *   consistent recovery point", xlogrecovery.c). Times compare with the catalog's `finishedAt`, which
 *   is a little later than the end-of-backup record, so the check errs on the refusing side.
 * - The archive's end is the end of the contiguous run of WHOLE archived segments that continues the
 *   backup's WAL on its timeline (restore_command never serves a partial segment for a segment
 *   name), or, when later timelines are allowed, the end of their WAL. Its time is the store's
 *   modification time of that last segment: every commit in a segment happened before the segment
 *   was uploaded, so a target after it cannot be reached (PostgreSQL 13+ stops with "recovery
 *   ended before configured recovery target was reached").
 * - xid and restore-point targets carry no position that can be checked without reading WAL
 *   records: as pgBackRest does, the newest backup (or the one asked for) is used and PostgreSQL
 *   checks the target during recovery.
 */
import { RestoreError } from '../errors';
import { formatLsn, parseLsn, segmentStartLsn, walFileName, lsnToSegmentNumber, type Lsn } from '../lsn';
import {
  parseTargetTime,
  recoveryTargetKind,
  type RecoveryTarget,
  type RecoveryTimeline,
} from './recovery-config';

/** The parts of a catalog entry the planner reads. */
export interface PlannerBackup {
  backupId: string;
  startLsn: string;
  endLsn: string;
  startTimeline: number;
  endTimeline: number;
  finishedAt: string;
  walMethod: 'stream' | 'fetch' | 'none';
}

/** A whole archived WAL segment. */
export interface PlannerSegment {
  timeline: number;
  segno: bigint;
  lastModified?: Date;
}

/** A contiguous run of whole archived segments on one timeline. */
export interface WalRange {
  timeline: number;
  startSegment: string;
  endSegment: string;
  /** Start of the first segment. */
  startLsn: string;
  /** End of the last segment (exclusive). */
  endLsn: string;
  /** Modification time of the newest segment of the run (ISO 8601), when the store reports it. */
  endTime?: string;
}

/** A backup as the error lists it. */
export interface BackupSummary {
  backupId: string;
  timeline: number;
  startLsn: string;
  endLsn: string;
  finishedAt: string;
}

/** RESTORE_TARGET_OUT_OF_RANGE, with what the repository holds (so the caller can pick a valid target). */
export class RecoveryTargetError extends RestoreError {
  readonly backups: BackupSummary[];
  readonly walRanges: WalRange[];
  constructor(message: string, detail: { backups: BackupSummary[]; walRanges: WalRange[]; hint?: string }) {
    super('RESTORE_TARGET_OUT_OF_RANGE', message, { hint: detail.hint });
    this.backups = detail.backups;
    this.walRanges = detail.walRanges;
  }
}

export interface RestorePlanInput {
  /** Complete backups, any order. */
  backups: PlannerBackup[];
  /** Whole archived segments, any order. */
  segments: PlannerSegment[];
  walSegmentSize: number;
  /** A backup id or 'latest'; undefined: the newest backup that can reach the target. */
  backupId?: string;
  target?: RecoveryTarget;
  timeline?: RecoveryTimeline;
}

export interface RestorePlan {
  backup: PlannerBackup;
  /** Where recovery from this backup can end at the latest: LSN and (when known) time. */
  windowEnd: { lsn: string; time?: string };
  walRanges: WalRange[];
}

/** Groups whole segments into contiguous runs per timeline (sorted by timeline, then position). */
export function walRanges(segments: PlannerSegment[], walSegmentSize: number): WalRange[] {
  const sorted = [...segments].sort(
    (a, b) => a.timeline - b.timeline || (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0),
  );
  const out: WalRange[] = [];
  let cur: { timeline: number; first: bigint; last: bigint; time?: number } | undefined;
  const flush = (): void => {
    if (!cur) return;
    out.push({
      timeline: cur.timeline,
      startSegment: walFileName(cur.timeline, cur.first, walSegmentSize),
      endSegment: walFileName(cur.timeline, cur.last, walSegmentSize),
      startLsn: formatLsn(segmentStartLsn(cur.first, walSegmentSize)),
      endLsn: formatLsn(segmentStartLsn(cur.last + 1n, walSegmentSize)),
      ...(cur.time !== undefined ? { endTime: new Date(cur.time).toISOString() } : {}),
    });
  };
  for (const s of sorted) {
    const t = s.lastModified?.getTime();
    if (cur && cur.timeline === s.timeline && s.segno === cur.last + 1n) {
      cur.last = s.segno;
      if (t !== undefined) cur.time = Math.max(cur.time ?? t, t);
    } else if (cur && cur.timeline === s.timeline && s.segno === cur.last) {
      continue; // the same segment twice (e.g. two compressions): one position
    } else {
      flush();
      cur = { timeline: s.timeline, first: s.segno, last: s.segno, ...(t !== undefined ? { time: t } : {}) };
    }
  }
  flush();
  return out;
}

/**
 * How far recovery from `backup` can go: the backup's own end, extended by the archived run on its
 * timeline that continues its WAL, and (timeline 'latest' or a later number) by WAL of later timelines.
 */
export function recoverableEnd(
  backup: PlannerBackup,
  ranges: WalRange[],
  walSegmentSize: number,
  timeline: RecoveryTimeline = 'latest',
): { lsn: Lsn; time?: string } {
  const end = parseLsn(backup.endLsn);
  const endSeg = lsnToSegmentNumber(end, walSegmentSize);
  // With walMethod 'none' the backup's own WAL must come from the archive too.
  const needFrom =
    backup.walMethod === 'none' ? lsnToSegmentNumber(parseLsn(backup.startLsn), walSegmentSize) : endSeg + 1n;
  let lsn = backup.walMethod === 'none' ? -1n : end;
  let time: string | undefined = backup.walMethod === 'none' ? undefined : backup.finishedAt;
  for (const r of ranges) {
    if (r.timeline !== backup.endTimeline) continue;
    const first = lsnToSegmentNumber(parseLsn(r.startLsn), walSegmentSize);
    const last = lsnToSegmentNumber(parseLsn(r.endLsn), walSegmentSize) - 1n;
    if (first <= needFrom && last >= needFrom - 1n && (backup.walMethod !== 'none' || last >= endSeg)) {
      const rEnd = parseLsn(r.endLsn);
      if (rEnd > lsn) {
        lsn = rEnd;
        if (r.endTime) time = r.endTime;
      }
    }
  }
  if (lsn < 0n) return { lsn: -1n };
  const maxTl = timeline === 'current' ? backup.endTimeline : timeline === 'latest' ? Infinity : timeline;
  for (const r of ranges) {
    if (r.timeline <= backup.endTimeline || r.timeline > maxTl) continue;
    // A later timeline branches off this one (its history file says where); without reading it, its
    // WAL counts as reachable: PostgreSQL refuses a branch point before the backup's end itself.
    const rEnd = parseLsn(r.endLsn);
    if (rEnd > lsn) {
      lsn = rEnd;
      if (r.endTime) time = r.endTime;
    }
  }
  return time === undefined ? { lsn } : { lsn, time };
}

function summary(b: PlannerBackup): BackupSummary {
  return {
    backupId: b.backupId,
    timeline: b.endTimeline,
    startLsn: b.startLsn,
    endLsn: b.endLsn,
    finishedAt: b.finishedAt,
  };
}

/** Slack for stores that report modification times in whole seconds (S3). */
const TIME_SLACK_MS = 1000;

/**
 * Chooses the backup and checks the target. Without `backupId`, a time or LSN target picks the
 * newest backup that ends before it; other targets (and none) pick the newest backup.
 *
 * @throws RecoveryTargetError (RESTORE_TARGET_OUT_OF_RANGE) when no backup can reach the target, or
 *   the target lies before the chosen backup's end or after the archive's end;
 *   RestoreError RESTORE_BACKUP_NOT_FOUND when there is no backup, or not the one asked for.
 */
export function planRestore(input: RestorePlanInput): RestorePlan {
  const backups = [...input.backups].sort((a, b) =>
    a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0,
  );
  const ranges = walRanges(input.segments, input.walSegmentSize);
  const detail = { backups: backups.map(summary), walRanges: ranges };
  if (backups.length === 0)
    throw new RestoreError('RESTORE_BACKUP_NOT_FOUND', 'the stanza has no complete backup');
  const tl = input.timeline ?? 'latest';
  const target = input.target;
  const kind = target ? recoveryTargetKind(target) : undefined;
  const eligibleTl = (b: PlannerBackup): boolean => typeof tl !== 'number' || b.endTimeline <= tl;

  const describeTarget = (): string => {
    if (!target) return 'the end of the archive';
    if ('time' in target) return `time ${parseTargetTime(target.time).toISOString()}`;
    if ('lsn' in target) return `lsn ${typeof target.lsn === 'bigint' ? formatLsn(target.lsn) : target.lsn}`;
    return kind ?? 'target';
  };
  const reaches = (b: PlannerBackup): 'before' | 'after' | 'ok' => {
    if (!target) return 'ok';
    const end = recoverableEnd(b, ranges, input.walSegmentSize, tl);
    if ('time' in target) {
      const t = parseTargetTime(target.time).getTime();
      if (t < Date.parse(b.finishedAt)) return 'before';
      if (end.time !== undefined && t > Date.parse(end.time) + TIME_SLACK_MS) return 'after';
      return 'ok';
    }
    if ('lsn' in target) {
      const l = typeof target.lsn === 'bigint' ? target.lsn : parseLsn(target.lsn);
      if (l < parseLsn(b.endLsn)) return 'before';
      if (l > end.lsn) return 'after';
      return 'ok';
    }
    return 'ok';
  };

  let chosen: PlannerBackup | undefined;
  if (input.backupId !== undefined && input.backupId !== 'latest') {
    chosen = backups.find((b) => b.backupId === input.backupId);
    if (!chosen)
      throw new RestoreError(
        'RESTORE_BACKUP_NOT_FOUND',
        `backup ${input.backupId} does not exist (or is not complete)`,
      );
  } else if (
    input.backupId === 'latest' ||
    kind === undefined ||
    kind === 'xid' ||
    kind === 'name' ||
    kind === 'immediate'
  ) {
    chosen = [...backups].reverse().find(eligibleTl);
  } else {
    chosen = [...backups].reverse().find((b) => eligibleTl(b) && reaches(b) !== 'before');
    if (!chosen) {
      throw new RecoveryTargetError(`no backup ends before the recovery target (${describeTarget()})`, {
        ...detail,
        hint: 'choose a target after the end of the oldest backup',
      });
    }
  }
  if (!chosen)
    throw new RestoreError('RESTORE_BACKUP_NOT_FOUND', `no backup on timeline ${String(tl)} or earlier`);

  const end = recoverableEnd(chosen, ranges, input.walSegmentSize, tl);
  if (end.lsn < 0n) {
    throw new RecoveryTargetError(
      `backup ${chosen.backupId} carries no wal and the archive lacks the wal from its start`,
      detail,
    );
  }
  const r = reaches(chosen);
  if (r === 'before') {
    throw new RecoveryTargetError(
      `the recovery target (${describeTarget()}) lies before the end of backup ${chosen.backupId} (${chosen.endLsn}, ${chosen.finishedAt})`,
      {
        ...detail,
        hint: 'choose an older backup or a later target',
      },
    );
  }
  if (r === 'after') {
    throw new RecoveryTargetError(
      `the recovery target (${describeTarget()}) lies after the end of the archived wal reachable from backup ${chosen.backupId} (${formatLsn(end.lsn)}${end.time ? `, ${end.time}` : ''})`,
      {
        ...detail,
        hint: 'wait until the wal is archived (pg_switch_wal() closes the current segment), or choose an earlier target',
      },
    );
  }
  return {
    backup: chosen,
    windowEnd: end.time ? { lsn: formatLsn(end.lsn), time: end.time } : { lsn: formatLsn(end.lsn) },
    walRanges: ranges,
  };
}
