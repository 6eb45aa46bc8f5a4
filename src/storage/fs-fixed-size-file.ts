/**
 * A file of a fixed size in a directory repository, written in place: the `fs` driver's optional
 * `openFixedSizeFile` capability (see ./storage). One job: give a writer pg_receivewal's cost per
 * flush, a `pwrite` + `fdatasync` of an already allocated file whose size never changes, so that a
 * flush changes no metadata (no journal commit on ext4/xfs), where a `put` costs a new file, a
 * rename and a directory fsync.
 *
 * How pg_receivewal does it (src/bin/pg_basebackup/walmethods.c dir_open_for_write with
 * pad_to_size, receivelog.c): the `.partial` file is created zero-filled to the full segment size,
 * fsynced with its directory, and then only overwritten. We do the same:
 *
 * - create: a temporary file `.<name>.tmp-<hex>` (never listed) gets `initial` then zeros up to the
 *   size, is fsynced, then link(2)ed to its key (create-only) and the directory is fsynced; the key
 *   therefore always shows a file of the full size (zeros or written bytes), never a short one.
 *   Node has no fallocate(2); writing zeros also makes the blocks "written" rather than "unwritten
 *   extents", so a later overwrite + fdatasync needs no extent conversion (no journal commit).
 * - open existing: the same key of the same size is opened for writing as it is (a restart);
 *   another size is STORAGE_CONFLICT.
 * - `writeDurably(data, offset)`: pwrite until all bytes are written, then fdatasync. Resolves only
 *   once the bytes are durable. After a failure the caller must assume nothing since the last
 *   success is durable (Linux may drop dirty pages after a failed fsync) and rewrite them.
 * - `publish(finalKey)`: fdatasync, close, link(2) to `finalKey` (create-only: an existing key is
 *   STORAGE_CONFLICT and the file stays), unlink the old name, fsync the directories.
 *
 * The size of such a file tells nothing about how much of it is written: that is the caller's
 * bookkeeping (see docs/design-wal.md, "Synchronous mode on a directory").
 */
import { randomBytes } from 'node:crypto';
import { fdatasyncSync, writeSync } from 'node:fs';
import { link, open, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { StorageError, throwIfAborted } from '../errors';
import { errnoOf, fsyncDir, writevAll } from './fs-io';
import type { FixedSizeFile, FixedSizeFileOptions } from './storage';

/** What the fs driver lends this module (its key checks, paths and error mapping). */
export interface FsFixedSizeFileDeps {
  pathOf(key: string): string;
  assertKey(key: string): void;
  ensureDir(dir: string): Promise<void>;
  mapError(err: unknown, key: string | undefined, operation: string): Error;
}

const FILE_MODE = 0o640;
/** Zeros are written in pieces of this size (one buffer, reused). */
const ZERO_PIECE_BYTES = 1024 * 1024;

/** Opens (creating it zero-filled when absent) the fixed-size file of `key`. */
export async function openFsFixedSizeFile(
  deps: FsFixedSizeFileDeps,
  key: string,
  sizeBytes: number,
  options: FixedSizeFileOptions = {},
): Promise<FixedSizeFile> {
  deps.assertKey(key);
  throwIfAborted(options.signal, `open of ${key}`);
  const initial = options.initial;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || (initial && initial.length > sizeBytes)) {
    throw new StorageError('STORAGE_INVALID_RANGE', `invalid fixed size ${sizeBytes} for ${key}`, { key });
  }
  const path = deps.pathOf(key);
  const dir = dirname(path);
  let fh: FileHandle | undefined;
  let existed = false;
  try {
    try {
      fh = await open(path, 'r+');
      existed = true;
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
    if (fh) {
      const st = await fh.stat();
      if (!st.isFile() || st.size !== sizeBytes) {
        throw new StorageError(
          'STORAGE_CONFLICT',
          `${key} exists with ${st.size} bytes, not the fixed size ${sizeBytes}`,
          { key },
        );
      }
      // A previous writer may have been killed before its directory fsync.
      await fsyncDir(dir);
    } else {
      fh = await createZeroFilled(deps, key, path, sizeBytes, initial);
    }
  } catch (e) {
    await fh?.close().catch(() => undefined);
    throw deps.mapError(e, key, 'open');
  }
  return new FsFixedSizeFile(deps, key, path, sizeBytes, existed, fh, options.blocking === true);
}

async function createZeroFilled(
  deps: FsFixedSizeFileDeps,
  key: string,
  path: string,
  sizeBytes: number,
  initial: Buffer | undefined,
): Promise<FileHandle> {
  const dir = dirname(path);
  const tempPath = join(dir, `.${path.substring(dir.length + 1)}.tmp-${randomBytes(8).toString('hex')}`);
  await deps.ensureDir(dir);
  const fh = await open(tempPath, 'wx+', FILE_MODE);
  let linked = false;
  try {
    let pos = 0;
    if (initial && initial.length) {
      await writevAll(fh, [initial], 0);
      pos = initial.length;
    }
    const zeros = Buffer.alloc(Math.min(ZERO_PIECE_BYTES, sizeBytes));
    while (pos < sizeBytes) {
      const n = Math.min(zeros.length, sizeBytes - pos);
      await writevAll(fh, [zeros.subarray(0, n)], pos);
      pos += n;
    }
    await fh.sync();
    try {
      await link(tempPath, path);
    } catch (e) {
      if (errnoOf(e) === 'EEXIST') {
        throw new StorageError('STORAGE_CONFLICT', `${key} appeared while it was being created`, {
          key,
          cause: e,
        });
      }
      throw e;
    }
    linked = true;
    await unlink(tempPath);
    await fsyncDir(dir);
    return fh;
  } catch (e) {
    await fh.close().catch(() => undefined);
    if (!linked) await unlink(tempPath).catch(() => undefined);
    throw e;
  }
}

class FsFixedSizeFile implements FixedSizeFile {
  private fh: FileHandle | undefined;
  readonly writeDurablySync?: (data: Buffer, offset: number) => void;

  constructor(
    private readonly deps: FsFixedSizeFileDeps,
    readonly key: string,
    private readonly path: string,
    readonly sizeBytes: number,
    readonly existed: boolean,
    fh: FileHandle,
    private readonly blocking: boolean,
  ) {
    this.fh = fh;
    if (blocking) this.writeDurablySync = (data, offset) => this.writeOnThisThread(data, offset);
  }

  private handle(operation: string): FileHandle {
    if (!this.fh) {
      throw new StorageError('STORAGE_IO', `${operation} of ${this.key} failed: the file is closed`, {
        key: this.key,
      });
    }
    return this.fh;
  }

  async writeDurably(data: Buffer, offset: number): Promise<void> {
    if (this.blocking) return this.writeOnThisThread(data, offset);
    this.checkRange(data, offset);
    const fh = this.handle('write');
    try {
      await writevAll(fh, [data], offset);
      await fh.datasync();
    } catch (e) {
      throw this.deps.mapError(e, this.key, 'write');
    }
  }

  /** pwrite until all is written, then fdatasync, on this thread: see FixedSizeFileOptions.blocking. */
  private writeOnThisThread(data: Buffer, offset: number): void {
    this.checkRange(data, offset);
    const fh = this.handle('write');
    try {
      for (let off = 0; off < data.length;)
        off += writeSync(fh.fd, data, off, data.length - off, offset + off);
      fdatasyncSync(fh.fd);
    } catch (e) {
      throw this.deps.mapError(e, this.key, 'write');
    }
  }

  private checkRange(data: Buffer, offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > this.sizeBytes) {
      throw new StorageError(
        'STORAGE_INVALID_RANGE',
        `write of ${data.length} bytes at ${offset} lies outside ${this.key} (${this.sizeBytes} bytes)`,
        { key: this.key },
      );
    }
  }

  async publish(finalKey: string): Promise<void> {
    this.deps.assertKey(finalKey);
    const fh = this.handle('publish');
    const finalPath = this.deps.pathOf(finalKey);
    try {
      await fh.datasync();
      await fh.close();
      this.fh = undefined;
      await this.deps.ensureDir(dirname(finalPath));
      try {
        await link(this.path, finalPath);
      } catch (e) {
        if (errnoOf(e) === 'EEXIST') {
          throw new StorageError('STORAGE_CONFLICT', `${finalKey} already exists`, {
            key: finalKey,
            cause: e,
          });
        }
        throw e;
      }
      await unlink(this.path);
      await fsyncDir(dirname(finalPath));
      if (dirname(finalPath) !== dirname(this.path)) await fsyncDir(dirname(this.path));
    } catch (e) {
      await this.close();
      throw this.deps.mapError(e, finalKey, 'publish');
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
  }
}
