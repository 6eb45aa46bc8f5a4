/**
 * archive-fetch: hands PostgreSQL one archived file for `restore_command` (`%f` → `%p`), from the
 * keys archive-push and the streaming archiver write (repo-layout.ts), and prefetches the segments
 * that recovery will ask for next.
 *
 * A file that is not in the repository is a normal answer (`found: false`): recovery probes for
 * history files of future timelines and for the segment after the last archived one, and ends
 * archive recovery (or, on a standby, switches to streaming) when told "not found". Every other
 * failure is thrown, so the CLI can tell the two apart.
 *
 * The destination is written atomically: a temporary file in the destination's directory, renamed
 * over `destPath`, so PostgreSQL never opens a half-written segment. A segment is checked before it
 * is handed over (exact size, long page header of the stanza's cluster, every page's address and
 * timeline): a damaged one is IntegrityError, never a file recovery would replay.
 *
 * Prefetch (segments only): the next `prefetch` segments of the same timeline are downloaded in
 * parallel into a spool directory, by default `.pgark-spool` next to `destPath` (for restore_command
 * that is `<pgdata>/pg_wal/.pgark-spool`: the same file system, so handing a spooled file over is a
 * rename; PostgreSQL ignores a directory it does not know in pg_wal, and BASE_BACKUP does not copy
 * pg_wal's contents). The next call is served from the spool. A call refills the window only when
 * fewer than half of it is spooled, so downloads come in parallel batches rather than one per call.
 * Spooled files carry a `.sha256` sidecar computed while downloading and are re-checked (sha256 and
 * page headers) before being served; files outside the current window (older segments, another
 * timeline) are removed on every call, and the whole spool is emptied when it was filled from
 * another repository, stanza or cluster (`spool.json`). Everything runs inside the call: no process
 * is left behind when it returns. One restore_command runs at a time per server, so one spool
 * directory serves one recovery.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConfigError, IntegrityError, isPgarkError, throwIfAborted } from '../errors';
import {
  classifyWalFileName,
  parseTimelineHistory,
  parseWalFileName,
  timelineOfHistoryFile,
  walFileName,
  type WalFileKind,
} from '../lsn';
import { emit, noopLogger, type Logger, type ObserveOptions } from '../observe';
import type { Storage } from '../storage/storage';
import { WalSegmentCheckStream } from './wal-segment';
import { findWalSegmentObject, openWalObject } from './archive-wal-object';
import { walBackupHistoryKey, walHistoryKey, walPartialKey } from './repo-layout';
import { openRepository, type StanzaInfo } from './repository';

/** Defaults of archiveFetch's options. */
export const ARCHIVE_FETCH_DEFAULTS = {
  /** Segments downloaded ahead of the one asked for. */
  prefetch: 8,
  /** The spool directory's name next to destPath. */
  spoolDirName: '.pgark-spool',
} as const;

const MAX_PREFETCH = 64;
const MAX_SMALL_FILE_BYTES = 16 * 1024 * 1024;

export interface ArchiveFetchOptions extends ObserveOptions {
  /** The repository storage (fs or s3). */
  storage: Storage;
  /** The stanza to read from. */
  stanza: string;
  /** restore_command's `%f`: a segment, `.history`, `.backup` or `.partial` file name. */
  walName: string;
  /** restore_command's `%p`: where PostgreSQL wants the file (relative to the data directory, or absolute). */
  destPath: string;
  /**
   * Segments to download ahead (0 turns prefetch off). @default 8
   */
  prefetch?: number;
  /** Where prefetched segments wait. @default `<dirname(destPath)>/.pgark-spool` */
  spoolDir?: string;
  signal?: AbortSignal;
}

export interface ArchiveFetchResult {
  /** False when the repository has no such file: PostgreSQL's normal "not available". */
  found: boolean;
  walName: string;
  kind: WalFileKind;
  /** The repository key served (undefined when served from the spool or not found). */
  key?: string;
  /** Bytes written to destPath. */
  size?: number;
  /** True when the segment came from the prefetch spool. */
  fromSpool: boolean;
  /** Segments this call downloaded into the spool. */
  prefetched: number;
}

/**
 * Fetches one archived WAL file into `destPath` (restore_command). Segments are verified before
 * they are handed over; the following segments are prefetched into a spool directory.
 *
 * Ordering/durability: destPath appears whole or not at all (rename). It is not fsynced: after a
 * crash recovery asks again.
 *
 * @returns `{ found: false }` when the repository has no such file (a segment is never answered
 *   with its `.partial`: the archive's durable partial tip reaches a restore through
 *   restoreBackup's `walTail`, which places only the newest timeline's, see src/archive/wal-tail.ts).
 * @throws IntegrityError INTEGRITY_WAL_INVALID / INTEGRITY_SYSTEM_ID_MISMATCH for a damaged or
 *   foreign segment, INTEGRITY_REPOSITORY_FORMAT when there is no repository; StorageError
 *   STORAGE_NOT_FOUND when the stanza does not exist, other StorageErrors from the store;
 *   ConfigError CONFIG_INVALID_WAL_NAME, CONFIG_INVALID_OPTION, CONFIG_UNSUPPORTED_COMPRESSION; AbortError.
 * @example
 * // restore_command = 'pgark archive-fetch %f %p --repo /var/lib/pgark --stanza main'
 * const r = await archiveFetch({ storage, stanza: 'main', walName: '000000010000000000000007', destPath: 'pg_wal/RECOVERYXLOG' });
 * if (!r.found) process.exitCode = 1;
 */
export async function archiveFetch(options: ArchiveFetchOptions): Promise<ArchiveFetchResult> {
  const { storage, stanza, walName, destPath, signal } = options;
  const logger = options.logger ?? noopLogger;
  const kind = classifyWalFileName(walName);
  const prefetch = options.prefetch ?? ARCHIVE_FETCH_DEFAULTS.prefetch;
  if (!Number.isInteger(prefetch) || prefetch < 0 || prefetch > MAX_PREFETCH) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `prefetch must be an integer from 0 to ${MAX_PREFETCH}, not ${prefetch}`,
    );
  }
  throwIfAborted(signal, `archive-fetch of ${walName}`);

  const repo = await openRepository(storage, { signal });
  const info = (await repo.openStanza(stanza, { signal })).info;

  let result: ArchiveFetchResult;
  if (kind === 'segment') {
    result = await fetchSegment(options, info, prefetch, logger);
  } else {
    const key =
      kind === 'history'
        ? walHistoryKey(stanza, timelineOfHistoryFile(walName))
        : kind === 'backup-history'
          ? walBackupHistoryKey(stanza, walName)
          : walPartialKey(stanza, walName.substring(0, walName.length - '.partial'.length));
    result = { found: false, walName, kind, fromSpool: false, prefetched: 0 };
    let stream: Readable | undefined;
    try {
      stream = await storage.get(key, { signal });
    } catch (e) {
      if (!(isPgarkError(e) && e.code === 'STORAGE_NOT_FOUND')) throw e;
    }
    if (stream) {
      const size =
        kind === 'partial'
          ? (await writeAtomically(destPath, stream)).size
          : await writeSmallAtomically(destPath, stream, kind, walName);
      result = { ...result, found: true, key, size };
    }
  }
  logger.info(result.found ? 'wal file restored' : 'wal file not in the archive', {
    walName,
    fromSpool: result.fromSpool,
    prefetched: result.prefetched,
  });
  const event: Extract<Parameters<typeof emit>[1], { type: 'wal.archive.fetched' }> = {
    type: 'wal.archive.fetched',
    walName,
    found: result.found,
    fromSpool: result.fromSpool,
    prefetched: result.prefetched,
  };
  if (result.key !== undefined) event.key = result.key;
  if (result.size !== undefined) event.bytes = result.size;
  emit(options, event);
  return result;
}

async function fetchSegment(
  options: ArchiveFetchOptions,
  info: StanzaInfo,
  prefetch: number,
  logger: Logger,
): Promise<ArchiveFetchResult> {
  const { storage, stanza, walName, destPath, signal } = options;
  const segSize = info.walSegmentSize;
  const { timeline, segno } = parseWalFileName(walName, segSize);
  const expect: SegmentExpect = {
    systemIdentifier: info.systemIdentifier,
    segmentSize: segSize,
    pgMajor: info.pgMajor,
  };
  const base: ArchiveFetchResult = {
    found: false,
    walName,
    kind: 'segment',
    fromSpool: false,
    prefetched: 0,
  };

  const window: string[] = [];
  for (let i = 1n; i <= BigInt(prefetch); i++) {
    // Stay inside the 64-bit segment number space (a name past it cannot exist).
    if (segno + i > 0xffffffffffffffffn / BigInt(segSize)) break;
    window.push(walFileName(timeline, segno + i, segSize));
  }

  const spool =
    prefetch > 0
      ? new Spool(
          options.spoolDir ?? join(dirname(destPath), ARCHIVE_FETCH_DEFAULTS.spoolDirName),
          {
            repository: storage.describe(),
            stanza,
            systemIdentifier: info.systemIdentifier,
          },
          logger,
        )
      : undefined;
  if (spool) await spool.prepare();

  let result: ArchiveFetchResult;
  if (spool && (await spool.take(walName, destPath, expect))) {
    result = { ...base, found: true, fromSpool: true, size: segSize };
  } else {
    const obj = await findWalSegmentObject(storage, stanza, walName, { signal });
    if (!obj) {
      // The end of the archive (or a timeline not archived): nothing to prefetch either.
      if (spool) await spool.prune(new Set());
      return base;
    }
    const stream = await openWalObject(storage, obj.key, obj.compression, { signal });
    const written = await writeAtomically(destPath, stream, segmentCheck(walName, expect));
    result = { ...base, found: true, key: obj.key, size: written.size };
  }

  if (spool) {
    const wanted = new Set(window);
    await spool.prune(wanted);
    const present = await spool.presentOf(window);
    // Refill in batches: only when at most half the window is left.
    if (present.size <= Math.floor(window.length / 2)) {
      const missing = window.filter((n) => !present.has(n));
      const counts = await Promise.all(
        missing.map((name) =>
          spool.download(name, storage, stanza, expect, signal).catch((e: unknown) => {
            if (signal?.aborted) throw e;
            logger.warn('prefetch of a wal segment failed', {
              walName: name,
              code: isPgarkError(e) ? e.code : undefined,
              error: String(e),
            });
            return false;
          }),
        ),
      );
      result.prefetched = counts.filter(Boolean).length;
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// destination files

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.pgark-tmp-${randomBytes(8).toString('hex')}`);
}

interface SegmentExpect {
  systemIdentifier: string;
  segmentSize: number;
  pgMajor: number;
}

function segmentCheck(walName: string, expect: SegmentExpect): WalSegmentCheckStream {
  return new WalSegmentCheckStream({ expectedName: walName, ...expect });
}

/**
 * Streams into a temporary file next to `path` (through `check` when given) and renames it over
 * `path`; returns the byte count and sha256.
 */
async function writeAtomically(
  path: string,
  source: Readable,
  check?: WalSegmentCheckStream,
): Promise<{ size: number; sha256: string }> {
  const tmp = tempPathFor(path);
  let size = 0;
  const hash = createHash('sha256');
  const counter = async function* (src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of src) {
      size += chunk.length;
      hash.update(chunk);
      yield chunk;
    }
  };
  try {
    if (check) await pipeline(source, check, counter, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    else await pipeline(source, counter, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw asFetchError(e, path);
  }
  return { size, sha256: hash.digest('hex') };
}

async function writeSmallAtomically(
  path: string,
  source: Readable,
  kind: WalFileKind,
  walName: string,
): Promise<number> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of source as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_SMALL_FILE_BYTES) {
      source.destroy();
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `archived ${kind} file ${walName} is larger than ${MAX_SMALL_FILE_BYTES} bytes`,
      );
    }
    chunks.push(c);
  }
  const bytes = Buffer.concat(chunks);
  if (kind === 'history') {
    try {
      parseTimelineHistory(bytes);
    } catch (e) {
      throw new IntegrityError('INTEGRITY_WAL_INVALID', `archived history file ${walName} cannot be parsed`, {
        cause: e,
      });
    }
  }
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, bytes, { flag: 'wx', mode: 0o600 });
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw asFetchError(e, path);
  }
  return size;
}

/** Local file errors become ConfigError (the destination is the caller's); pgark errors pass through. */
function asFetchError(e: unknown, path: string): unknown {
  if (isPgarkError(e)) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string') {
    return new ConfigError('CONFIG_INVALID_OPTION', `cannot write ${path}: ${code}`, { cause: e });
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// the prefetch spool

interface SpoolIdentity {
  repository: string;
  stanza: string;
  systemIdentifier: string;
}

const SPOOL_IDENTITY_FILE = 'spool.json';
const SHA_SUFFIX = '.sha256';

class Spool {
  constructor(
    readonly dir: string,
    private readonly identity: SpoolIdentity,
    private readonly logger: Logger,
  ) {}

  /** Creates the directory, empties it when it belongs to another repository/stanza/cluster, drops temporary files. */
  async prepare(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const want = JSON.stringify(this.identity);
    let have: string | undefined;
    try {
      have = await readFile(join(this.dir, SPOOL_IDENTITY_FILE), 'utf8');
    } catch {
      have = undefined;
    }
    if (have !== want) {
      for (const name of await readdir(this.dir))
        await rm(join(this.dir, name), { force: true, recursive: true });
      await writeFile(join(this.dir, SPOOL_IDENTITY_FILE), want, { mode: 0o600 });
    }
    // Temporary files of an interrupted call (one call runs at a time per spool).
    for (const name of await readdir(this.dir)) {
      if (name.startsWith('.')) await rm(join(this.dir, name), { force: true });
    }
  }

  /** Moves a verified spooled segment to destPath; false when it is absent or fails its checks (then it is removed). */
  async take(walName: string, destPath: string, expect: SegmentExpect): Promise<boolean> {
    const file = join(this.dir, walName);
    let sha: string;
    try {
      sha = (await readFile(file + SHA_SUFFIX, 'utf8')).trim();
    } catch {
      return false;
    }
    const hash = createHash('sha256');
    try {
      await pipeline(
        createReadStream(file),
        segmentCheck(walName, expect),
        async function (src: AsyncIterable<Buffer>) {
          for await (const chunk of src) hash.update(chunk);
        },
      );
      if (hash.digest('hex') !== sha) {
        throw new IntegrityError(
          'INTEGRITY_CHECKSUM_MISMATCH',
          `spooled wal segment ${walName} does not have its recorded sha256`,
        );
      }
      await rename(file, destPath);
    } catch (e) {
      this.logger.warn('discarding a spooled wal segment', {
        walName,
        code: isPgarkError(e) ? e.code : undefined,
        error: String(e),
      });
      await this.remove(walName);
      return false;
    }
    await rm(file + SHA_SUFFIX, { force: true });
    return true;
  }

  /** Removes every spooled segment not named in `keep`. */
  async prune(keep: Set<string>): Promise<void> {
    for (const name of await readdir(this.dir)) {
      if (name === SPOOL_IDENTITY_FILE) continue;
      const walName = name.endsWith(SHA_SUFFIX) ? name.substring(0, name.length - SHA_SUFFIX.length) : name;
      if (!keep.has(walName)) await rm(join(this.dir, name), { force: true, recursive: true });
    }
  }

  /** Names of `names` that are spooled with their sidecar. */
  async presentOf(names: string[]): Promise<Set<string>> {
    const entries = new Set(await readdir(this.dir));
    return new Set(names.filter((n) => entries.has(n) && entries.has(n + SHA_SUFFIX)));
  }

  /** Downloads one segment into the spool, verified; false when the archive does not have it. */
  async download(
    walName: string,
    storage: Storage,
    stanza: string,
    expect: SegmentExpect,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const obj = await findWalSegmentObject(storage, stanza, walName, { signal });
    if (!obj) return false;
    const stream = await openWalObject(storage, obj.key, obj.compression, { signal });
    const file = join(this.dir, walName);
    const written = await writeAtomically(file, stream, segmentCheck(walName, expect));
    const shaTmp = tempPathFor(file + SHA_SUFFIX);
    await writeFile(shaTmp, written.sha256 + '\n', { mode: 0o600 });
    await rename(shaTmp, file + SHA_SUFFIX);
    return true;
  }

  private async remove(walName: string): Promise<void> {
    await rm(join(this.dir, walName), { force: true });
    await rm(join(this.dir, walName + SHA_SUFFIX), { force: true });
  }
}
