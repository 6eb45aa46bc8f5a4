/**
 * Minimal restore of a base backup into an empty directory (protocol notes §7.2): base.tar into the
 * data directory, each `<oid>.tar` into its (possibly remapped) tablespace directory, the WAL the
 * backup carries into pg_wal, and the server's backup_manifest beside them as pg_basebackup's
 * plain format leaves it. backup_label is kept (deleting it would silently corrupt the cluster).
 *
 * Everything streams: storage → sha256 check → decompression → tar reader → file, one member at a
 * time; nothing is buffered whole. Every object's sha256 is checked against the catalog entry.
 *
 * The full restore (recovery targets, restore_command, standby set-up) grows from this in src/restore:
 * the steps are separate functions (checkTarget, extractArchive, placeWal) so that it can reuse them.
 */
import { createHash } from 'node:crypto';
import { lchown, mkdir, open, readdir, rm, stat, symlink, writeFile, lstat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { AbortError, ConfigError, IntegrityError, RestoreError, isPgarkError, throwIfAborted } from '../errors';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import type { Storage } from '../storage/storage';
import { openRepository } from '../archive/repository';
import { readBackupCatalogEntry, type BackupCatalogEntry, type CatalogObject } from '../archive/backup-catalog';
import { scanTar } from '../archive/tar-scan';
import { compressionFromFileName, createDecompressStream } from '../archive/compression';
import { isWalFileName } from '../lsn';

export interface RestoreBackupOptions extends ObserveOptions {
  storage: Storage;
  /** An empty or missing directory; created with mode 0700. */
  targetDir: string;
  /** @default 'main' */
  stanza?: string;
  /** A backup id, or 'latest'. @default 'latest' */
  backupId?: string;
  /**
   * New locations of tablespaces, by OID (or by their original location). Tablespaces not listed
   * are restored to their original location, which must then be empty or missing.
   */
  tablespaceMapping?: Record<string, string>;
  /** Owner of everything restored (the server's OS user) when running as root. */
  owner?: { uid: number; gid: number };
  signal?: AbortSignal;
}

export interface RestoreBackupResult {
  backupId: string;
  targetDir: string;
  /** Where each tablespace was restored. */
  tablespaces: { oid: number; location: string }[];
  /** Bytes read from storage. */
  bytes: number;
  entry: BackupCatalogEntry;
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** Checks that a target directory is missing or empty. @throws RestoreError RESTORE_TARGET_NOT_EMPTY / RESTORE_TARGET_IN_USE */
export async function checkRestoreTarget(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new RestoreError('RESTORE_TARGET_NOT_EMPTY', `restore target ${dir} exists and is not a directory`);
    }
    throw new RestoreError('RESTORE_TARGET_NOT_EMPTY', `restore target ${dir} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  if (names.includes('postmaster.pid')) {
    throw new RestoreError('RESTORE_TARGET_IN_USE', `restore target ${dir} holds a running (or crashed) server's postmaster.pid`);
  }
  if (names.length > 0) {
    throw new RestoreError('RESTORE_TARGET_NOT_EMPTY', `restore target ${dir} is not empty`, { hint: 'restore into an empty or missing directory' });
  }
}

/** Escapes a path for tablespace_map as do_pg_backup_start does (`\`, `\n`, `\r` prefixed with `\`). */
export function escapeTablespaceMapPath(path: string): string {
  return path.replace(/[\\\n\r]/g, (c) => `\\${c}`);
}

/** A pass-through that computes sha256 and byte count of what flows through it. */
function hashing(): Transform & { digest(): string; bytes: number } {
  const h = createHash('sha256');
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      (t as unknown as { bytes: number }).bytes += chunk.length;
      cb(null, chunk);
    },
  }) as Transform & { digest(): string; bytes: number };
  t.bytes = 0;
  t.digest = () => h.digest('hex');
  return t;
}

function decompressorFor(name: string): Transform | undefined {
  const c = compressionFromFileName(name);
  return c === 'none' ? undefined : createDecompressStream(c);
}

/** Resolves a member name under root, refusing absolute names and `..` (a hostile archive must not escape). */
function safeJoin(root: string, name: string): string {
  const p = resolve(root, name);
  if (isAbsolute(name) || (p !== root && !p.startsWith(root + sep))) {
    throw new IntegrityError('INTEGRITY_ARCHIVE_INVALID', `archive member ${JSON.stringify(name)} points outside the target`);
  }
  return p;
}

async function writeFileStream(path: string, body: AsyncIterable<Buffer> | Buffer): Promise<number> {
  const fh = await open(path, 'wx', FILE_MODE);
  let n = 0;
  try {
    if (Buffer.isBuffer(body)) {
      await fh.write(body);
      n = body.length;
    } else {
      for await (const chunk of body) {
        await fh.write(chunk);
        n += chunk.length;
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return n;
}

/** Reads an object, checking its sha256 against the catalog when the stream ends. */
async function readVerified(storage: Storage, obj: CatalogObject, signal: AbortSignal | undefined): Promise<{ stream: Readable; check: () => void }> {
  const src = await storage.get(obj.key, { signal });
  const h = hashing();
  src.on('error', (e) => h.destroy(e));
  src.pipe(h);
  return {
    stream: h,
    check: () => {
      const actual = h.digest();
      if (h.bytes !== obj.size || actual !== obj.sha256) {
        throw new IntegrityError('INTEGRITY_CHECKSUM_MISMATCH', `object ${obj.key} does not match its catalog entry`, {
          key: obj.key,
          expected: `${obj.size}:${obj.sha256}`,
          actual: `${h.bytes}:${actual}`,
        });
      }
    },
  };
}

/**
 * Extracts one (maybe compressed) tar object into `root`. Returns the names of the members written.
 * `onSymlink` decides about symlink members (pg_tblspc/<oid> when no tablespace_map was requested).
 */
export async function extractArchive(
  storage: Storage,
  obj: CatalogObject,
  root: string,
  options: { signal?: AbortSignal; onSymlink?: (name: string, target: string) => string | undefined },
): Promise<number> {
  const { stream, check } = await readVerified(storage, obj, options.signal);
  const dec = decompressorFor(obj.name);
  let input: Readable = stream;
  if (dec) {
    stream.on('error', (e) => dec.destroy(e));
    input = stream.pipe(dec);
  }
  let files = 0;
  for await (const m of scanTar(input, { signal: options.signal })) {
    if (m.name === '' || m.name === '.') continue;
    const path = safeJoin(root, m.name);
    switch (m.type) {
      case 'directory':
        await mkdir(path, { recursive: true, mode: DIR_MODE });
        break;
      case 'file':
        await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
        await writeFileStream(path, m.body as AsyncIterable<Buffer>);
        files++;
        break;
      case 'symlink': {
        const target = options.onSymlink ? options.onSymlink(m.name, m.linkname ?? '') : undefined;
        if (target !== undefined) {
          await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
          await symlink(target, path);
        }
        break;
      }
      default:
        // The server sends only files, directories and pg_tblspc symlinks (basebackup.c sendDir).
        throw new IntegrityError('INTEGRITY_ARCHIVE_INVALID', `unexpected tar member type ${m.type} for ${m.name}`);
    }
  }
  check();
  return files;
}

async function chownRecursive(path: string, owner: { uid: number; gid: number }): Promise<void> {
  const st = await lstat(path);
  await lchown(path, owner.uid, owner.gid);
  if (st.isDirectory()) {
    for (const name of await readdir(path)) await chownRecursive(join(path, name), owner);
  }
}

/**
 * Restores a base backup from a repository into an empty directory, ready to start with the same
 * major's server binaries (crash recovery from backup_label, replaying the WAL the backup carries).
 *
 * Errors: RestoreError RESTORE_TARGET_NOT_EMPTY, RESTORE_TARGET_IN_USE, RESTORE_BACKUP_NOT_FOUND;
 * IntegrityError INTEGRITY_CHECKSUM_MISMATCH (an object differs from its catalog entry),
 * INTEGRITY_ARCHIVE_INVALID; StorageError; AbortError. On failure the directories this call created
 * are removed.
 *
 * @example
 * ```ts
 * await restoreBackup({ storage, targetDir: '/var/lib/postgresql/16/restored', backupId: 'latest' });
 * ```
 */
export async function restoreBackup(options: RestoreBackupOptions): Promise<RestoreBackupResult> {
  const signal = options.signal;
  const logger = options.logger ?? noopLogger;
  const targetDir = resolve(options.targetDir);
  throwIfAborted(signal, 'restore');
  const repo = await openRepository(options.storage, { signal });
  const stanza = await repo.openStanza(options.stanza ?? 'main', { signal });
  const entry = await readBackupCatalogEntry(stanza, options.backupId, { signal });
  const backupId = entry.backupId;

  // Where each tablespace goes.
  const mapping = options.tablespaceMapping ?? {};
  const tablespaces = entry.tablespaces.map((t) => {
    const to = mapping[String(t.oid)] ?? mapping[t.location] ?? t.location;
    if (!isAbsolute(to)) throw new ConfigError('CONFIG_INVALID_OPTION', `tablespace ${t.oid} must map to an absolute path (got ${JSON.stringify(to)})`);
    return { oid: t.oid, original: t.location, location: resolve(to) };
  });
  await checkRestoreTarget(targetDir);
  for (const t of tablespaces) await checkRestoreTarget(t.location);

  const created: string[] = [];
  const makeDir = async (dir: string): Promise<void> => {
    const existed = await stat(dir).then(() => true, () => false);
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (!existed) created.push(dir);
  };
  emit(options, { type: 'restore.started', backupId, targetDir });
  let bytes = 0;
  try {
    await makeDir(targetDir);
    for (const t of tablespaces) await makeDir(t.location);
    for (const obj of entry.objects.filter((o) => o.kind === 'archive')) {
      throwIfAborted(signal, 'restore');
      const ts = obj.spcOid === undefined ? undefined : tablespaces.find((t) => t.oid === obj.spcOid);
      if (obj.spcOid !== undefined && !ts) {
        throw new IntegrityError('INTEGRITY_BACKUP_INCOMPLETE', `archive ${obj.name} belongs to tablespace ${obj.spcOid}, which the catalog entry does not list`);
      }
      const root = ts ? ts.location : targetDir;
      await extractArchive(options.storage, obj, root, {
        signal,
        onSymlink: (name) => {
          const m = /^pg_tblspc\/(\d+)$/.exec(name);
          const t = m ? tablespaces.find((x) => x.oid === Number(m[1])) : undefined;
          return t?.location;
        },
      });
      bytes += obj.size;
      emit(options, { type: 'restore.progress', backupId, bytesDone: bytes, bytesTotal: entry.sizes.storedBytes });
    }

    // Tablespaces: symlinks pg_tblspc/<oid> → location (pg_verifybackup walks them), and
    // tablespace_map rewritten only when a location changed (the server recreates the links from it).
    if (tablespaces.length > 0) {
      const tblspc = join(targetDir, 'pg_tblspc');
      await mkdir(tblspc, { recursive: true, mode: DIR_MODE });
      for (const t of tablespaces) {
        const link = join(tblspc, String(t.oid));
        if (!(await lstat(link).then(() => true, () => false))) await symlink(t.location, link);
      }
      if (tablespaces.some((t) => t.location !== t.original)) {
        const mapFile = join(targetDir, 'tablespace_map');
        const text = tablespaces.map((t) => `${t.oid} ${escapeTablespaceMapPath(t.location)}\n`).join('');
        await rm(mapFile, { force: true });
        await writeFileStream(mapFile, Buffer.from(text));
      }
    }

    // WAL carried as objects (wal: 'stream'): into pg_wal, marked as archived like pg_basebackup does.
    const walDir = join(targetDir, 'pg_wal');
    for (const obj of entry.objects.filter((o) => o.kind === 'wal')) {
      throwIfAborted(signal, 'restore');
      const name = obj.name.replace(/^wal\//, '');
      await mkdir(join(walDir, 'archive_status'), { recursive: true, mode: DIR_MODE });
      const { stream, check } = await readVerified(options.storage, obj, signal);
      await writeFileStream(safeJoin(walDir, name), stream);
      check();
      if (isWalFileName(name) || name.endsWith('.history')) {
        await writeFile(join(walDir, 'archive_status', `${name}.done`), '', { mode: FILE_MODE });
      }
      bytes += obj.size;
    }

    // backup_manifest beside the data, as pg_basebackup's plain format leaves it.
    const manifest = entry.objects.find((o) => o.kind === 'manifest');
    if (manifest) {
      const { stream, check } = await readVerified(options.storage, manifest, signal);
      await writeFileStream(join(targetDir, 'backup_manifest'), stream);
      check();
      bytes += manifest.size;
    }

    if (options.owner) {
      await chownRecursive(targetDir, options.owner);
      for (const t of tablespaces) await chownRecursive(t.location, options.owner);
    }
  } catch (e) {
    // Leave no half-restored directory behind (only directories this call created, or their contents).
    for (const dir of [targetDir, ...tablespaces.map((t) => t.location)]) {
      if (created.includes(dir)) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      else for (const n of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, n), { recursive: true, force: true }).catch(() => undefined);
    }
    logger.warn('restore failed', { backupId, error: isPgarkError(e) ? e.code : String(e) });
    if (signal?.aborted && !(isPgarkError(e) && e.code === 'ABORTED')) throw new AbortError('restore aborted', { cause: e });
    throw e;
  }
  emit(options, { type: 'restore.completed', backupId, targetDir, bytes });
  return { backupId, targetDir, tablespaces: tablespaces.map((t) => ({ oid: t.oid, location: t.location })), bytes, entry };
}
