/**
 * Does the WAL a restore would replay hold the record a restore-point or xid target stops at, after
 * the backup's end? Reads that WAL through the Storage interface, one segment at a time, with
 * ../archive/wal-record-reader, and stops at the first stop record (recovery stops at the first one
 * too: xlogrecovery.c recoveryStopsAfter/Before).
 *
 * Which WAL: from the segment of the backup's start LSN (the redo point recovery starts at) on, per
 * segment the newest timeline of the recovery's timeline path whose begin lies at or before it
 * (xlogrecovery.c XLogFileReadAnyTLI), from, in PostgreSQL's order of preference: the archived whole
 * segment (any compression, via archive-wal-object), else the backup's own WAL object, else the
 * archive's durable partial tail when the restore places it (wal-partial readArchivedPartial). The
 * scan ends where the WAL ends (a missing segment, or the end of WAL the reader finds).
 *
 * Verdicts: the first stop record lies at or after the backup's end: `found`; before it: `before`
 * (PostgreSQL would stop there and fail with "requested recovery stop point is before consistent
 * recovery point"); none: `not-found` (also, with nothing read, when the recovery timeline forked
 * off the backup's timeline before the backup's end: PostgreSQL refuses that timeline); the WAL from the backup's start cannot be read here (a `fetch`
 * backup whose WAL is inside base.tar and not archived, a timeline history that is missing):
 * `unknown`, and the caller checks nothing.
 */
import { isPgarkError, throwIfAborted } from '../errors';
import { emit, type ObserveOptions } from '../observe';
import {
  formatLsn,
  lsnToSegmentNumber,
  parseLsn,
  parseTimelineHistory,
  segmentStartLsn,
  walFileName,
  type Lsn,
} from '../lsn';
import type { Storage } from '../storage/storage';
import type { BackupCatalogEntry } from '../archive/backup-catalog';
import type { Stanza } from '../archive/repository';
import { findWalSegmentObject, openWalObject } from '../archive/archive-wal-object';
import { walHistoryKey } from '../archive/repo-layout';
import { readArchivedPartial } from '../archive/wal-partial';
import { WalRecordReader, type WalReadEnd } from '../archive/wal-record-reader';
import type { RecoveryTarget, RecoveryTimeline } from './recovery-config';
import { restorePointName, stopRecordNeedsBody, xactStopXid } from './recovery-stop-records';
import { targetXid32, type PlannerPartialTail, type PlannerSegment } from './recovery-target';

export type TargetScanVerdict = 'found' | 'before' | 'not-found' | 'unknown';

export interface TargetScanResult {
  verdict: TargetScanVerdict;
  /** Start of the first stop record (found or before). */
  lsn?: Lsn;
  /** Bytes of WAL read (decompressed). */
  bytesScanned: number;
  segmentsScanned: number;
  /** Where the scan stopped when no stop record was found (the end of the reachable WAL). */
  scannedTo?: Lsn;
  /** Why the reader stopped (the end of WAL), when it did. */
  end?: WalReadEnd;
  /** True when the scan stopped at `until` (see scanForStopRecord). */
  reachedUntil?: boolean;
  /** True when the recovery timeline forked off before the backup's end: nothing was read. */
  offPath?: boolean;
}

export interface TargetScanInput {
  storage: Storage;
  stanza: Stanza;
  backup: BackupCatalogEntry;
  target: RecoveryTarget;
  /** Whole archived segments (the planner's listing). */
  segments: readonly PlannerSegment[];
  /** The durable partial tail the restore places into pg_wal, when it does. */
  partialTail?: PlannerPartialTail;
  timeline?: RecoveryTimeline;
  /** Stop before records that start at or after this LSN (an already scanned range). */
  until?: Lsn;
  /** A stop record larger than this is not read. @default 16 MiB */
  maxRecordBytes?: number;
  signal?: AbortSignal;
}

/** The timelines recovery follows, oldest first, each with the LSN it begins at. */
async function timelinePath(
  input: TargetScanInput,
): Promise<{ tli: number; begin: Lsn }[] | 'off-path' | undefined> {
  const b = input.backup;
  const tl = input.timeline ?? 'latest';
  let target = b.endTimeline;
  if (typeof tl === 'number') target = tl;
  else if (tl === 'latest') {
    for (const s of input.segments) target = Math.max(target, s.timeline);
    if (input.partialTail) target = Math.max(target, input.partialTail.timeline);
  }
  if (target === b.startTimeline) return [{ tli: target, begin: 0n }];
  let text: Buffer;
  try {
    const chunks: Buffer[] = [];
    const stream = await input.storage.get(walHistoryKey(input.stanza.name, target), {
      ...(input.signal ? { signal: input.signal } : {}),
    });
    for await (const c of stream) chunks.push(c as Buffer);
    text = Buffer.concat(chunks);
  } catch (e) {
    if (input.signal?.aborted) throw e;
    return undefined;
  }
  const history = parseTimelineHistory(text);
  const path: { tli: number; begin: Lsn }[] = [];
  let begin = 0n;
  for (const h of history) {
    // The target forked off the backup's timeline before the backup's end: recovery from this backup
    // cannot follow it (xlogrecovery.c: "requested timeline %u does not contain minimum recovery
    // point" / "is not a child of this server's history").
    if (h.timeline === b.endTimeline && h.switchLsn < parseLsn(b.endLsn)) return 'off-path';
    if (h.timeline >= b.startTimeline) path.push({ tli: h.timeline, begin });
    begin = h.switchLsn;
  }
  path.push({ tli: target, begin });
  if (!path.some((p) => p.tli === b.startTimeline)) return undefined;
  return path;
}

type SegmentSource =
  | { kind: 'archive'; walName: string }
  | { kind: 'backup'; key: string }
  | { kind: 'tail'; walName: string; bytes: number };

/** Reads one source into `buf` (segment-sized); returns the bytes it holds. */
async function readSource(
  input: TargetScanInput,
  src: SegmentSource,
  buf: Buffer,
): Promise<Buffer | undefined> {
  const opts = input.signal ? { signal: input.signal } : {};
  const segSize = input.stanza.info.walSegmentSize;
  if (src.kind === 'tail') {
    buf.fill(0);
    await readArchivedPartial(input.storage, input.stanza.name, src.walName, segSize, buf);
    return buf.subarray(0, src.bytes);
  }
  let stream: AsyncIterable<unknown>;
  if (src.kind === 'archive') {
    const obj = await findWalSegmentObject(input.storage, input.stanza.name, src.walName, opts);
    if (!obj) return undefined;
    stream = await openWalObject(input.storage, obj.key, obj.compression, opts);
  } else {
    stream = await input.storage.get(src.key, opts);
  }
  let n = 0;
  for await (const c of stream) {
    const chunk = c as Buffer;
    if (n + chunk.length > segSize) return undefined; // not a segment: treated as missing
    chunk.copy(buf, n);
    n += chunk.length;
  }
  return n === segSize ? buf : undefined;
}

/**
 * Scans the WAL recovery from `backup` would replay for the first record `target` (a `name` or an
 * `xid`) stops at. See the module comment.
 * @throws StorageError from the store; ConfigError CONFIG_UNSUPPORTED_COMPRESSION; AbortError.
 */
export async function scanForStopRecord(input: TargetScanInput): Promise<TargetScanResult> {
  const { backup, target } = input;
  const kind: 'name' | 'xid' | undefined = 'name' in target ? 'name' : 'xid' in target ? 'xid' : undefined;
  const result: TargetScanResult = { verdict: 'unknown', bytesScanned: 0, segmentsScanned: 0 };
  if (!kind) return result;
  const segSize = input.stanza.info.walSegmentSize;
  const path = await timelinePath(input);
  if (!path) return result;
  if (path === 'off-path') return { ...result, verdict: 'not-found', offPath: true };
  const archived = new Set(input.segments.map((s) => `${s.timeline}:${s.segno}`));
  const own = new Map<string, string>();
  for (const o of backup.objects) {
    if (o.kind === 'wal' && /^wal\/[0-9A-F]{24}$/.test(o.name)) own.set(o.name.substring(4), o.key);
  }
  const tail = input.partialTail;
  const tailStart = tail ? lsnToSegmentNumber(parseLsn(tail.startLsn), segSize) : undefined;
  const tailEnd = tail ? parseLsn(tail.endLsn) : undefined;
  const sourceOf = (segno: bigint): SegmentSource | undefined => {
    for (const p of [...path].reverse()) {
      if (lsnToSegmentNumber(p.begin, segSize) > segno) continue;
      const walName = walFileName(p.tli, segno, segSize);
      if (archived.has(`${p.tli}:${segno}`)) return { kind: 'archive', walName };
      const key = own.get(walName);
      if (key) return { kind: 'backup', key };
      if (tail && tail.timeline === p.tli && tailStart !== undefined && segno >= tailStart) {
        const segStart = segmentStartLsn(segno, segSize);
        if (tailEnd! > segStart)
          return {
            kind: 'tail',
            walName,
            bytes: Number(tailEnd! - segStart < BigInt(segSize) ? tailEnd! - segStart : BigInt(segSize)),
          };
      }
    }
    return undefined;
  };

  const name = kind === 'name' ? (target as { name: string }).name : undefined;
  const xid = kind === 'xid' ? targetXid32((target as { xid: string | number | bigint }).xid) : undefined;
  const startLsn = parseLsn(backup.startLsn);
  const endLsn = parseLsn(backup.endLsn);
  const reader = new WalRecordReader({
    segmentSize: segSize,
    startLsn,
    wantRecord: (h) => stopRecordNeedsBody(h, kind),
    ...(input.maxRecordBytes !== undefined ? { maxRecordBytes: input.maxRecordBytes } : {}),
  });
  const buf = Buffer.alloc(segSize);
  let segno = lsnToSegmentNumber(startLsn, segSize);
  for (;;) {
    throwIfAborted(input.signal, 'recovery target scan');
    const src = sourceOf(segno);
    const bytes = src ? await readSource(input, src, buf) : undefined;
    if (!bytes) {
      // No WAL from the backup's start here (a `fetch` backup, a pruned archive): cannot tell.
      if (result.segmentsScanned === 0) return result;
      break;
    }
    result.segmentsScanned++;
    result.bytesScanned += bytes.length;
    const segStart = segmentStartLsn(segno, segSize);
    for (const rec of reader.feed(segStart, bytes)) {
      if (input.until !== undefined && rec.lsn >= input.until) {
        result.reachedUntil = true;
        break;
      }
      // A stop record whose body was too large to read (maxRecordBytes): it may be the one; cannot tell.
      if (!rec.bytes && stopRecordNeedsBody(rec, kind)) return { ...result, verdict: 'unknown' };
      const major = reader.pgMajor ?? backup.pgMajor;
      let hit: boolean;
      try {
        hit = kind === 'name' ? restorePointName(rec, major) === name : xactStopXid(rec, major)?.xid === xid;
      } catch (e) {
        // A CRC-valid record this module cannot decode: never refuse a restore on that; unknown.
        if (!isPgarkError(e) || e.code !== 'INTEGRITY_WAL_INVALID') throw e;
        return { ...result, verdict: 'unknown' };
      }
      if (hit) {
        result.verdict = rec.lsn >= endLsn ? 'found' : 'before';
        result.lsn = rec.lsn;
        return result;
      }
    }
    if (result.reachedUntil || reader.end) break;
    if (bytes.length < segSize) break; // the partial tail's last segment
    segno++;
  }
  result.verdict = 'not-found';
  if (reader.end) result.end = reader.end;
  const pos = reader.position;
  if (pos !== undefined) result.scannedTo = pos;
  return result;
}

/** The scan's event (restore.target-scan). */
export function emitTargetScan(
  options: ObserveOptions,
  backupId: string,
  target: RecoveryTarget,
  r: TargetScanResult,
): void {
  emit(options, {
    type: 'restore.target-scan',
    backupId,
    target:
      'name' in target ? `name ${target.name}` : 'xid' in target ? `xid ${String(target.xid)}` : 'other',
    verdict: r.verdict,
    ...(r.lsn !== undefined ? { lsn: formatLsn(r.lsn) } : {}),
    bytesScanned: r.bytesScanned,
    segmentsScanned: r.segmentsScanned,
  });
}

export interface StopRecordChoice {
  /** The newest candidate whose WAL holds the stop record after its end (or could not be scanned). */
  backup?: BackupCatalogEntry;
  /** Each candidate scanned, newest first. */
  scans: { backupId: string; result: TargetScanResult }[];
}

/**
 * Scans the candidates (newest first, each one the planner accepts) until one can reach the stop
 * record. An older backup on the same timelines reuses what the newer one's scan found: it reads only
 * from its own start to the newer one's start (the first stop record after that is the one found).
 */
export async function chooseBackupByStopRecord(
  input: Omit<TargetScanInput, 'backup' | 'until'> & ObserveOptions & { candidates: BackupCatalogEntry[] },
): Promise<StopRecordChoice> {
  const scans: StopRecordChoice['scans'] = [];
  let newer: { entry: BackupCatalogEntry; result: TargetScanResult } | undefined;
  for (const b of input.candidates) {
    const reuse =
      newer !== undefined &&
      newer.result.verdict !== 'unknown' &&
      !newer.result.offPath &&
      newer.entry.startTimeline === b.startTimeline &&
      newer.entry.endTimeline === b.endTimeline &&
      parseLsn(b.startLsn) < parseLsn(newer.entry.startLsn);
    const until = reuse ? parseLsn(newer!.entry.startLsn) : undefined;
    let r = await scanForStopRecord({ ...input, backup: b, ...(until !== undefined ? { until } : {}) });
    if (reuse && r.verdict === 'not-found' && r.reachedUntil) {
      const known = newer!.result.lsn;
      r =
        known === undefined
          ? { ...newer!.result, bytesScanned: r.bytesScanned, segmentsScanned: r.segmentsScanned }
          : {
              verdict: known >= parseLsn(b.endLsn) ? 'found' : 'before',
              lsn: known,
              bytesScanned: r.bytesScanned,
              segmentsScanned: r.segmentsScanned,
            };
    }
    scans.push({ backupId: b.backupId, result: r });
    emitTargetScan(input, b.backupId, input.target, r);
    if (r.verdict === 'unknown')
      input.logger?.warn('the recovery target could not be looked up in the wal (not checked)', {
        backupId: b.backupId,
      });
    if (r.verdict === 'found' || r.verdict === 'unknown') return { backup: b, scans };
    newer = { entry: b, result: r };
  }
  return { scans };
}
