/**
 * The durable tail of the archive for a restore (RPO 0): the WAL the streaming archiver holds as
 * partial objects (`<seg>.partial`, `<seg>.partial.<off>`, `<seg>.partial.padded`) beyond the last
 * complete segment.
 *
 * PostgreSQL's restore_command asks only for complete segment names, and archive-fetch never serves
 * a `.partial` under a complete name (a restore_command that did so for an old timeline's partial
 * would splice a dead branch of history into recovery). pg_receivewal users recover the tail by
 * hand: copy the newest `.partial` into pg_wal under its full name. This module does that, at
 * restore time, under rules that keep it safe:
 *
 * - only the NEWEST timeline of the stanza is considered (highest timeline of any WAL object or
 *   history file), and only when recovery follows it (`recovery_target_timeline` latest, or that
 *   number, or `current` when the backup is on it): an old timeline's partial is the end of a
 *   branch that a promotion left behind, never the tip;
 * - only segments held as partial objects only (no complete segment of that name), newer than
 *   every complete segment of that timeline (older leftovers are stale), contiguous from the first;
 * - the bytes are the durable prefix from offset 0 (`readArchivedPartial`), zero-padded to the
 *   segment size; recovery reads the zero tail as the end of WAL (xlogreader: a record length of 0
 *   or a page header with a zero magic is "invalid record", the normal end of WAL);
 * - a `.partial.padded` file (the synchronous writer's open segment on a directory repository) is
 *   already zero-padded, which is what PostgreSQL expects in pg_wal: it is copied as it is (laid
 *   under any exact pieces of the same segment). Its size does not tell whether it is complete; it
 *   is when a newer segment of the tail follows it (the writer opens a segment's file only after
 *   the previous one was wholly written and fdatasync'ed), so every padded file but the last counts
 *   as whole;
 * - the first page's long header must carry the stanza's system identifier;
 * - a file already in pg_wal (the backup's own WAL) is replaced only when it is a zero-padded prefix
 *   of the archived bytes; otherwise it is kept and the tail ends there.
 *
 * Recovery asks restore_command first (archive-fetch answers "not found" for these names) and then
 * reads pg_wal (xlogrecovery.c XLogFileReadAnyTLI, XLOG_FROM_ANY), so the placed file is used
 * exactly where the archive ends. The file gets `archive_status/<name>.done` so a restored server
 * with archiving on does not push the padded file under its full name; at promotion PostgreSQL
 * renames an incomplete last segment of the old timeline to `.partial` itself (xlog.c
 * CleanupAfterArchiveRecovery).
 */
import { lchown, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { IntegrityError } from '../errors';
import { parseWalFileName, segmentStartLsn, type Lsn } from '../lsn';
import type { Storage } from '../storage/storage';
import type { Stanza } from './repository';
import { readArchivedPartial } from './wal-partial';
import { readWalSysid } from './wal-segment';

export interface WalTailPlanObject {
  kind: string;
  timeline: number;
  walName?: string;
}

export interface WalTailPlanInput {
  objects: readonly WalTailPlanObject[];
  segmentSize: number;
  /** recovery_target_timeline of the restore. @default 'latest' */
  recoveryTimeline?: 'latest' | 'current' | number;
  /** The backup's timeline (for 'current'). */
  backupTimeline: number;
}

export interface WalTailPlan {
  /** The newest timeline of the stanza. */
  timeline: number;
  /** Segment names held only as partial objects, in order (the last one may be incomplete). */
  segments: string[];
  /** Why nothing is placed (when `segments` is empty). */
  skipped?: 'no-partial' | 'other-timeline';
}

/** Pure: which partial segments form the tip of the newest timeline. */
export function planWalTail(input: WalTailPlanInput): WalTailPlan {
  let newest = 0;
  for (const o of input.objects) {
    if (
      o.kind === 'wal-segment' ||
      o.kind === 'wal-partial' ||
      o.kind === 'wal-partial-chunk' ||
      o.kind === 'wal-partial-padded' ||
      o.kind === 'wal-history'
    ) {
      newest = Math.max(newest, o.timeline);
    }
  }
  const want = input.recoveryTimeline ?? 'latest';
  const follows =
    want === 'latest' || (want === 'current' ? input.backupTimeline === newest : want === newest);
  if (!follows) return { timeline: newest, segments: [], skipped: 'other-timeline' };
  let maxComplete = -1n;
  const complete = new Set<string>();
  const partial = new Set<string>();
  for (const o of input.objects) {
    if (o.timeline !== newest || !o.walName) continue;
    if (o.kind === 'wal-segment') {
      complete.add(o.walName);
      const { segno } = parseWalFileName(o.walName, input.segmentSize);
      if (segno > maxComplete) maxComplete = segno;
    } else if (
      o.kind === 'wal-partial' ||
      o.kind === 'wal-partial-chunk' ||
      o.kind === 'wal-partial-padded'
    ) {
      partial.add(o.walName);
    }
  }
  const segments: string[] = [];
  let prev: bigint | undefined;
  for (const name of [...partial].filter((n) => !complete.has(n)).sort()) {
    const { segno } = parseWalFileName(name, input.segmentSize);
    if (segno <= maxComplete) continue; // a leftover that a complete segment supersedes
    if (prev !== undefined && segno !== prev + 1n) break; // a hole ends the tail
    segments.push(name);
    prev = segno;
  }
  return segments.length
    ? { timeline: newest, segments }
    : { timeline: newest, segments: [], skipped: 'no-partial' };
}

export interface PlacedWalTail {
  timeline: number;
  /** Files written into pg_wal (full segment names). */
  files: { walName: string; durableBytes: number }[];
  /** End of the WAL placed (undefined when nothing was placed). */
  endLsn?: Lsn;
  skipped?: WalTailPlan['skipped'] | 'exists';
}

/**
 * Places the newest timeline's durable tail into `walDir` (a restored data directory's pg_wal)
 * under full segment names, zero-padded. See the module comment for the rules.
 * @throws IntegrityError INTEGRITY_WAL_INVALID (a partial of another cluster, or larger than a
 *   segment); StorageError from the store.
 */
export async function placeWalTail(options: {
  storage: Storage;
  stanza: Stanza;
  walDir: string;
  backupTimeline: number;
  recoveryTimeline?: 'latest' | 'current' | number;
  owner?: { uid: number; gid: number };
  signal?: AbortSignal;
}): Promise<PlacedWalTail> {
  const { storage, stanza, walDir } = options;
  const segSize = stanza.info.walSegmentSize;
  const objects: WalTailPlanObject[] = [];
  for await (const o of stanza.listWal(options.signal ? { signal: options.signal } : {})) {
    const p = o.parsed;
    objects.push({
      kind: p.kind,
      timeline: 'timeline' in p ? p.timeline : 0,
      ...('walName' in p ? { walName: p.walName } : {}),
    });
  }
  const plan = planWalTail({
    objects,
    segmentSize: segSize,
    backupTimeline: options.backupTimeline,
    ...(options.recoveryTimeline !== undefined ? { recoveryTimeline: options.recoveryTimeline } : {}),
  });
  const out: PlacedWalTail = { timeline: plan.timeline, files: [] };
  if (plan.skipped) out.skipped = plan.skipped;
  for (const [index, name] of plan.segments.entries()) {
    const buf = Buffer.alloc(segSize); // zeros past the durable prefix: the end of WAL for recovery
    const read = await readArchivedPartial(storage, stanza.name, name, segSize, buf);
    // A padded file followed by a newer segment is whole (see the module comment), even when its
    // last bytes are zeros (the rest of a segment after a WAL switch is zeros).
    const whole = read.paddedKey !== undefined && index < plan.segments.length - 1;
    const bytes = whole ? buf : read.bytes;
    if (bytes.length === 0) break;
    if (bytes.length >= 40) {
      const sysid = readWalSysid(buf.subarray(0, 8192));
      if (sysid !== stanza.info.systemIdentifier) {
        throw new IntegrityError(
          'INTEGRITY_WAL_INVALID',
          `partial wal segment ${name} belongs to system ${sysid}, not the stanza's ${stanza.info.systemIdentifier}`,
          {
            expected: stanza.info.systemIdentifier,
            actual: sysid,
          },
        );
      }
    }
    const path = join(walDir, name);
    if (existsSync(path)) {
      // The backup may carry this segment (wal: 'stream'): its copy ends at the backup's end, zero
      // after. Replace it only when it is a prefix of ours (agrees on every byte it holds); else keep it.
      const theirs = await readFile(path);
      let end = theirs.length;
      while (end > 0 && theirs[end - 1] === 0) end--;
      if (
        theirs.length !== segSize ||
        end > bytes.length ||
        !theirs.subarray(0, end).equals(buf.subarray(0, end))
      ) {
        out.skipped = 'exists';
        break;
      }
      await rm(path);
    }
    await mkdir(join(walDir, 'archive_status'), { recursive: true, mode: 0o700 });
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.write(buf);
      await fh.sync();
    } finally {
      await fh.close();
    }
    const done = join(walDir, 'archive_status', `${name}.done`);
    await rm(done, { force: true });
    await writeFile(done, '', { mode: 0o600 });
    if (options.owner) {
      await lchown(path, options.owner.uid, options.owner.gid);
      await lchown(done, options.owner.uid, options.owner.gid);
    }
    out.files.push({ walName: name, durableBytes: bytes.length });
    const { segno } = parseWalFileName(name, segSize);
    out.endLsn = segmentStartLsn(segno, segSize) + BigInt(bytes.length);
    if (bytes.length < segSize) break; // the incomplete one is the last
  }
  return out;
}
