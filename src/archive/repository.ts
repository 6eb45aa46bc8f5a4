/**
 * A pgark repository on a Storage: the format check on open, stanzas (one per cluster) with their
 * identity check, small canonical-JSON objects, and listings of complete backups and archived WAL.
 * Key names come from ./repo-layout only. The base-backup writer and the WAL archiver build on this.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ConfigError, IntegrityError, StorageError, isPgarkError, throwIfAborted } from '../errors';
import { assertWalSegmentSize } from '../lsn';
import type { CallOptions, ObjectInfo, PutResult, Storage } from '../storage/storage';
import {
  REPOSITORY_FORMAT_KEY,
  REPOSITORY_FORMAT_VERSION,
  STANZAS_PREFIX,
  assertStanzaName,
  backupPrefix,
  catalogEntryKey,
  catalogPrefix,
  parseRepositoryKey,
  stanzaInfoKey,
  walPrefix,
  walTimelinePrefix,
  type RepositoryKey,
} from './repo-layout';

/** The pgark version recorded in `createdBy` (kept equal to package.json's by the release check). */
export const PGARK_VERSION = '0.1.0';

/** Objects read with getJson are small by design; a larger one is refused rather than buffered. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;

/** `pgark.json`: which repository format the objects below follow. */
export interface RepositoryFormat {
  format: number;
  /** ISO 8601 UTC. */
  createdAt: string;
  /** `pgark <version>` */
  createdBy: string;
}

/** `stanzas/<stanza>/stanza.json`: the cluster a stanza belongs to. */
export interface StanzaInfo {
  stanza: string;
  /** pg_control's system identifier, a decimal string (64-bit). */
  systemIdentifier: string;
  /** PostgreSQL major version, e.g. 17. */
  pgMajor: number;
  walSegmentSize: number;
  /** ISO 8601 UTC. */
  createdAt: string;
}

export interface OpenRepositoryOptions extends CallOptions {
  /** Create `pgark.json` when the repository has none. @default false */
  create?: boolean;
}

export interface OpenStanzaOptions extends CallOptions {
  /** The cluster's system identifier (IDENTIFY_SYSTEM `systemid`); required to create, checked when given. */
  systemIdentifier?: string;
  /** Required to create, checked when given. */
  pgMajor?: number;
  /** Required to create, checked when given. */
  walSegmentSize?: number;
  /** Create the stanza when absent. @default false */
  create?: boolean;
}

export interface PutJsonOptions extends CallOptions {
  /** Create only; a present key gives STORAGE_CONFLICT. */
  ifAbsent?: boolean;
}

export interface GetJsonOptions extends CallOptions {
  /** Refuse the object unless its bytes have this sha256 (INTEGRITY_CHECKSUM_MISMATCH). */
  expectedSha256?: string;
}

/** A WAL object of the repository with what its key says it is. */
export type WalObject = ObjectInfo & {
  parsed: Extract<
    RepositoryKey,
    {
      kind:
        | 'wal-segment'
        | 'wal-partial'
        | 'wal-partial-chunk'
        | 'wal-partial-padded'
        | 'wal-backup-history'
        | 'wal-history';
    }
  >;
};

/**
 * Canonical JSON: object keys sorted (by UTF-16 code units, as Array.prototype.sort does), no
 * whitespace, a trailing newline. The same value always gives the same bytes, so a sha256 of it
 * is stable.
 */
export function canonicalJson(value: unknown): string {
  return `${JSON.stringify(sortKeys(value))}\n`;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

async function readAll(stream: Readable, key: string, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) {
      stream.destroy();
      throw new StorageError(
        'STORAGE_IO',
        `${key} is larger than ${limit} bytes, too large for a json document`,
        {
          key,
        },
      );
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/**
 * Opens the repository on `storage`: reads and checks `pgark.json`, or creates it when absent and
 * `create` is set.
 *
 * @throws IntegrityError INTEGRITY_REPOSITORY_FORMAT when `pgark.json` is missing (without `create`),
 *   unreadable, or of an unknown or newer format; StorageError from the store.
 * @example
 * const repo = await openRepository(createFsStorage({ root: '/var/lib/pgark' }), { create: true });
 * const stanza = await repo.openStanza('main', { systemIdentifier, pgMajor: 17, walSegmentSize: 16 << 20, create: true });
 */
export async function openRepository(
  storage: Storage,
  options: OpenRepositoryOptions = {},
): Promise<Repository> {
  const repo = new Repository(storage);
  const { signal } = options;
  let format: RepositoryFormat | undefined = await repo.readFormat(signal);
  if (format === undefined) {
    if (!options.create) {
      throw new IntegrityError(
        'INTEGRITY_REPOSITORY_FORMAT',
        `no pgark repository at ${storage.describe()}`,
        {
          key: REPOSITORY_FORMAT_KEY,
          hint: 'create it first (for example with the create option or `pgark stanza-create`), or check the location',
        },
      );
    }
    const fresh: RepositoryFormat = {
      format: REPOSITORY_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      createdBy: `pgark ${PGARK_VERSION}`,
    };
    try {
      await repo.putJson(REPOSITORY_FORMAT_KEY, fresh, { ifAbsent: true, signal });
    } catch (e) {
      // Another process created it first: what it wrote is checked below.
      if (!(isPgarkError(e) && e.code === 'STORAGE_CONFLICT')) throw e;
    }
    // Always read back: some stores (Swift's s3api) do not make a conditional create atomic under
    // concurrency, so "our create succeeded" does not prove that our object is the one stored.
    format = await repo.readFormat(signal);
    if (format === undefined) {
      throw new IntegrityError(
        'INTEGRITY_REPOSITORY_FORMAT',
        `${REPOSITORY_FORMAT_KEY} vanished right after its creation`,
        {
          key: REPOSITORY_FORMAT_KEY,
        },
      );
    }
  }
  repo.setFormat(format);
  return repo;
}

/** A repository opened with openRepository. */
export class Repository {
  readonly storage: Storage;
  private formatValue: RepositoryFormat | undefined;

  /** @internal use openRepository */
  constructor(storage: Storage) {
    this.storage = storage;
  }

  /** The checked format object of `pgark.json`. */
  get format(): RepositoryFormat {
    return this.formatValue!;
  }

  /** @internal */
  setFormat(format: RepositoryFormat): void {
    this.formatValue = format;
  }

  /** @internal reads and validates pgark.json; undefined when absent. */
  async readFormat(signal?: AbortSignal): Promise<RepositoryFormat | undefined> {
    let value: unknown;
    try {
      value = await this.getJson(REPOSITORY_FORMAT_KEY, { signal });
    } catch (e) {
      if (isPgarkError(e) && e.code === 'STORAGE_NOT_FOUND') return undefined;
      if (isPgarkError(e) && e.code === 'INTEGRITY_MANIFEST_INVALID') {
        throw new IntegrityError(
          'INTEGRITY_REPOSITORY_FORMAT',
          `${REPOSITORY_FORMAT_KEY} is not valid json`,
          {
            key: REPOSITORY_FORMAT_KEY,
            cause: e,
          },
        );
      }
      throw e;
    }
    const v = value as Partial<RepositoryFormat> | null;
    if (v === null || typeof v !== 'object' || typeof v.format !== 'number') {
      throw new IntegrityError(
        'INTEGRITY_REPOSITORY_FORMAT',
        `${REPOSITORY_FORMAT_KEY} has no format version`,
        {
          key: REPOSITORY_FORMAT_KEY,
        },
      );
    }
    if (v.format !== REPOSITORY_FORMAT_VERSION) {
      throw new IntegrityError(
        'INTEGRITY_REPOSITORY_FORMAT',
        `repository format ${v.format} is not supported by pgark ${PGARK_VERSION} (supports ${REPOSITORY_FORMAT_VERSION})`,
        {
          key: REPOSITORY_FORMAT_KEY,
          expected: String(REPOSITORY_FORMAT_VERSION),
          actual: String(v.format),
          hint: v.format > REPOSITORY_FORMAT_VERSION ? 'upgrade pgark to read this repository' : undefined,
        },
      );
    }
    return {
      format: v.format,
      createdAt: String(v.createdAt ?? ''),
      createdBy: String(v.createdBy ?? ''),
    };
  }

  /**
   * Writes `value` as canonical JSON (see canonicalJson). The result's sha256 is that of the bytes
   * stored; record it where a later read should be verified.
   */
  async putJson(key: string, value: unknown, options: PutJsonOptions = {}): Promise<PutResult> {
    const body = Buffer.from(canonicalJson(value), 'utf8');
    return this.storage.put(key, body, {
      ifAbsent: options.ifAbsent,
      contentLength: body.length,
      signal: options.signal,
    });
  }

  /**
   * Reads a small JSON object (at most 16 MiB).
   * @throws StorageError STORAGE_NOT_FOUND when absent; IntegrityError INTEGRITY_MANIFEST_INVALID when
   *   not JSON; INTEGRITY_CHECKSUM_MISMATCH when `expectedSha256` differs.
   */
  async getJson<T = unknown>(key: string, options: GetJsonOptions = {}): Promise<T> {
    const stream = await this.storage.get(key, { signal: options.signal });
    const bytes = await readAll(stream, key, MAX_JSON_BYTES);
    if (options.expectedSha256 !== undefined) {
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== options.expectedSha256.toLowerCase()) {
        throw new IntegrityError('INTEGRITY_CHECKSUM_MISMATCH', `${key} does not have the recorded sha256`, {
          key,
          expected: options.expectedSha256,
          actual,
        });
      }
    }
    try {
      return JSON.parse(bytes.toString('utf8')) as T;
    } catch (e) {
      throw new IntegrityError('INTEGRITY_MANIFEST_INVALID', `${key} is not valid json`, { key, cause: e });
    }
  }

  /** Names of the stanzas that have a `stanza.json`, sorted. */
  async listStanzas(options: CallOptions = {}): Promise<string[]> {
    const out: string[] = [];
    for await (const obj of this.storage.list(STANZAS_PREFIX, options)) {
      const parsed = parseRepositoryKey(obj.key);
      if (parsed?.kind === 'stanza-info') out.push(parsed.stanza);
    }
    return out;
  }

  /**
   * Opens (or with `create`, creates) a stanza and checks that it belongs to the given cluster, so
   * that two clusters can never write into each other's WAL.
   *
   * @throws IntegrityError INTEGRITY_SYSTEM_ID_MISMATCH when the stanza records another system
   *   identifier, major version or WAL segment size; StorageError STORAGE_NOT_FOUND when absent and
   *   not `create`; ConfigError CONFIG_INVALID_IDENTIFIER for a bad name, CONFIG_INVALID_OPTION when
   *   creating without the cluster's identity.
   */
  async openStanza(name: string, options: OpenStanzaOptions = {}): Promise<Stanza> {
    assertStanzaName(name);
    const { signal } = options;
    const key = stanzaInfoKey(name);
    let info = await this.readStanzaInfo(name, signal);
    if (info === undefined) {
      if (!options.create) {
        throw new StorageError(
          'STORAGE_NOT_FOUND',
          `stanza ${name} does not exist in ${this.storage.describe()}`,
          {
            key,
            hint: 'create the stanza first',
          },
        );
      }
      const { systemIdentifier, pgMajor, walSegmentSize } = options;
      if (typeof systemIdentifier !== 'string' || !/^[0-9]{1,20}$/.test(systemIdentifier)) {
        throw new ConfigError(
          'CONFIG_INVALID_OPTION',
          "creating a stanza needs the cluster's systemIdentifier (decimal string)",
        );
      }
      if (typeof pgMajor !== 'number' || !Number.isInteger(pgMajor) || pgMajor < 10) {
        throw new ConfigError('CONFIG_INVALID_OPTION', "creating a stanza needs the server's pgMajor");
      }
      if (typeof walSegmentSize !== 'number') {
        throw new ConfigError('CONFIG_INVALID_OPTION', "creating a stanza needs the server's walSegmentSize");
      }
      assertWalSegmentSize(walSegmentSize);
      const fresh: StanzaInfo = {
        stanza: name,
        systemIdentifier,
        pgMajor,
        walSegmentSize,
        createdAt: new Date().toISOString(),
      };
      try {
        await this.putJson(key, fresh, { ifAbsent: true, signal });
      } catch (e) {
        if (!(isPgarkError(e) && e.code === 'STORAGE_CONFLICT')) throw e;
      }
      // Read back what is stored (see openRepository): a concurrent creator of the same stanza for
      // another cluster must show up as a mismatch below, not as success.
      info = await this.readStanzaInfo(name, signal);
      if (info === undefined) {
        throw new StorageError('STORAGE_NOT_FOUND', `${key} vanished right after its creation`, { key });
      }
    }
    checkStanzaIdentity(info, options, key);
    return new Stanza(this, info);
  }

  private async readStanzaInfo(
    name: string,
    signal: AbortSignal | undefined,
  ): Promise<StanzaInfo | undefined> {
    const key = stanzaInfoKey(name);
    let value: unknown;
    try {
      value = await this.getJson(key, { signal });
    } catch (e) {
      if (isPgarkError(e) && e.code === 'STORAGE_NOT_FOUND') return undefined;
      if (isPgarkError(e) && e.code === 'INTEGRITY_MANIFEST_INVALID') {
        throw new IntegrityError('INTEGRITY_REPOSITORY_FORMAT', `${key} is not valid json`, {
          key,
          cause: e,
        });
      }
      throw e;
    }
    const v = value as Partial<StanzaInfo> | null;
    if (
      v === null ||
      typeof v !== 'object' ||
      v.stanza !== name ||
      typeof v.systemIdentifier !== 'string' ||
      typeof v.pgMajor !== 'number' ||
      typeof v.walSegmentSize !== 'number'
    ) {
      throw new IntegrityError('INTEGRITY_REPOSITORY_FORMAT', `${key} is not a valid stanza description`, {
        key,
      });
    }
    return {
      stanza: v.stanza,
      systemIdentifier: v.systemIdentifier,
      pgMajor: v.pgMajor,
      walSegmentSize: v.walSegmentSize,
      createdAt: String(v.createdAt ?? ''),
    };
  }
}

function checkStanzaIdentity(info: StanzaInfo, expected: OpenStanzaOptions, key: string): void {
  const mismatch = (what: string, want: string, have: string, hint: string): never => {
    throw new IntegrityError(
      'INTEGRITY_SYSTEM_ID_MISMATCH',
      `stanza ${info.stanza} belongs to a cluster with ${what} ${have}, not ${want}`,
      { key, expected: want, actual: have, hint },
    );
  };
  if (expected.systemIdentifier !== undefined && expected.systemIdentifier !== info.systemIdentifier) {
    mismatch(
      'system identifier',
      expected.systemIdentifier,
      info.systemIdentifier,
      'each cluster needs its own stanza; after pg_upgrade or a new initdb create a new stanza',
    );
  }
  if (expected.pgMajor !== undefined && expected.pgMajor !== info.pgMajor) {
    mismatch(
      'major version',
      String(expected.pgMajor),
      String(info.pgMajor),
      'create a new stanza for the upgraded cluster',
    );
  }
  if (expected.walSegmentSize !== undefined && expected.walSegmentSize !== info.walSegmentSize) {
    mismatch(
      'wal segment size',
      String(expected.walSegmentSize),
      String(info.walSegmentSize),
      'the stanza belongs to another cluster',
    );
  }
}

/** One cluster's part of a repository. */
export class Stanza {
  readonly repository: Repository;
  readonly info: StanzaInfo;

  /** @internal use Repository.openStanza */
  constructor(repository: Repository, info: StanzaInfo) {
    this.repository = repository;
    this.info = info;
  }

  get name(): string {
    return this.info.stanza;
  }

  get storage(): Storage {
    return this.repository.storage;
  }

  /**
   * Ids of the complete backups (those with a catalog entry), oldest first. A backup whose objects
   * exist without a catalog entry (running, crashed, being deleted) is not listed.
   */
  async listBackupIds(options: CallOptions = {}): Promise<string[]> {
    const out: string[] = [];
    for await (const obj of this.storage.list(catalogPrefix(this.name), options)) {
      const parsed = parseRepositoryKey(obj.key);
      if (parsed?.kind === 'catalog-entry' && parsed.stanza === this.name) out.push(parsed.backupId);
    }
    return out.sort();
  }

  /** Reads a backup's catalog entry. @throws StorageError STORAGE_NOT_FOUND when the backup is not complete. */
  async readCatalogEntry<T = unknown>(backupId: string, options: GetJsonOptions = {}): Promise<T> {
    return this.repository.getJson<T>(catalogEntryKey(this.name, backupId), options);
  }

  /**
   * Writes a backup's catalog entry, the completion marker: call it LAST, after every object of the
   * backup is durable. Create-only (STORAGE_CONFLICT when present).
   */
  async writeCatalogEntry(backupId: string, entry: unknown, options: CallOptions = {}): Promise<PutResult> {
    return this.repository.putJson(catalogEntryKey(this.name, backupId), entry, {
      ifAbsent: true,
      signal: options.signal,
    });
  }

  /** True when a backup id already has a catalog entry or any object (a writer must pick another). */
  async isBackupIdInUse(backupId: string, options: CallOptions = {}): Promise<boolean> {
    if (await this.storage.head(catalogEntryKey(this.name, backupId), options)) return true;
    for await (const _ of this.storage.list(backupPrefix(this.name, backupId), { ...options, pageSize: 1 })) {
      return true;
    }
    return false;
  }

  /**
   * Archived WAL objects (segments, partials, history and backup-history files), in key order;
   * restricted to one timeline directory when `timeline` is given (history files are not in it).
   * Keys that do not fit the layout are skipped.
   */
  async *listWal(options: CallOptions & { timeline?: number } = {}): AsyncIterable<WalObject> {
    throwIfAborted(options.signal, 'wal listing');
    const prefix =
      options.timeline === undefined ? walPrefix(this.name) : walTimelinePrefix(this.name, options.timeline);
    for await (const obj of this.storage.list(prefix, { signal: options.signal })) {
      const parsed = parseRepositoryKey(obj.key);
      if (
        parsed &&
        (parsed.kind === 'wal-segment' ||
          parsed.kind === 'wal-partial' ||
          parsed.kind === 'wal-partial-chunk' ||
          parsed.kind === 'wal-partial-padded' ||
          parsed.kind === 'wal-backup-history' ||
          parsed.kind === 'wal-history') &&
        parsed.stanza === this.name
      ) {
        yield { ...obj, parsed };
      }
    }
  }
}
