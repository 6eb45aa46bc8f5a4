/**
 * The `fs` storage driver: a repository in a local directory or a mounted volume (NFS, a backup
 * disk). Keys map to relative paths under `root`.
 *
 * Durability (the Storage contract in ./storage): `put` streams into a temporary file in the key's
 * own directory, fsyncs it, then renames it (or, for `ifAbsent`, link(2)s it) to the final name and
 * fsyncs the directory. A crash at any point leaves either nothing or the whole object under the
 * final name; at worst a stray temporary file, which `list` never shows. New directories are
 * fsynced into their parents so that a fsynced file cannot vanish with an unsynced directory entry.
 *
 * Temporary files are named `.<name>.tmp-<16 hex>`; a key with a segment of that shape is refused
 * (STORAGE_INVALID_KEY) so that no real key can be hidden by the listing filter.
 *
 * `ifAbsent` needs hard links (every POSIX local file system and NFS has them; a volume without
 * them, such as exFAT or some FUSE/SMB mounts, fails such puts with STORAGE_ACCESS_DENIED or
 * STORAGE_IO): there is no other atomic create-if-absent of a finished file from Node.
 *
 * Unlike S3, a directory tree cannot hold both `a` and `a/b`: putting the second gives STORAGE_IO.
 * The repository layout never does that.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { link, mkdir, open, readdir, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { AbortError, StorageError, isPgarkError, throwIfAborted } from '../errors';
import { BatchedFileWriter } from './fs-batched-writer';
import { openFsFixedSizeFile } from './fs-fixed-size-file';
import { errnoOf, fsyncDir } from './fs-io';
import { noopLogger, type Logger, type ObserveOptions } from '../observe';
import type {
  CallOptions,
  FixedSizeFile,
  FixedSizeFileOptions,
  GetOptions,
  ListOptions,
  ObjectInfo,
  PutOptions,
  PutResult,
  Storage,
} from './storage';

export interface FsStorageOptions extends ObserveOptions {
  /** The repository directory; created (with its parents) on the first `put` when missing. */
  root: string;
}

/** Mode of files and directories the driver creates (before the umask): backups hold table data. */
const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

/** Unlinks in flight during a delete of many keys. */
const DELETE_CONCURRENCY = 16;

const TEMP_NAME_RE = /^\..*\.tmp-[0-9a-f]{16}$/;

/**
 * Checks a key against the Storage contract: `/`-separated, relative, no empty, `.` or `..`
 * segment, no NUL. Throws StorageError STORAGE_INVALID_KEY.
 */
export function assertValidStorageKey(key: string): void {
  const bad = (why: string): never => {
    throw new StorageError('STORAGE_INVALID_KEY', `invalid storage key ${JSON.stringify(key)}: ${why}`, {
      key,
      hint: 'keys are relative paths of non-empty segments separated by "/", without "." or ".." segments',
    });
  };
  if (typeof key !== 'string' || key.length === 0) bad('empty');
  if (key.includes('\0')) bad('contains a nul character');
  if (key.startsWith('/')) bad('starts with "/"');
  for (const segment of key.split('/')) {
    if (segment === '') bad('empty segment');
    if (segment === '.' || segment === '..') bad(`"${segment}" segment`);
  }
}

function assertValidFsKey(key: string): void {
  assertValidStorageKey(key);
  for (const segment of key.split('/')) {
    if (TEMP_NAME_RE.test(segment)) {
      throw new StorageError(
        'STORAGE_INVALID_KEY',
        `invalid storage key ${JSON.stringify(key)}: reserved temporary name`,
        {
          key,
        },
      );
    }
  }
}

/** Maps a Node fs error to a StorageError with a stable code; PgarkErrors pass through. */
function mapFsError(err: unknown, key: string | undefined, operation: string): Error {
  if (isPgarkError(err)) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const what = key === undefined ? operation : `${operation} of ${key}`;
  if (operation === 'put' && (code === 'ENOTDIR' || code === 'EISDIR')) {
    // S3 can hold both `a` and `a/b`; a directory tree cannot.
    return new StorageError(
      'STORAGE_IO',
      `${what} failed: a key cannot be both an object and a prefix of another`,
      {
        key,
        cause: err,
        hint: 'on a directory repository a key may not be a prefix of another key followed by "/"',
      },
    );
  }
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new StorageError('STORAGE_NOT_FOUND', `${what} failed: no such key`, { key, cause: err });
    case 'EACCES':
    case 'EPERM':
      return new StorageError('STORAGE_ACCESS_DENIED', `${what} failed: permission denied`, {
        key,
        cause: err,
        hint: 'check the owner and mode of the repository directory',
      });
    case 'EROFS':
      return new StorageError('STORAGE_ACCESS_DENIED', `${what} failed: read-only file system`, {
        key,
        cause: err,
        hint: 'the repository directory is on a read-only file system',
      });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StorageError(
        'STORAGE_NO_SPACE',
        `${what} failed: no space left on device or quota exceeded`,
        {
          key,
          cause: err,
          hint: 'free space on the repository volume or raise the quota',
        },
      );
    case 'ENAMETOOLONG':
      return new StorageError('STORAGE_INVALID_KEY', `${what} failed: name too long for the file system`, {
        key,
        cause: err,
      });
    default:
      return new StorageError('STORAGE_IO', `${what} failed: ${code ?? String(err)}`, { key, cause: err });
  }
}

/**
 * mkdir -p that fsyncs the parent of every directory it creates (ext4 and xfs can otherwise lose a
 * new directory entry on a crash even after the file inside it was fsynced).
 */
async function ensureDir(path: string): Promise<void> {
  const missing: string[] = [];
  let current = path;
  for (;;) {
    try {
      const st = await stat(current);
      if (!st.isDirectory()) {
        const err = new Error(`not a directory: ${current}`) as NodeJS.ErrnoException;
        err.code = 'ENOTDIR';
        throw err;
      }
      break;
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
      missing.push(current);
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir, { mode: DIR_MODE });
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e;
    }
    await fsyncDir(dirname(dir));
  }
}

/** Compares two strings by their UTF-8 bytes, the order S3 lists keys in. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Creates the local-directory driver. See the module comment for its durability guarantees. */
export function createFsStorage(options: FsStorageOptions): Storage {
  return new FsStorage(options);
}

class FsStorage implements Storage {
  readonly kind = 'fs' as const;
  private readonly root: string;
  private readonly logger: Logger;

  constructor(options: FsStorageOptions) {
    if (typeof options?.root !== 'string' || options.root.length === 0) {
      throw new StorageError('STORAGE_INVALID_KEY', 'fs storage needs a non-empty root directory');
    }
    this.root = resolve(options.root);
    this.logger = options.logger ?? noopLogger;
  }

  describe(): string {
    return this.root;
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    assertValidFsKey(key);
    const { signal, contentLength } = options;
    throwIfAborted(signal, `put of ${key}`);
    const finalPath = this.pathOf(key);
    const dir = dirname(finalPath);
    const base = finalPath.substring(dir.length + 1);
    const tempPath = join(dir, `.${base}.tmp-${randomBytes(8).toString('hex')}`);

    let fh: FileHandle | undefined;
    let writer: BatchedFileWriter | undefined;
    let tempCreated = false;
    const onAbort = (): void => {
      if (!Buffer.isBuffer(body))
        body.destroy(new AbortError(`put of ${key} aborted`, { cause: signal?.reason }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // A concurrent delete may remove the (then empty) directory between ensureDir and open: retry once.
      for (let attempt = 0; ; attempt++) {
        await ensureDir(dir);
        try {
          fh = await open(tempPath, 'wx', FILE_MODE);
          break;
        } catch (e) {
          if (errnoOf(e) !== 'ENOENT' || attempt >= 2) throw e;
        }
      }
      tempCreated = true;

      const hash = createHash('sha256');
      let size = 0;
      const tooLong = (): StorageError =>
        new StorageError(
          'STORAGE_INCOMPLETE_UPLOAD',
          `body of ${key} is longer than its declared length ${contentLength}`,
          {
            key,
          },
        );
      if (Buffer.isBuffer(body)) {
        if (contentLength !== undefined && body.length !== contentLength) {
          throw new StorageError(
            'STORAGE_INCOMPLETE_UPLOAD',
            `body of ${key} has ${body.length} bytes, declared ${contentLength}`,
            { key },
          );
        }
        hash.update(body);
        size = body.length;
        let off = 0;
        while (off < body.length) {
          const { bytesWritten } = await fh.write(body, off, body.length - off);
          off += bytesWritten;
        }
      } else {
        // Batched writev with one batch in flight and background datasyncs (fs-batched-writer.ts).
        // The hash stays inline: hashing on a worker thread (the restore's sha256-worker) cost the
        // main thread more in copies and messages than sha256 itself once the read slabs were
        // leased (measured on a 768 MB backup: 3.3-3.4 vs 2.4-2.7 CPU s per GB).
        writer = new BatchedFileWriter(fh);
        for await (const raw of body) {
          throwIfAborted(signal, `put of ${key}`);
          const chunk: Buffer = typeof raw === 'string' ? Buffer.from(raw) : (raw as Buffer);
          size += chunk.length;
          if (contentLength !== undefined && size > contentLength) throw tooLong();
          hash.update(chunk);
          const full = writer.add(chunk);
          if (full) await full;
        }
        await writer.finish();
        if (contentLength !== undefined && size !== contentLength) {
          throw new StorageError(
            'STORAGE_INCOMPLETE_UPLOAD',
            `body of ${key} ended after ${size} bytes, declared ${contentLength}`,
            { key },
          );
        }
      }
      throwIfAborted(signal, `put of ${key}`);
      await fh.sync();
      await fh.close();
      fh = undefined;
      throwIfAborted(signal, `put of ${key}`);

      if (options.ifAbsent) {
        try {
          await link(tempPath, finalPath);
        } catch (e) {
          if (errnoOf(e) === 'EEXIST') {
            throw new StorageError('STORAGE_CONFLICT', `${key} already exists`, { key, cause: e });
          }
          throw e;
        }
        await unlink(tempPath);
        tempCreated = false;
      } else {
        await rename(tempPath, finalPath);
        tempCreated = false;
      }
      await fsyncDir(dir);
      this.logger.debug('fs put', { key, size });
      return { key, size, sha256: hash.digest('hex') };
    } catch (e) {
      await writer?.settle();
      if (fh) await fh.close().catch(() => undefined);
      if (tempCreated) await unlink(tempPath).catch(() => undefined);
      if (signal?.aborted && !(e instanceof AbortError)) {
        throw new AbortError(`put of ${key} aborted`, { cause: signal.reason });
      }
      if (e instanceof Error && e.name === 'AbortError' && !isPgarkError(e)) {
        throw new AbortError(`put of ${key} aborted`, { cause: e });
      }
      throw mapFsError(e, key, 'put');
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    assertValidFsKey(key);
    const { signal, range } = options;
    throwIfAborted(signal, `get of ${key}`);
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.pathOf(key), 'r');
      const st = await fh.stat();
      if (!st.isFile()) {
        throw new StorageError('STORAGE_NOT_FOUND', `get of ${key} failed: no such key`, { key });
      }
      let start: number | undefined;
      let end: number | undefined;
      if (range) {
        start = range.start;
        end = range.end === undefined ? st.size - 1 : Math.min(range.end, st.size - 1);
        if (
          !Number.isSafeInteger(start) ||
          start < 0 ||
          start >= st.size ||
          (range.end !== undefined && (!Number.isSafeInteger(range.end) || range.end < start))
        ) {
          throw new StorageError(
            'STORAGE_INVALID_RANGE',
            `range ${range.start}-${range.end ?? ''} lies outside ${key} (${st.size} bytes)`,
            { key },
          );
        }
      }
      const hwm = options.readChunkBytes;
      const stream = fh.createReadStream({
        start,
        end,
        autoClose: true,
        ...(hwm !== undefined && Number.isSafeInteger(hwm) && hwm > 0 ? { highWaterMark: hwm } : {}),
      });
      fh = undefined; // owned by the stream now
      if (signal) {
        const onAbort = (): void => {
          stream.destroy(new AbortError(`get of ${key} aborted`, { cause: signal.reason }));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      return stream;
    } catch (e) {
      if (fh) await fh.close().catch(() => undefined);
      throw mapFsError(e, key, 'get');
    }
  }

  async head(key: string, options: CallOptions = {}): Promise<ObjectInfo | undefined> {
    assertValidFsKey(key);
    throwIfAborted(options.signal, `head of ${key}`);
    let st: Stats;
    try {
      st = await stat(this.pathOf(key));
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw mapFsError(e, key, 'head');
    }
    if (!st.isFile()) return undefined;
    return { key, size: st.size, lastModified: st.mtime };
  }

  /**
   * Walks the tree in S3 order (UTF-8 bytes of the whole key): within a directory, entries are
   * sorted with `/` appended to directory names, so `a-b` < `a.c` < `a/x` as in S3. Memory holds
   * one sorted directory listing per level of the path being walked, never the whole result.
   * `pageSize` has no meaning for a directory and is ignored.
   */
  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    const { signal } = options;
    if (typeof prefix !== 'string' || prefix.includes('\0') || prefix.startsWith('/')) {
      throw new StorageError('STORAGE_INVALID_KEY', `invalid list prefix ${JSON.stringify(prefix)}`, {
        key: prefix,
      });
    }
    throwIfAborted(signal, 'list');
    // The directory part of the prefix: only keys below it can match.
    const slash = prefix.lastIndexOf('/');
    const dirPart = slash < 0 ? '' : prefix.substring(0, slash);
    if (dirPart !== '') {
      for (const segment of dirPart.split('/')) {
        // No valid key lies below such a directory.
        if (segment === '' || segment === '.' || segment === '..') return;
      }
    }
    yield* this.walk(dirPart, prefix, signal);
  }

  private async *walk(
    relDir: string,
    prefix: string,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<ObjectInfo> {
    const absDir = relDir === '' ? this.root : this.pathOf(relDir);
    let entries;
    try {
      entries = await readdir(absDir, { withFileTypes: true });
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw mapFsError(e, relDir || undefined, 'list');
    }
    const items: { name: string; sortName: string; isDir: boolean }[] = [];
    for (const entry of entries) {
      if (TEMP_NAME_RE.test(entry.name)) continue;
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const st = await stat(join(absDir, entry.name));
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue;
        }
      }
      if (!isDir && !isFile) continue;
      const key = relDir === '' ? entry.name : `${relDir}/${entry.name}`;
      if (isDir) {
        const dirKey = `${key}/`;
        // Prune directories that cannot hold a matching key.
        if (!dirKey.startsWith(prefix) && !prefix.startsWith(dirKey)) continue;
      } else if (!key.startsWith(prefix)) {
        continue;
      }
      items.push({ name: entry.name, sortName: isDir ? `${entry.name}/` : entry.name, isDir });
    }
    items.sort((a, b) => compareUtf8(a.sortName, b.sortName));
    for (const item of items) {
      throwIfAborted(signal, 'list');
      const key = relDir === '' ? item.name : `${relDir}/${item.name}`;
      if (item.isDir) {
        yield* this.walk(key, prefix, signal);
        continue;
      }
      let st: Stats;
      try {
        st = await stat(this.pathOf(key));
      } catch (e) {
        if (errnoOf(e) === 'ENOENT') continue; // deleted while listing
        throw mapFsError(e, key, 'list');
      }
      yield { key, size: st.size, lastModified: st.mtime };
    }
  }

  async delete(keys: readonly string[], options: CallOptions = {}): Promise<void> {
    for (const key of keys) assertValidFsKey(key);
    const dirs = new Set<string>();
    const deleteOne = async (key: string): Promise<void> => {
      throwIfAborted(options.signal, 'delete');
      const path = this.pathOf(key);
      try {
        await unlink(path);
        dirs.add(dirname(path));
      } catch (e) {
        const code = errnoOf(e);
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        // unlink of a directory: not a key, nothing to delete (S3 semantics).
        if (code === 'EISDIR' || (code === 'EPERM' && (await isDirectory(path)))) return;
        throw mapFsError(e, key, 'delete');
      }
    };
    // A few unlinks in flight: each waits on the file system's journal, not on the CPU.
    let next = 0;
    const unique = [...new Set(keys)];
    await Promise.all(
      Array.from({ length: Math.min(DELETE_CONCURRENCY, unique.length) }, async () => {
        while (next < unique.length) await deleteOne(unique[next++]!);
      }),
    );
    // Remove directories the delete emptied, deepest first, never the root. Best effort: a
    // concurrent put re-creates its directory (see put).
    const sorted = [...dirs].sort((a, b) => b.length - a.length);
    for (let dir of sorted) {
      while (dir !== this.root && dir.startsWith(this.root + '/')) {
        try {
          await rmdir(dir);
        } catch {
          break;
        }
        dir = dirname(dir);
      }
    }
  }

  async close(): Promise<void> {
    // Nothing held open between calls.
  }

  /** In-place writes of a zero-filled file of a fixed size: see ./fs-fixed-size-file. */
  openFixedSizeFile(key: string, sizeBytes: number, options?: FixedSizeFileOptions): Promise<FixedSizeFile> {
    return openFsFixedSizeFile(
      { pathOf: (k) => this.pathOf(k), assertKey: assertValidFsKey, ensureDir, mapError: mapFsError },
      key,
      sizeBytes,
      options,
    );
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
