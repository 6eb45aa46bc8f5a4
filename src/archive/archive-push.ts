/**
 * archive-push: stores one file PostgreSQL hands to `archive_command` (`%p`) in the repository,
 * under the same keys the streaming archiver uses (repo-layout.ts), so that both archivers can feed
 * one stanza and a segment archived twice is one object.
 *
 * PostgreSQL removes or recycles the file as soon as archive_command exits 0 (pgarch.c,
 * pgarch_archiveXlog), so success is reported only after Storage.put resolved, which the Storage
 * contract defines as durable. PostgreSQL may run the command again for a file it already archived
 * (a crash between the command's exit and the .done rename), hence: a present object with the same
 * bytes is success; with other bytes it is refused (IntegrityError INTEGRITY_WAL_CONFLICT), which
 * is how two clusters writing one stanza after a split-brain show up.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { ConfigError, IntegrityError, isPgarkError, throwIfAborted } from '../errors';
import {
  classifyWalFileName,
  formatLsn,
  isValidWalSegmentSize,
  isWalFileName,
  parseTimelineHistory,
  parseWalFileName,
  segmentStartLsn,
  timelineOfHistoryFile,
  type WalFileKind,
} from '../lsn';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import type { Storage } from '../storage/storage';
import { pgMajorForWalMagic, readWalPageHeader, WalSegmentCheckStream } from './wal-segment';
import { findWalSegmentObject, openWalObject, sha256OfStream } from './archive-wal-object';
import { walBackupHistoryKey, walHistoryKey, walPartialKey, walSegmentKey } from './repo-layout';
import { openRepository, type Stanza } from './repository';

/** History and backup-history files are a few kB; a larger one is not what its name says. */
const MAX_SMALL_FILE_BYTES = 16 * 1024 * 1024;

export interface ArchivePushOptions extends ObserveOptions {
  /** The repository storage (fs or s3). */
  storage: Storage;
  /** The stanza (one per cluster). Created by the first segment pushed when absent. */
  stanza: string;
  /**
   * The file to archive: archive_command's `%p`, relative to the data directory (the server runs the
   * command there) or absolute. Its base name must be a WAL segment, `.partial`, `.history` or
   * `.backup` file name.
   */
  walPath: string;
  /**
   * The cluster's system identifier (decimal string). When given, a file of another cluster is
   * refused even before the stanza exists. @default taken from the segment's long page header
   */
  systemIdentifier?: string;
  signal?: AbortSignal;
}

export interface ArchivePushResult {
  walName: string;
  kind: WalFileKind;
  /** The repository key of the archived object. */
  key: string;
  size: number;
  /** sha256 of the file, lower-case hex. */
  sha256: string;
  /** True when the repository already held the same bytes (a repeated archive_command run). */
  alreadyArchived: boolean;
}

/**
 * Archives one WAL file (archive_command). Segments are checked while they stream to storage:
 * exact segment size, long page header (system identifier, segment size, page magic) and every
 * page's address and timeline; the stanza is created on the first push from that header and a
 * segment of another cluster is refused. Uploads are create-only (`ifAbsent`).
 *
 * Durability: resolves only when the object is durable in storage (Storage.put); then PostgreSQL may
 * delete the file.
 *
 * @throws IntegrityError INTEGRITY_WAL_CONFLICT when the repository holds different bytes under the
 *   same name; INTEGRITY_WAL_INVALID for a file that is not a whole valid segment (or not a valid
 *   history file); INTEGRITY_SYSTEM_ID_MISMATCH for a file of another cluster.
 *   ConfigError CONFIG_INVALID_WAL_NAME for a name that is no WAL file, CONFIG_INVALID_OPTION when
 *   the file cannot be read. StorageError from the store. AbortError.
 * @example
 * // archive_command = 'pgark archive-push %p --repo /var/lib/pgark --stanza main'
 * const r = await archivePush({ storage, stanza: 'main', walPath: 'pg_wal/000000010000000000000003' });
 * console.log(r.key, r.alreadyArchived);
 */
export async function archivePush(options: ArchivePushOptions): Promise<ArchivePushResult> {
  const { storage, stanza, walPath, signal } = options;
  const logger = options.logger ?? noopLogger;
  const walName = basename(walPath);
  const kind = classifyWalFileName(walName);
  throwIfAborted(signal, `archive-push of ${walName}`);

  const fileSize = await sizeOf(walPath);
  const stanzaObj = await openStanzaFor(options, kind, walName);
  const info = stanzaObj.info;

  let key: string;
  let body: Readable;
  let check: WalSegmentCheckStream | undefined;
  let localSha: string | undefined;
  if (kind === 'segment' || kind === 'partial') {
    if (fileSize !== info.walSegmentSize) {
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `${walPath} holds ${fileSize} bytes, not a whole segment of ${info.walSegmentSize}`,
        {
          expected: String(info.walSegmentSize),
          actual: String(fileSize),
        },
      );
    }
  }
  if (kind === 'segment') {
    key = walSegmentKey(stanza, walName);
    // A copy may exist already, possibly compressed by the streaming archiver (another key).
    const existing = await findWalSegmentObject(storage, stanza, walName, { signal });
    if (existing) {
      localSha = (await sha256OfStream(createReadStream(walPath))).sha256;
      return compareWithExisting(
        options,
        { walName, kind, key: existing.key, size: fileSize, sha256: localSha },
        existing.compression,
      );
    }
    check = new WalSegmentCheckStream({
      expectedName: walName,
      segmentSize: info.walSegmentSize,
      systemIdentifier: info.systemIdentifier,
      pgMajor: info.pgMajor,
    });
    const file = createReadStream(walPath);
    file.on('error', (e) => check!.destroy(e));
    check.on('close', () => file.destroy());
    // The driver may start reading only after it has opened its side (a temp file, an upload), and
    // the bytes already flow into the check: keep a failure of the check from being an unhandled
    // 'error' event until then. The driver still sees it: iterating an errored stream throws.
    check.on('error', () => undefined);
    body = file.pipe(check);
  } else if (kind === 'partial') {
    key = walPartialKey(stanza, walName.substring(0, walName.length - '.partial'.length));
    body = createReadStream(walPath);
  } else {
    if (fileSize > MAX_SMALL_FILE_BYTES) {
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `${walPath} is ${fileSize} bytes, too large for a ${kind} file`,
      );
    }
    const bytes = await readSmall(walPath);
    if (kind === 'history') {
      key = walHistoryKey(stanza, timelineOfHistoryFile(walName));
      try {
        parseTimelineHistory(bytes);
      } catch (e) {
        throw new IntegrityError('INTEGRITY_WAL_INVALID', `${walPath} is not a valid timeline history file`, {
          cause: e,
        });
      }
    } else {
      key = walBackupHistoryKey(stanza, walName);
    }
    localSha = createHash('sha256').update(bytes).digest('hex');
    const pass = new PassThrough();
    pass.end(bytes);
    body = pass;
  }

  try {
    const put = await storage.put(key, body, { ifAbsent: true, contentLength: fileSize, signal });
    const result: ArchivePushResult = {
      walName,
      kind,
      key,
      size: put.size,
      sha256: put.sha256,
      alreadyArchived: false,
    };
    if (check) check.result(); // the stream ended cleanly, so every page passed; throws otherwise
    logger.info('wal file archived', { walName, key, size: put.size });
    emitDurable(options, result, info.walSegmentSize);
    return result;
  } catch (e) {
    body.destroy();
    if (!(isPgarkError(e) && e.code === 'STORAGE_CONFLICT')) throw e;
    // Another run (or the streaming archiver) stored the key first: same bytes → done.
    localSha ??= (await sha256OfStream(createReadStream(walPath))).sha256;
    return compareWithExisting(options, { walName, kind, key, size: fileSize, sha256: localSha }, undefined);
  }
}

async function compareWithExisting(
  options: ArchivePushOptions,
  local: Omit<ArchivePushResult, 'alreadyArchived'>,
  compression: Parameters<typeof openWalObject>[2],
): Promise<ArchivePushResult> {
  const { storage, signal } = options;
  const stored = await sha256OfStream(await openWalObject(storage, local.key, compression, { signal }));
  if (stored.sha256 !== local.sha256) {
    throw new IntegrityError(
      'INTEGRITY_WAL_CONFLICT',
      `wal file ${local.walName} already exists in the repository with different content`,
      {
        key: local.key,
        expected: stored.sha256,
        actual: local.sha256,
        hint: 'another cluster (or a promoted standby after a split-brain) archived a different file of this name into the stanza; find out which history is right before archiving more',
      },
    );
  }
  (options.logger ?? noopLogger).info('wal file already archived with the same content', {
    walName: local.walName,
    key: local.key,
  });
  const result = { ...local, alreadyArchived: true };
  emitDurable(options, result, undefined);
  return result;
}

function emitDurable(
  options: ArchivePushOptions,
  r: ArchivePushResult,
  segmentSize: number | undefined,
): void {
  emit(options, {
    type: 'wal.archive.pushed',
    walName: r.walName,
    kind: r.kind,
    key: r.key,
    bytes: r.size,
    alreadyArchived: r.alreadyArchived,
  });
  if (r.kind === 'segment' && segmentSize !== undefined) {
    const { segno } = parseWalFileName(r.walName, segmentSize);
    emit(options, {
      type: 'wal.segment.durable',
      walName: r.walName,
      key: r.key,
      flushedLsn: formatLsn(segmentStartLsn(segno + 1n, segmentSize)),
    });
  } else if (r.kind === 'history') {
    emit(options, { type: 'wal.history.durable', timeline: timelineOfHistoryFile(r.walName), key: r.key });
  }
}

/**
 * Opens the stanza, creating it from a segment's header on the first push. A history or backup-history
 * file pushed into a stanza that does not exist yet (a promoted cluster archives its new timeline's
 * history file first: pgarch.c gives history files priority) takes the cluster's identity from a
 * segment lying next to it in pg_wal.
 */
async function openStanzaFor(
  options: ArchivePushOptions,
  kind: WalFileKind,
  walName: string,
): Promise<Stanza> {
  const { storage, stanza, walPath, signal } = options;
  let identity: WalSegmentIdentity | undefined;
  if (kind === 'segment' || kind === 'partial') {
    identity = readWalSegmentIdentity(await readHead(walPath, 40), walName);
  }
  if (
    identity &&
    options.systemIdentifier !== undefined &&
    identity.systemIdentifier !== options.systemIdentifier
  ) {
    throw new IntegrityError(
      'INTEGRITY_SYSTEM_ID_MISMATCH',
      `wal file ${walName} belongs to the cluster with system identifier ${identity.systemIdentifier}`,
      {
        expected: options.systemIdentifier,
        actual: identity.systemIdentifier,
      },
    );
  }
  const repo = await openRepository(storage, { create: true, signal });
  if (!identity) {
    try {
      return await repo.openStanza(stanza, { systemIdentifier: options.systemIdentifier, signal });
    } catch (e) {
      if (!(isPgarkError(e) && e.code === 'STORAGE_NOT_FOUND')) throw e;
    }
    identity = await identityFromSiblings(dirname(walPath));
    if (options.systemIdentifier !== undefined && identity.systemIdentifier !== options.systemIdentifier) {
      throw new IntegrityError(
        'INTEGRITY_SYSTEM_ID_MISMATCH',
        `the wal files next to ${walName} belong to the cluster with system identifier ${identity.systemIdentifier}`,
        {
          expected: options.systemIdentifier,
          actual: identity.systemIdentifier,
        },
      );
    }
  }
  return repo.openStanza(stanza, {
    create: true,
    systemIdentifier: identity.systemIdentifier,
    pgMajor: identity.pgMajor,
    walSegmentSize: identity.walSegmentSize,
    signal,
  });
}

/** What a segment's long page header says about its cluster. */
interface WalSegmentIdentity {
  systemIdentifier: string;
  pgMajor: number;
  walSegmentSize: number;
}

function readWalSegmentIdentity(head: Buffer, walName: string): WalSegmentIdentity {
  const h = readWalPageHeader(head);
  const invalid = (why: string): never => {
    throw new IntegrityError(
      'INTEGRITY_WAL_INVALID',
      `wal file ${walName} is not a valid wal segment: ${why}`,
    );
  };
  if (h.sysid === undefined || h.segSize === undefined) return invalid('its first page has no long header');
  const pgMajor = pgMajorForWalMagic(h.magic);
  if (pgMajor === undefined) return invalid(`unknown page magic 0x${h.magic.toString(16)}`);
  if (!isValidWalSegmentSize(h.segSize)) return invalid(`invalid segment size ${h.segSize} in its header`);
  return { systemIdentifier: h.sysid, pgMajor, walSegmentSize: h.segSize };
}

async function identityFromSiblings(dir: string): Promise<WalSegmentIdentity> {
  let names: string[] = [];
  try {
    names = (await readdir(dir)).filter(isWalFileName).sort().reverse();
  } catch {
    /* fall through to the error below */
  }
  for (const name of names) {
    try {
      return readWalSegmentIdentity(await readHead(join(dir, name), 40), name);
    } catch {
      /* a segment being initialised: try an older one */
    }
  }
  throw new ConfigError(
    'CONFIG_INVALID_OPTION',
    `the stanza does not exist yet and no wal segment in ${dir} tells the cluster's identity`,
    {
      hint: 'archive a wal segment first, or pass the system identifier',
    },
  );
}

async function sizeOf(path: string): Promise<number> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ConfigError('CONFIG_INVALID_OPTION', `${path} is not a regular file`);
    return st.size;
  } catch (e) {
    if (isPgarkError(e)) throw e;
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `cannot read wal file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { cause: e },
    );
  }
}

async function readHead(path: string, bytes: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function readSmall(path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(path) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}
