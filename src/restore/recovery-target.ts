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
 * - The archive's durable partial tail (the streaming archiver's `.partial` objects, which a restore
 *   places into pg_wal: src/archive/wal-tail.ts) extends the window when the caller passes it
 *   (`partialTail`, see `partialTailFromObjects`): it is WAL recovery will read.
 * - xid and restore-point targets carry no position that can be checked without reading every WAL
 *   record after the backup (PostgreSQL does that during recovery). What is checked soundly:
 *   a restore point or a transaction end that recovery can stop at is a WAL record after the backup's
 *   end (before it, PostgreSQL stops with "requested recovery stop point is before consistent recovery
 *   point"), so a backup with no WAL after its end (archived whole segments or the partial tail) cannot
 *   reach either: the newest backup that has some is used, and none is refused. For an xid, when the
 *   backup's `oldestActiveXid` is known (CheckPoint.oldestActiveXid of its checkpoint: every xid
 *   before it had ended when that checkpoint was written, i.e. before the backup's end), an xid that
 *   precedes it (modulo 2^32, as TransactionIdPrecedes) lies before that backup's end; an older
 *   backup is then chosen, or the target refused. restoreBackup reads it for xid targets with
 *   ./backup-checkpoint (backup_label, then the checkpoint record in the backup's own WAL; unknown
 *   for `fetch`/`none` backups and compressed WAL objects, where nothing is checked). Whether the
 *   restore point or the xid's commit/abort exists, and lies after the backup's end and before the
 *   archive's end, needs the records: restoreBackup reads them after this planner chose (./target-scan,
 *   option `checkTargetExists`), and refuses with the same RecoveryTargetError when the WAL recovery
 *   would replay holds no such record after the backup's end (PostgreSQL 13+ would stop with
 *   "recovery ended before configured recovery target was reached").
 */
import { RestoreError } from '../errors';
import {
  formatLsn,
  parseLsn,
  parseWalFileName,
  segmentStartLsn,
  walFileName,
  lsnToSegmentNumber,
  type Lsn,
} from '../lsn';
import { parseRepositoryKey } from '../archive/repo-layout';
import { planPartialAssembly } from '../archive/wal-partial';
import { planWalTail, type WalTailPlanObject } from '../archive/wal-tail';
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
  /**
   * CheckPoint.oldestActiveXid of the backup's checkpoint (its pg_control or checkpoint record), when
   * known; 0 or undefined: unknown (a shutdown checkpoint or wal_level minimal leave it 0).
   */
  oldestActiveXid?: number;
}

/**
 * The durable partial WAL at the archive's tip that the restore will place into pg_wal
 * (src/archive/wal-tail.ts): from the start of its first segment to the end of its durable bytes.
 */
export interface PlannerPartialTail {
  timeline: number;
  /** Start of the first partial segment. */
  startLsn: string;
  /** End of the durable bytes (exclusive). */
  endLsn: string;
  /** Modification time of the newest partial object (ISO 8601), when the store reports it. */
  endTime?: string;
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
  /** The durable partial tail the restore would place (when there is one). */
  readonly partialTail?: PlannerPartialTail;
  constructor(
    message: string,
    detail: {
      backups: BackupSummary[];
      walRanges: WalRange[];
      partialTail?: PlannerPartialTail;
      hint?: string;
    },
  ) {
    super('RESTORE_TARGET_OUT_OF_RANGE', message, { hint: detail.hint });
    this.backups = detail.backups;
    this.walRanges = detail.walRanges;
    if (detail.partialTail) this.partialTail = detail.partialTail;
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
  /** The partial tail the restore will place into pg_wal (only when it will: see restore-backup.ts). */
  partialTail?: PlannerPartialTail;
}

export interface RestorePlan {
  backup: PlannerBackup;
  /** Where recovery from this backup can end at the latest: LSN and (when known) time. */
  windowEnd: { lsn: string; time?: string };
  walRanges: WalRange[];
}

/** A listed WAL object of the stanza (key, size and modification time as the store lists them). */
export interface ListedWalObject {
  key: string;
  size: number;
  lastModified?: Date;
}

/**
 * Pure: the partial segments restore's placeWalTail would put into pg_wal, from a listing of the
 * stanza's WAL objects, by its own rule (planWalTail: the newest timeline only, partial-only segments
 * after every complete one, contiguous). `recoveryTimeline` 'current' is planned as 'latest' here:
 * the planner keeps the tail only when it is on the chosen backup's timeline.
 */
export function planPartialTailSegments(
  objects: readonly ListedWalObject[],
  walSegmentSize: number,
  recoveryTimeline: RecoveryTimeline = 'latest',
): { timeline: number; segments: string[] } {
  const planObjects: WalTailPlanObject[] = [];
  for (const o of objects) {
    const p = parseRepositoryKey(o.key);
    if (!p) continue;
    planObjects.push({
      kind: p.kind,
      timeline: 'timeline' in p ? p.timeline : 0,
      ...('walName' in p ? { walName: p.walName } : {}),
    });
  }
  const plan = planWalTail({
    objects: planObjects,
    segmentSize: walSegmentSize,
    backupTimeline: 0,
    recoveryTimeline: recoveryTimeline === 'current' ? 'latest' : recoveryTimeline,
  });
  return { timeline: plan.timeline, segments: plan.segments };
}

/**
 * Pure: the tail's extent from the durable bytes of each planned segment, in order (as placeWalTail
 * places them: it stops at the first empty or incomplete one). Undefined: no tail.
 */
export function partialTailExtent(
  timeline: number,
  segments: readonly { walName: string; durableBytes: number; lastModified?: Date }[],
  walSegmentSize: number,
): PlannerPartialTail | undefined {
  let start: Lsn | undefined;
  let end: Lsn | undefined;
  let newest: number | undefined;
  for (const seg of segments) {
    if (seg.durableBytes <= 0) break;
    const segStart = segmentStartLsn(parseWalFileName(seg.walName, walSegmentSize).segno, walSegmentSize);
    start ??= segStart;
    end = segStart + BigInt(Math.min(seg.durableBytes, walSegmentSize));
    const t = seg.lastModified?.getTime();
    if (t !== undefined) newest = Math.max(newest ?? t, t);
    if (seg.durableBytes < walSegmentSize) break; // the incomplete one is the last
  }
  if (start === undefined || end === undefined) return undefined;
  return {
    timeline,
    startLsn: formatLsn(start),
    endLsn: formatLsn(end),
    ...(newest !== undefined ? { endTime: new Date(newest).toISOString() } : {}),
  };
}

/**
 * Pure: the durable partial tail from a listing alone, the durable bytes of each segment taken from
 * the listed sizes of its exact pieces (planPartialAssembly). A store that keeps a pre-padded
 * partial file (its size says nothing) needs the bytes read: see listRestoreWindow.
 */
export function partialTailFromObjects(
  objects: readonly ListedWalObject[],
  walSegmentSize: number,
  recoveryTimeline: RecoveryTimeline = 'latest',
): PlannerPartialTail | undefined {
  const plan = planPartialTailSegments(objects, walSegmentSize, recoveryTimeline);
  const segs = plan.segments.map((walName) => {
    const mine = objects.filter((o) => {
      const p = parseRepositoryKey(o.key);
      return p !== undefined && 'walName' in p && p.walName === walName;
    });
    const times = mine.map((o) => o.lastModified?.getTime()).filter((t): t is number => t !== undefined);
    return {
      walName,
      durableBytes: planPartialAssembly(mine, walName).durableBytes,
      ...(times.length ? { lastModified: new Date(Math.max(...times)) } : {}),
    };
  });
  return partialTailExtent(plan.timeline, segs, walSegmentSize);
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
  partialTail?: PlannerPartialTail,
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
  // The partial tail continues the WAL reached so far when it starts at or before its end (a later
  // timeline's tail starts in the segment of its switch point, which the old timeline's WAL reaches).
  if (
    partialTail &&
    partialTail.timeline >= backup.endTimeline &&
    partialTail.timeline <= maxTl &&
    parseLsn(partialTail.startLsn) <= lsn &&
    parseLsn(partialTail.endLsn) > lsn
  ) {
    lsn = parseLsn(partialTail.endLsn);
    if (partialTail.endTime) time = partialTail.endTime;
  }
  return time === undefined ? { lsn } : { lsn, time };
}

/** The low 32 bits of a recovery_target_xid (PostgreSQL casts an epoch-qualified value to TransactionId). */
export function targetXid32(xid: string | number | bigint): number {
  return Number(BigInt(xid) & 0xffffffffn);
}

/** TransactionIdPrecedes (transam.c): modulo-2^32 order for normal xids, plain order for special ones (< 3). */
export function xidPrecedes(a: number, b: number): boolean {
  if (a < 3 || b < 3) return a < b;
  return ((a - b) | 0) < 0;
}

/** A backup as RecoveryTargetError lists it. */
export function backupSummary(b: PlannerBackup): BackupSummary {
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
  const tail = input.partialTail;
  const detail = {
    backups: backups.map(backupSummary),
    walRanges: ranges,
    ...(tail ? { partialTail: tail } : {}),
  };
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
    if ('xid' in target) return `xid ${String(target.xid)}`;
    if ('name' in target) return `restore point ${JSON.stringify(target.name)}`;
    return kind ?? 'target';
  };
  const windowEnd = (b: PlannerBackup) => recoverableEnd(b, ranges, input.walSegmentSize, tl, tail);
  const reaches = (b: PlannerBackup): 'before' | 'after' | 'ok' => {
    if (!target) return 'ok';
    const end = windowEnd(b);
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
    if ('xid' in target || 'name' in target) {
      if ('xid' in target && b.oldestActiveXid && xidPrecedes(targetXid32(target.xid), b.oldestActiveXid))
        return 'before';
      // The stop record lies after the backup's end: some WAL past it must be reachable. A 'fetch'
      // backup's pg_wal files are copied whole and may hold records written after its end: unknown.
      if (b.walMethod !== 'fetch' && end.lsn <= parseLsn(b.endLsn)) return 'after';
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
  } else if (input.backupId === 'latest' || kind === undefined || kind === 'immediate') {
    chosen = [...backups].reverse().find(eligibleTl);
  } else if (kind === 'xid' || kind === 'name') {
    // The newest backup that can reach it; else the newest one, refused below with the reason.
    const newestFirst = [...backups].reverse().filter(eligibleTl);
    chosen =
      newestFirst.find((b) => reaches(b) === 'ok') ??
      newestFirst.find((b) => reaches(b) !== 'before') ??
      newestFirst[0];
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

  const end = windowEnd(chosen);
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
  if (r === 'after' && (kind === 'xid' || kind === 'name')) {
    throw new RecoveryTargetError(
      `the recovery target (${describeTarget()}) needs wal after the end of backup ${chosen.backupId} (${chosen.endLsn}), and the archive holds none that recovery from it can reach`,
      {
        ...detail,
        hint: 'archive the wal written after the backup (pg_switch_wal() closes the current segment), or choose an older backup',
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
