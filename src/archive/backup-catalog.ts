/**
 * The catalog entry of a base backup: its completion marker (written last by the base-backup
 * writer, see ./repo-layout) and everything a restore or a verifier needs to know without opening
 * the archives: positions, identity, the objects with their sizes and sha256. Plus reading and
 * listing entries.
 */
import { ConfigError, IntegrityError, RestoreError, isPgarkError } from '../errors';
import type { CallOptions, Storage } from '../storage/storage';
import { openRepository, type Stanza } from './repository';

/** Where the archive bytes were compressed, if at all. */
export type CompressionLocation = 'server' | 'client';

export interface CatalogObject {
  /** `archive` (a tar, maybe compressed), `manifest` (backup_manifest) or `wal` (a carried WAL file). */
  kind: 'archive' | 'manifest' | 'wal';
  /** The object's name inside the backup: base.tar.gz, 16384.tar, backup_manifest, wal/000000010000000000000003. */
  name: string;
  /** The full storage key. */
  key: string;
  /** Bytes stored. */
  size: number;
  /** sha256 of the stored bytes (lower-case hex). */
  sha256: string;
  /** Archives: the tablespace OID (absent for base.tar). */
  spcOid?: number;
  /** Archives: the tablespace's location on the source server. */
  spcLocation?: string;
}

/** `stanzas/<stanza>/catalog/<backupId>.json`, version 1. */
export interface BackupCatalogEntry {
  catalogVersion: 1;
  backupId: string;
  stanza: string;
  kind: 'full';
  label: string;
  /** ISO 8601 UTC. */
  startedAt: string;
  finishedAt: string;
  /** `X/X`. */
  startLsn: string;
  startTimeline: number;
  endLsn: string;
  endTimeline: number;
  systemIdentifier: string;
  /** server_version_num, e.g. 150018. */
  serverVersionNum: number;
  pgMajor: number;
  walSegmentSize: number;
  /** How the WAL from start to end is carried: inside base.tar (`fetch`), as objects under wal/ (`stream`), or not (`none`). */
  walMethod: 'stream' | 'fetch' | 'none';
  compression: { method: 'none' | 'gzip' | 'lz4' | 'zstd'; location?: CompressionLocation; level?: number };
  manifestChecksumAlgorithm: string;
  /** Tablespaces other than the main directory. */
  tablespaces: { oid: number; location: string }[];
  sizes: {
    /** Uncompressed archive bytes the server reported. */
    dataBytes: number;
    /** Bytes of every object stored (archives, manifest, WAL). */
    storedBytes: number;
    walBytes: number;
  };
  /** Every object this backup wrote, except this entry. */
  objects: CatalogObject[];
}

/** Checks the parts of an entry a restore relies on; IntegrityError INTEGRITY_BACKUP_INCOMPLETE otherwise. */
export function assertCatalogEntry(value: unknown, backupId: string): asserts value is BackupCatalogEntry {
  const e = value as Partial<BackupCatalogEntry> | null;
  const ok =
    e !== null &&
    typeof e === 'object' &&
    e.catalogVersion === 1 &&
    e.backupId === backupId &&
    typeof e.startLsn === 'string' &&
    typeof e.endLsn === 'string' &&
    Array.isArray(e.objects) &&
    e.objects.every(
      (o) => typeof o?.key === 'string' && typeof o.size === 'number' && typeof o.sha256 === 'string',
    );
  if (!ok) {
    throw new IntegrityError(
      'INTEGRITY_BACKUP_INCOMPLETE',
      `catalog entry of backup ${backupId} is malformed or of an unknown version`,
    );
  }
}

export interface ListBackupsOptions extends CallOptions {
  storage: Storage;
  /** @default 'main' */
  stanza?: string;
}

async function openExistingStanza(storage: Storage, stanza: string, options: CallOptions): Promise<Stanza> {
  const repo = await openRepository(storage, { signal: options.signal });
  return repo.openStanza(stanza, { signal: options.signal });
}

/**
 * Lists the complete backups of a stanza (those with a catalog entry), oldest first. Backups
 * still running or abandoned (objects without a catalog entry) are never listed.
 *
 * @throws IntegrityError INTEGRITY_REPOSITORY_FORMAT when the storage is not a pgark repository;
 *   StorageError STORAGE_NOT_FOUND when the stanza does not exist.
 * @example
 * for (const b of await listBackups({ storage })) console.log(b.backupId, b.endLsn);
 */
export async function listBackups(options: ListBackupsOptions): Promise<BackupCatalogEntry[]> {
  const stanza = await openExistingStanza(options.storage, options.stanza ?? 'main', options);
  const out: BackupCatalogEntry[] = [];
  for (const id of await stanza.listBackupIds({ signal: options.signal })) {
    const entry = await stanza.readCatalogEntry<unknown>(id, { signal: options.signal });
    assertCatalogEntry(entry, id);
    out.push(entry);
  }
  return out;
}

/**
 * Reads one backup's catalog entry; `backupId` 'latest' (or undefined) picks the newest.
 * @throws RestoreError RESTORE_BACKUP_NOT_FOUND when there is no such complete backup.
 */
export async function readBackupCatalogEntry(
  stanza: Stanza,
  backupId: string | undefined,
  options: CallOptions = {},
): Promise<BackupCatalogEntry> {
  let id = backupId;
  if (id === undefined || id === 'latest') {
    const ids = await stanza.listBackupIds(options);
    id = ids[ids.length - 1];
    if (id === undefined) {
      throw new RestoreError('RESTORE_BACKUP_NOT_FOUND', `stanza ${stanza.name} has no complete backup`);
    }
  }
  let entry: unknown;
  try {
    entry = await stanza.readCatalogEntry<unknown>(id, options);
  } catch (e) {
    if (isPgarkError(e) && e.code === 'STORAGE_NOT_FOUND') {
      throw new RestoreError(
        'RESTORE_BACKUP_NOT_FOUND',
        `backup ${id} does not exist in stanza ${stanza.name} (or is not complete)`,
        { cause: e },
      );
    }
    if (isPgarkError(e) && e.code === 'CONFIG_INVALID_IDENTIFIER') {
      throw new ConfigError('CONFIG_INVALID_IDENTIFIER', `invalid backup id ${JSON.stringify(id)}`, {
        cause: e,
        hint: 'use a backup id as listed, or latest',
      });
    }
    throw e;
  }
  assertCatalogEntry(entry, id);
  return entry;
}
