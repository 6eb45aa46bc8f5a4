/**
 * runBaseBackup: a full base backup over the replication protocol, streamed into a repository.
 *
 * Order of work (and why):
 * 1. IDENTIFY_SYSTEM + wal_segment_size, then the stanza is opened (or created) with the cluster's
 *    identity, so a backup can never land in another cluster's stanza.
 * 2. WAL `stream` (default): a second replication connection creates a TEMPORARY slot with
 *    RESERVE_WAL before BASE_BACKUP (so the WAL from the backup's start cannot be removed;
 *    protocol notes §8.1) and streams it from the start LSN into `backups/<id>/wal/`.
 *    `fetch`: the server appends the WAL to base.tar (BASE_BACKUP WAL). `none`: nothing.
 * 3. BASE_BACKUP: each archive streams into its own object (s3: one multipart upload, part size
 *    planned from the server's estimate), the manifest into `backup_manifest`. Bytes flow from the
 *    socket to the store with backpressure end to end: the socket is read only when the store took
 *    the previous chunk. Without client-side compression, the socket's read slabs are leased
 *    (`leaseCopyData`): the s3 driver releases each chunk once copied into its part buffer, the fs
 *    driver once its batched write settled (storage/chunk-release.ts), and the slab is read into
 *    again instead of becoming garbage (issue 5: that resident garbage put the s3 backup over its
 *    RSS budget; on fs, 1 MiB slabs of garbage cost a full GC per 64 MiB of external memory).
 *    A compressor's input is not what the driver sees, so nobody could release it: no lease.
 * 4. Only when every object is durable, and the server finished without error, the catalog entry
 *    is written (create-only): the completion marker. On any failure or abort, every object the
 *    attempt wrote is deleted (in-flight multipart uploads are aborted by the driver), and the
 *    error says why.
 */
import type { Transform } from 'node:stream';
import { AbortError, ConfigError, ProtocolError, isPgarkError } from '../errors';
import { formatLsn, type Lsn } from '../lsn';
import { emit, noopLogger, type ObserveOptions } from '../observe';
import {
  ReplicationConnection,
  type ReplicationConnectionOptions,
} from '../connection/replication-connection';
import { identifySystem } from '../replication/identify-system';
import { getWalSegmentSize } from '../replication/show-setting';
import { createReplicationSlot } from '../replication/replication-slots';
import {
  buildBaseBackupCommand,
  assertServerCompression,
  type CompressionMethod,
  type ManifestChecksumAlgorithm,
} from '../replication/base-backup-command';
import { readBaseBackupStream } from '../replication/base-backup-stream';
import type { Storage } from '../storage/storage';
import { attachChunkRelease } from '../storage/chunk-release';
import { openRepository } from './repository';
import {
  backupArchiveKey,
  backupManifestKey,
  backupPrefix,
  makeBackupId,
  type ArchiveCompression,
} from './repo-layout';
import { ObjectUpload } from './object-upload';
import { createCompressStream } from './compression';
import { BackupWalReceiver } from './backup-wal-receiver';
import type { BackupCatalogEntry, CatalogObject } from './backup-catalog';

export type WalMethod = 'stream' | 'fetch' | 'none';

/** Compression of the archives. */
export type BackupCompression =
  | { method: 'none' }
  | {
      method: CompressionMethod;
      /**
       * `server`: the server compresses (PostgreSQL 15+, if built with the library; less network).
       * `client`: pgark compresses before storing (any server; costs pgark's CPU).
       * @default 'server' on 15+, 'client' on 14
       */
      location?: 'server' | 'client';
      level?: number;
      /** zstd, server-side only. */
      workers?: number;
    };

export interface RunBaseBackupOptions extends ObserveOptions {
  /** How to reach the server (a role with REPLICATION). */
  connection: ReplicationConnectionOptions;
  /** The repository's storage (fs or s3). */
  storage: Storage;
  /** @default 'main' */
  stanza?: string;
  /** backup_label's label. @default 'pgark base backup' */
  label?: string;
  /** CHECKPOINT 'fast' starts at once; 'spread' waits for a spread checkpoint. @default 'spread' */
  checkpoint?: 'fast' | 'spread';
  /** MAX_RATE in kB/s (32..1048576). @default unlimited */
  maxRateKbps?: number;
  /** Checksums of the server's backup_manifest. @default 'CRC32C' (the server's default) */
  manifestChecksums?: ManifestChecksumAlgorithm;
  /** Verify page checksums while reading (a failure fails the backup). @default true */
  verifyChecksums?: boolean;
  /** @default { method: 'none' } */
  compression?: BackupCompression;
  /**
   * `stream`: a second connection streams the WAL from start to end into the backup (self-contained,
   * like pg_basebackup -X stream). `fetch`: the server puts it into base.tar at the end (needs
   * wal_keep_size or archiving to keep it). `none`: rely on the WAL archive. @default 'stream'
   */
  wal?: WalMethod;
  /** Ask the server for its size estimate (reported in progress events). @default true */
  progress?: boolean;
  signal?: AbortSignal;
}

export interface BaseBackupResult {
  backupId: string;
  stanza: string;
  startLsn: Lsn;
  startTimeline: number;
  endLsn: Lsn;
  endTimeline: number;
  systemIdentifier: string;
  serverVersionNum: number;
  /** The catalog entry that was written (the completion marker). */
  entry: BackupCatalogEntry;
  durationMs: number;
}

export const BASE_BACKUP_DEFAULTS = {
  stanza: 'main',
  label: 'pgark base backup',
  checkpoint: 'spread' as 'fast' | 'spread',
  manifestChecksums: 'CRC32C' as ManifestChecksumAlgorithm,
  verifyChecksums: true,
  wal: 'stream' as WalMethod,
  progress: true,
  /** Minimum interval between backup.progress events. */
  progressIntervalMs: 1000,
} as const;

const SUFFIX: Record<CompressionMethod, ArchiveCompression> = { gzip: 'gz', lz4: 'lz4', zstd: 'zst' };

/** Client-side codecs come from ./compression (node:zlib gzip, zstd-napi / node:zlib zstd, lz4-napi). */
function clientCompressor(method: CompressionMethod, level: number | undefined): Transform {
  return createCompressStream(method, level === undefined ? {} : { level });
}

function slotNameFor(backupId: string): string {
  return `pgark_bb_${backupId.toLowerCase().replace(/[^a-z0-9]/g, '_')}_${process.pid}`.slice(0, 63);
}

async function pickBackupId(
  isInUse: (id: string) => Promise<boolean>,
  signal?: AbortSignal,
): Promise<string> {
  for (;;) {
    const id = makeBackupId(new Date(), 'full');
    if (!(await isInUse(id))) return id;
    if (signal?.aborted) throw new AbortError('base backup aborted');
    // Ids have one-second resolution: wait for the next second.
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
  }
}

/**
 * Takes a full base backup of a PostgreSQL 14-18 server into a pgark repository.
 *
 * Uses BASE_BACKUP (the parenthesised form on 15+, the legacy one on 14), IDENTIFY_SYSTEM,
 * `SHOW wal_segment_size`, and for `wal: 'stream'` CREATE_REPLICATION_SLOT … TEMPORARY RESERVE_WAL
 * and START_REPLICATION on a second connection.
 *
 * Guarantees: the backup becomes visible (listBackups, restoreBackup) only through its catalog
 * entry, written last after every object is durable; on failure or abort every object written is
 * deleted. The server's backup_manifest is always requested and stored unchanged.
 *
 * Errors: ConfigError (CONFIG_INVALID_OPTION, CONFIG_INVALID_IDENTIFIER,
 * CONFIG_UNSUPPORTED_COMPRESSION when the server lacks the library); ConnectionError;
 * ReplicationError REPLICATION_BACKUP_FAILED (e.g. a page checksum failure reported after the
 * data), REPLICATION_STANDBY_PROMOTED, REPLICATION_UNSUPPORTED_VERSION; IntegrityError
 * INTEGRITY_SYSTEM_ID_MISMATCH (the stanza belongs to another cluster); StorageError; AbortError.
 *
 * @example
 * ```ts
 * const r = await runBaseBackup({
 *   connection: { host: 'db1', user: 'replicator', password },
 *   storage: createFsStorage({ root: '/var/lib/pgark' }),
 *   checkpoint: 'fast',
 * });
 * console.log(r.backupId, formatLsn(r.startLsn), formatLsn(r.endLsn));
 * ```
 */
export async function runBaseBackup(options: RunBaseBackupOptions): Promise<BaseBackupResult> {
  const started = Date.now();
  const logger = options.logger ?? noopLogger;
  const observe: ObserveOptions = { logger: options.logger, onEvent: options.onEvent };
  const stanzaName = options.stanza ?? BASE_BACKUP_DEFAULTS.stanza;
  const label = options.label ?? BASE_BACKUP_DEFAULTS.label;
  const walMethod = options.wal ?? BASE_BACKUP_DEFAULTS.wal;
  const compression: BackupCompression = options.compression ?? { method: 'none' };
  const signal = options.signal;
  if (!['stream', 'fetch', 'none'].includes(walMethod)) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `wal must be stream, fetch or none (got ${String(walMethod)})`,
    );
  }
  if (compression.method !== 'none')
    assertServerCompression({ method: compression.method, level: compression.level });
  if (!options.storage) throw new ConfigError('CONFIG_INVALID_OPTION', 'runBaseBackup needs a storage');
  if (signal?.aborted) throw new AbortError('base backup aborted', { cause: signal.reason });

  const storage: Storage = options.storage;
  const conn = await ReplicationConnection.connect({
    ...options.connection,
    logger: options.logger,
    onEvent: options.onEvent,
  });
  let walConn: ReplicationConnection | undefined;
  let receiver: BackupWalReceiver | undefined;
  let upload: ObjectUpload | undefined;
  const written = new Set<string>();
  let backupId: string | undefined;
  let cleanupPrefix: string | undefined;

  const onAbort = (): void => {
    conn.destroy();
    walConn?.destroy();
    void upload?.abort(new AbortError('base backup aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  try {
    const version = conn.serverVersionNum;
    const ident = await identifySystem(conn);
    const walSegmentSize = await getWalSegmentSize(conn);
    const pgMajor = Math.floor(version / 10000);
    const repo = await openRepository(storage, { create: true, signal });
    const stanza = await repo.openStanza(stanzaName, {
      systemIdentifier: ident.systemIdentifier,
      pgMajor,
      walSegmentSize,
      create: true,
      signal,
    });

    // Where compression happens; client-side compression of a server-compressed stream makes no sense.
    let serverCompression: { method: CompressionMethod; level?: number; workers?: number } | undefined;
    let clientMethod: CompressionMethod | undefined;
    let compressionLocation: 'server' | 'client' | undefined;
    if (compression.method !== 'none') {
      compressionLocation = compression.location ?? (version >= 150000 ? 'server' : 'client');
      if (compressionLocation === 'server') {
        serverCompression = {
          method: compression.method,
          level: compression.level,
          workers: compression.workers,
        };
      } else {
        if (compression.workers !== undefined)
          throw new ConfigError(
            'CONFIG_INVALID_OPTION',
            'compression workers apply to server-side zstd only',
          );
        clientMethod = compression.method;
        clientCompressor(clientMethod, compression.level).destroy(); // fail early if unavailable
      }
    }
    const command = buildBaseBackupCommand(
      {
        label,
        progress: options.progress ?? BASE_BACKUP_DEFAULTS.progress,
        checkpoint: options.checkpoint ?? BASE_BACKUP_DEFAULTS.checkpoint,
        wal: walMethod === 'fetch',
        wait: walMethod === 'none',
        maxRateKbps: options.maxRateKbps,
        tablespaceMap: true,
        verifyChecksums: options.verifyChecksums ?? BASE_BACKUP_DEFAULTS.verifyChecksums,
        manifestChecksums: options.manifestChecksums ?? BASE_BACKUP_DEFAULTS.manifestChecksums,
        compression: serverCompression,
      },
      version,
    );

    backupId = await pickBackupId((id) => stanza.isBackupIdInUse(id, { signal }), signal);
    cleanupPrefix = backupPrefix(stanzaName, backupId);
    const startedAt = new Date().toISOString();

    if (walMethod === 'stream') {
      walConn = await ReplicationConnection.connect({
        ...options.connection,
        logger: options.logger,
        onEvent: options.onEvent,
      });
      const slot = slotNameFor(backupId);
      await createReplicationSlot(walConn, { name: slot, temporary: true, reserveWal: true });
      receiver = new BackupWalReceiver({
        connection: walConn,
        storage,
        stanza: stanzaName,
        backupId,
        slot,
        walSegmentSize,
        signal,
        ...observe,
      });
    }

    logger.info('base backup starting', { backupId, stanza: stanzaName, target: conn.target, walMethod });
    const objects: CatalogObject[] = [];
    const tablespaces: { oid: number; location: string }[] = [];
    let startLsn: Lsn | undefined;
    let startTimeline = 0;
    let endLsn: Lsn | undefined;
    let endTimeline = 0;
    let estimate: number | undefined;
    let bytesDone = 0;
    let lastProgressAt = 0;
    let archive: { name: string; spcOid?: number; spcLocation?: string } | undefined;

    // A compressor's input is not what the driver sees, so nobody could release it.
    const leaseCopyData = clientMethod === undefined;
    const events = conn.copyOut(command, { leaseCopyData });
    for await (const ev of readBaseBackupStream(events, version < 150000)) {
      switch (ev.type) {
        case 'start':
          startLsn = ev.startLsn;
          startTimeline = ev.startTimeline;
          receiver?.start(ev.startLsn, ev.startTimeline);
          emit(observe, {
            type: 'backup.started',
            backupId,
            startLsn: formatLsn(ev.startLsn),
            timeline: ev.startTimeline,
          });
          break;
        case 'tablespaces':
          for (const t of ev.tablespaces) {
            if (t.sizeEstimateBytes !== undefined) estimate = (estimate ?? 0) + t.sizeEstimateBytes;
            if (t.oid !== undefined) tablespaces.push({ oid: t.oid, location: t.location ?? '' });
          }
          break;
        case 'archive-start': {
          const name = clientMethod ? `${ev.name}.${SUFFIX[clientMethod]}` : ev.name;
          const key = backupArchiveKey(stanzaName, backupId, name);
          written.add(key);
          archive = {
            name,
            ...(ev.spcOid !== undefined ? { spcOid: ev.spcOid } : {}),
            ...(ev.spcLocation !== undefined ? { spcLocation: ev.spcLocation } : {}),
          };
          // The estimate (kB in the tablespace row) plans the s3 part size; 10% headroom for tar headers.
          const sizeHint =
            ev.sizeEstimateBytes === undefined
              ? undefined
              : Math.ceil(ev.sizeEstimateBytes * 1.1) + 1024 * 1024;
          upload = new ObjectUpload(storage, key, {
            sizeHint,
            signal,
            ...(clientMethod
              ? {
                  transform: clientCompressor(
                    clientMethod,
                    compression.method !== 'none' ? compression.level : undefined,
                  ),
                }
              : {}),
          });
          break;
        }
        case 'data':
        case 'manifest-data':
          if (ev.release) attachChunkRelease(ev.data, ev.release);
          {
            const wait = upload!.push(ev.data);
            if (wait) await wait;
          }
          break;
        case 'archive-end':
        case 'manifest-end': {
          const u = upload!;
          upload = undefined;
          const r = await u.end();
          if (ev.type === 'archive-end') {
            objects.push({
              kind: 'archive',
              name: archive!.name,
              key: u.key,
              size: r.size,
              sha256: r.sha256,
              ...(archive!.spcOid !== undefined
                ? { spcOid: archive!.spcOid, spcLocation: archive!.spcLocation ?? '' }
                : {}),
            });
            emit(observe, {
              type: 'backup.archive.completed',
              backupId,
              archive: archive!.name,
              key: u.key,
              bytes: r.size,
            });
            archive = undefined;
          } else {
            objects.push({
              kind: 'manifest',
              name: 'backup_manifest',
              key: u.key,
              size: r.size,
              sha256: r.sha256,
            });
          }
          break;
        }
        case 'manifest-start': {
          const key = backupManifestKey(stanzaName, backupId);
          written.add(key);
          upload = new ObjectUpload(storage, key, { signal });
          break;
        }
        case 'progress': {
          bytesDone = ev.bytesDone;
          const now = Date.now();
          if (now - lastProgressAt >= BASE_BACKUP_DEFAULTS.progressIntervalMs) {
            lastProgressAt = now;
            emit(observe, {
              type: 'backup.progress',
              backupId,
              bytesDone,
              ...(estimate !== undefined ? { bytesEstimated: estimate } : {}),
              ...(archive ? { archive: archive.name } : {}),
            });
          }
          break;
        }
        case 'end':
          endLsn = ev.endLsn;
          endTimeline = ev.endTimeline;
          break;
      }
    }
    if (startLsn === undefined || endLsn === undefined) {
      throw new ProtocolError(
        'PROTOCOL_UNEXPECTED_MESSAGE',
        'base backup ended without start or end position',
      );
    }
    emit(observe, {
      type: 'backup.progress',
      backupId,
      bytesDone,
      ...(estimate !== undefined ? { bytesEstimated: estimate } : {}),
    });
    await conn.close();

    let walBytes = 0;
    if (receiver) {
      const walObjects = await receiver.finish(endLsn);
      for (const o of walObjects) {
        written.add(o.key);
        walBytes += o.size;
      }
      objects.push(...walObjects);
      await walConn?.close(); // drops the temporary slot
    }

    const entry: BackupCatalogEntry = {
      catalogVersion: 1,
      backupId,
      stanza: stanzaName,
      kind: 'full',
      label,
      startedAt,
      finishedAt: new Date().toISOString(),
      startLsn: formatLsn(startLsn),
      startTimeline,
      endLsn: formatLsn(endLsn),
      endTimeline,
      systemIdentifier: ident.systemIdentifier,
      serverVersionNum: version,
      pgMajor,
      walSegmentSize,
      walMethod,
      compression:
        compression.method === 'none'
          ? { method: 'none' }
          : {
              method: compression.method,
              location: compressionLocation!,
              ...(compression.level !== undefined ? { level: compression.level } : {}),
            },
      manifestChecksumAlgorithm: options.manifestChecksums ?? BASE_BACKUP_DEFAULTS.manifestChecksums,
      tablespaces,
      sizes: { dataBytes: bytesDone, storedBytes: objects.reduce((s, o) => s + o.size, 0), walBytes },
      objects,
    };
    if (signal?.aborted) throw new AbortError('base backup aborted', { cause: signal.reason });
    // The completion marker: last, create-only.
    await stanza.writeCatalogEntry(backupId, entry, { signal });
    emit(observe, {
      type: 'backup.completed',
      backupId,
      startLsn: entry.startLsn,
      endLsn: entry.endLsn,
      bytes: entry.sizes.storedBytes,
    });
    logger.info('base backup completed', {
      backupId,
      startLsn: entry.startLsn,
      endLsn: entry.endLsn,
      bytes: entry.sizes.storedBytes,
    });
    return {
      backupId,
      stanza: stanzaName,
      startLsn,
      startTimeline,
      endLsn,
      endTimeline,
      systemIdentifier: ident.systemIdentifier,
      serverVersionNum: version,
      entry,
      durationMs: Date.now() - started,
    };
  } catch (e) {
    let err = e;
    if (signal?.aborted && !(isPgarkError(e) && e.code === 'ABORTED')) {
      err = new AbortError('base backup aborted', { cause: signal.reason ?? e });
    }
    // Stop everything, then remove every object of the attempt (and anything under its prefix).
    conn.destroy();
    if (upload) await upload.abort(err);
    if (receiver) {
      await receiver.abort(err);
      for (const k of receiver.keys) written.add(k);
    }
    walConn?.destroy();
    await removeAttempt(storage, written, cleanupPrefix, logger);
    if (backupId) {
      const pe = isPgarkError(err) ? err : undefined;
      emit(observe, {
        type: 'backup.failed',
        backupId,
        code: pe?.code ?? 'UNKNOWN',
        message: pe?.message ?? String(err),
      });
    }
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

async function removeAttempt(
  storage: Storage,
  written: Set<string>,
  prefix: string | undefined,
  logger: { warn: (m: string, f?: Record<string, unknown>) => void },
): Promise<void> {
  const keys = new Set(written);
  try {
    if (prefix) for await (const o of storage.list(prefix)) keys.add(o.key);
  } catch (e) {
    logger.warn('could not list the objects of a failed backup', { prefix, error: String(e) });
  }
  if (keys.size === 0) return;
  try {
    await storage.delete([...keys]);
  } catch (e) {
    // The catalog entry was never written, so the objects are invisible to every reader anyway.
    logger.warn('could not delete the objects of a failed backup', { prefix, error: String(e) });
  }
}
