/**
 * Extraction of one archive object of a backup (base.tar or `<oid>.tar`, maybe compressed) into a
 * directory: the restore's hot path, written so that its CPU cost per byte stays small.
 *
 * storage stream (1 MiB reads) → sha256 of the stored bytes (on a worker thread for large objects:
 * ./sha256-worker) → (decompression) → TarChunkParser (synchronous, body slices share the chunk's
 * memory) → member writes → early writeback of closed files (./sync-tree EarlyWriteback).
 *
 * Why not a stream per member (scanTar): a Readable per member, a Node stream hop per 64 KiB chunk
 * and one awaited write per chunk made the restore spend most of its time in promise and stream
 * machinery, with reading, hashing and writing strictly taking turns. Here every file is its own
 * chain of operations on the libuv thread pool (open, positional writes of up to WRITE_BATCH bytes,
 * close), several files in flight at once, while the main thread goes on reading, hashing and
 * parsing. Memory stays bounded: at most MAX_IN_FLIGHT_BYTES of member data waits for its write
 * (the loop stops pulling input until writes drain) and at most MAX_OPEN_FILES files are open.
 *
 * Files are not fsynced here: restoreBackup makes the tree durable with syncTree (./sync-tree)
 * before the restore counts as complete. The object's sha256 and size are checked against the
 * catalog once the whole object is read; a mismatch is IntegrityError INTEGRITY_CHECKSUM_MISMATCH.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, symlink, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { Readable, type Transform } from 'node:stream';
import { AbortError, IntegrityError, isPgarkError, throwIfAborted } from '../errors';
import type { Storage } from '../storage/storage';
import { writevAll } from '../storage/fs-io';
import type { CatalogObject } from '../archive/backup-catalog';
import { TarChunkParser, type TarHeaderInfo, type TarParseEvent } from '../archive/tar-scan';
import { compressionFromFileName, createDecompressStream } from '../archive/compression';
import { WorkerSha256 } from './sha256-worker';
import { EarlyWriteback } from './sync-tree';

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/** Read size asked of the storage: 16x fewer chunks (and hops, hash calls, writes) than a 64 KiB default. */
export const RESTORE_READ_BYTES = 1024 * 1024;
/** Member data handed to one write call (slices of several chunks go out as one writev). */
const WRITE_BATCH = 1024 * 1024;
/** Member data read but not yet written: the input is not pulled beyond this. */
const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** Files open at once (a data directory has thousands of small files). */
const MAX_OPEN_FILES = 32;
/** Files from this size on are handed to EarlyWriteback once closed (./sync-tree). */
const EARLY_WRITEBACK_MIN_BYTES = 1024 * 1024;
/** Objects from this size on are hashed on a worker thread (./sha256-worker); smaller ones inline. */
export const MIN_WORKER_HASH_BYTES = 32 * 1024 * 1024;

/** Resolves a member name under root, refusing absolute names and `..` (a hostile archive must not escape). */
export function safeJoin(root: string, name: string): string {
  const p = resolve(root, name);
  if (isAbsolute(name) || (p !== root && !p.startsWith(root + sep))) {
    throw new IntegrityError(
      'INTEGRITY_ARCHIVE_INVALID',
      `archive member ${JSON.stringify(name)} points outside the target`,
    );
  }
  return p;
}

/** sha256 and byte count of an object read from storage, checked against its catalog entry. */
export class ObjectCheck {
  private readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly obj: CatalogObject) {}

  update(chunk: Buffer): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  /** @throws IntegrityError INTEGRITY_CHECKSUM_MISMATCH */
  check(): void {
    checkAgainstCatalog(this.obj, this.bytes, this.hash.digest('hex'));
  }
}

/** @throws IntegrityError INTEGRITY_CHECKSUM_MISMATCH when size or sha256 differ from the catalog's. */
function checkAgainstCatalog(obj: CatalogObject, bytes: number, sha256: string): void {
  if (bytes !== obj.size || sha256 !== obj.sha256) {
    throw new IntegrityError(
      'INTEGRITY_CHECKSUM_MISMATCH',
      `object ${obj.key} does not match its catalog entry`,
      {
        key: obj.key,
        expected: `${obj.size}:${obj.sha256}`,
        actual: `${bytes}:${sha256}`,
      },
    );
  }
}

/** The check of the stored bytes: inline (ObjectCheck) or on a worker thread for large objects. */
interface StoredBytesCheck {
  /** A promise only when the caller must wait (the worker's ring is full). */
  update(chunk: Buffer): Promise<void> | undefined;
  /** @throws IntegrityError INTEGRITY_CHECKSUM_MISMATCH */
  finish(): Promise<void>;
  close(): Promise<void>;
}

function storedBytesCheck(obj: CatalogObject): StoredBytesCheck {
  if (obj.size < MIN_WORKER_HASH_BYTES) {
    const c = new ObjectCheck(obj);
    return {
      update: (chunk) => void c.update(chunk),
      finish: async () => c.check(),
      close: async () => undefined,
    };
  }
  const w = new WorkerSha256();
  return {
    update: (chunk) => w.update(chunk),
    finish: async () => checkAgainstCatalog(obj, w.bytes, await w.digest()),
    close: () => w.close(),
  };
}

/** One file being written: open → positional writes in order → close, as one promise chain. */
interface FileJob {
  path: string;
  fh: FileHandle | undefined;
  /** Written so far (or queued). */
  position: number;
  batch: Buffer[];
  batchBytes: number;
  chain: Promise<void>;
}

/**
 * Runs the file jobs of one archive: writes overlap each other and the caller's parsing, within
 * the byte and file limits above. The first failure is kept and rethrown by `throwIfFailed`/`drain`.
 */
class MemberWriter {
  private inFlightBytes = 0;
  private readonly open = new Set<Promise<void>>();
  private readonly waiters: (() => void)[] = [];
  private failure: { error: unknown } | undefined;

  constructor(private readonly writeback: EarlyWriteback) {}

  start(path: string): FileJob {
    const job: FileJob = {
      path,
      fh: undefined,
      position: 0,
      batch: [],
      batchBytes: 0,
      chain: Promise.resolve(),
    };
    job.chain = open(path, 'wx', FILE_MODE).then((fh) => {
      job.fh = fh;
    });
    return job;
  }

  /** Queues member data; flushed as one write when WRITE_BATCH is reached or the member ends. */
  data(job: FileJob, data: Buffer): void {
    job.batch.push(data);
    job.batchBytes += data.length;
    this.inFlightBytes += data.length;
    if (job.batchBytes >= WRITE_BATCH) this.flush(job);
  }

  private flush(job: FileJob): void {
    if (job.batchBytes === 0) return;
    const bufs = job.batch;
    const bytes = job.batchBytes;
    const position = job.position;
    job.batch = [];
    job.batchBytes = 0;
    job.position += bytes;
    job.chain = job.chain
      .then(() => writevAll(job.fh!, bufs, position))
      .finally(() => {
        this.inFlightBytes -= bytes;
        this.wake();
      });
  }

  /** The member ended: last write, then close (also after a failed write: no descriptor leaks). */
  finish(job: FileJob): void {
    this.flush(job);
    const done = job.chain
      .then(
        async () => {
          await job.fh!.close();
          if (job.position >= EARLY_WRITEBACK_MIN_BYTES) this.writeback.add(job.path);
        },
        async (e: unknown) => {
          await job.fh?.close().catch(() => undefined);
          throw e;
        },
      )
      .catch((e: unknown) => {
        this.failure ??= { error: e };
      })
      .finally(() => {
        this.open.delete(done);
        this.wake();
      });
    this.open.add(done);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  /** Waits while too much data or too many files are in flight. */
  async backpressure(): Promise<void> {
    while (!this.failure && (this.inFlightBytes > MAX_IN_FLIGHT_BYTES || this.open.size >= MAX_OPEN_FILES)) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    this.throwIfFailed();
  }

  /** Waits for every file job to settle; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.open.size > 0) await Promise.allSettled([...this.open]);
    this.throwIfFailed();
  }
}

/**
 * The stored bytes of an object, in order, read RESTORE_READ_BYTES at a time where the driver takes
 * the hint. (The s3 driver reads a whole object as parallel ranged GETs itself: s3-parallel-get.ts.)
 */
async function* readObjectChunks(
  storage: Storage,
  obj: CatalogObject,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer, void, undefined> {
  const body = await storage.get(obj.key, {
    ...(signal ? { signal } : {}),
    readChunkBytes: RESTORE_READ_BYTES,
  });
  yield* body as AsyncIterable<Buffer>;
}

export interface ExtractArchiveOptions {
  signal?: AbortSignal;
  /** Decides about a symlink member (pg_tblspc/<oid>): its target, or undefined to skip it. */
  onSymlink?: (name: string, target: string) => string | undefined;
}

function decompressorFor(name: string): Transform | undefined {
  const c = compressionFromFileName(name);
  return c === 'none' ? undefined : createDecompressStream(c);
}

/**
 * Extracts one (maybe compressed) tar object into `root` and checks its sha256 against the catalog.
 * Returns the number of regular files written.
 * @throws IntegrityError INTEGRITY_CHECKSUM_MISMATCH / INTEGRITY_ARCHIVE_INVALID, StorageError, AbortError
 */
export async function extractArchive(
  storage: Storage,
  obj: CatalogObject,
  root: string,
  options: ExtractArchiveOptions = {},
): Promise<number> {
  const { signal } = options;
  const src = readObjectChunks(storage, obj, signal);
  const check = storedBytesCheck(obj);
  const dec = decompressorFor(obj.name);
  let input: AsyncIterable<Buffer>;
  if (dec) {
    // Hash the stored (compressed) bytes on their way into the decompressor.
    const hashed = (async function* () {
      for await (const chunk of src) {
        const wait = check.update(chunk);
        if (wait) await wait;
        yield chunk;
      }
    })();
    const fed = Readable.from(hashed, { objectMode: false });
    fed.on('error', (e) => dec.destroy(e));
    input = fed.pipe(dec);
  } else {
    input = src;
  }

  const parser = new TarChunkParser();
  const writeback = new EarlyWriteback();
  const writer = new MemberWriter(writeback);
  const madeDirs = new Set<string>([root]);
  const ensureDir = async (dir: string): Promise<void> => {
    if (madeDirs.has(dir)) return;
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    madeDirs.add(dir);
  };
  const events: TarParseEvent[] = [];
  let job: FileJob | undefined;
  let files = 0;
  const onHeader = async (h: TarHeaderInfo): Promise<void> => {
    if (h.name === '' || h.name === '.') return;
    const path = safeJoin(root, h.name);
    switch (h.type) {
      case 'directory':
        await ensureDir(path);
        return;
      case 'file':
        await ensureDir(dirname(path));
        job = writer.start(path);
        files++;
        return;
      case 'symlink': {
        const target = options.onSymlink ? options.onSymlink(h.name, h.linkname ?? '') : undefined;
        if (target !== undefined) {
          await ensureDir(dirname(path));
          await symlink(target, path);
        }
        return;
      }
      default:
        // The server sends only files, directories and pg_tblspc symlinks (basebackup.c sendDir).
        throw new IntegrityError(
          'INTEGRITY_ARCHIVE_INVALID',
          `unexpected tar member type ${h.type} for ${h.name}`,
        );
    }
  };
  try {
    for await (const chunk of input) {
      if (!dec) {
        const wait = check.update(chunk);
        if (wait) await wait;
      }
      if (parser.finished) continue; // read to the end: the checksum covers the whole object
      throwIfAborted(signal, `restore of ${obj.name}`);
      parser.push(chunk, events);
      for (const ev of events) {
        if (ev.kind === 'data') {
          if (job) writer.data(job, ev.data);
        } else if (ev.kind === 'header') {
          await onHeader(ev.header);
        } else {
          if (job) writer.finish(job);
          job = undefined;
        }
      }
      events.length = 0;
      writer.throwIfFailed();
      await writer.backpressure();
    }
    parser.end();
    await writer.drain();
    await writeback.stop();
  } catch (e) {
    if (job) writer.finish(job);
    await writer.drain().catch(() => undefined);
    await writeback.stop();
    void src.return(undefined).catch(() => undefined);
    dec?.destroy();
    await check.close().catch(() => undefined);
    if (signal?.aborted && !(isPgarkError(e) && e.code === 'ABORTED'))
      throw new AbortError(`restore of ${obj.name} aborted`, { cause: e });
    throw e;
  }
  await check.finish();
  return files;
}
