/**
 * Shared steps of the base-backup integration tests: back up a cluster with generated data (one
 * table in a tablespace) while writes continue, restore into an empty directory, start the restored
 * directory with the same major's binaries, and compare per-table checksums computed in SQL.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import {
  runBaseBackup,
  restoreBackup,
  type RunBaseBackupOptions,
  type BaseBackupResult,
  type Storage,
} from '../../src/index';
import { chownTree, startServer, stopServer } from '../../src/local-server';
import { TEST_ROOT, freePort, type TestCluster } from '../harness/postgres';
import {
  DATASET_TABLES,
  TABLESPACE_TABLE,
  generateDataset,
  tableChecksums,
  writeLoad,
} from '../harness/datagen';

export function scratchDir(stem: string): string {
  const dir = join(TEST_ROOT, `${stem}-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}

export function connectionOf(cluster: TestCluster): RunBaseBackupOptions['connection'] {
  return {
    host: cluster.host,
    port: cluster.port,
    user: cluster.replicationUser.user,
    password: cluster.replicationUser.password,
    ssl: 'disable',
  };
}

export interface Prepared {
  tablespaceDir: string;
  tables: string[];
}

/** Generated data (sizeMb, one table in a tablespace under a scratch directory). */
export async function prepareSource(cluster: TestCluster, sizeMb: number): Promise<Prepared> {
  const scratch = scratchDir('bb-src-ts');
  const tablespaceDir = join(scratch, 'ts');
  const info = await generateDataset(cluster, { sizeMb, tablespaceDir });
  return { tablespaceDir, tables: info.tables };
}

export interface RoundTripResult {
  backup: BaseBackupResult;
  restoredDir: string;
  scratch: string;
}

/**
 * Backs up while a write load runs, restores, starts the restored cluster, and checks that the
 * static tables are equal and that the write-load table holds every row committed before the
 * backup started and nothing the source does not have.
 */
export async function backupRestoreAndCompare(
  cluster: TestCluster,
  prepared: Prepared,
  storage: Storage,
  backupOptions: Partial<RunBaseBackupOptions> = {},
  opts: {
    keepRestored?: (dir: string, backup: BaseBackupResult) => Promise<void>;
    beforeRestore?: () => Promise<void>;
    remapTablespace?: boolean;
  } = {},
): Promise<RoundTripResult> {
  const load = await writeLoad(cluster, { ms: 5 });
  await new Promise((r) => setTimeout(r, 200));
  const rowsBefore = load.rows();
  let backup: BaseBackupResult;
  try {
    backup = await runBaseBackup({
      connection: connectionOf(cluster),
      storage,
      checkpoint: 'fast',
      label: 'it',
      ...backupOptions,
    });
  } finally {
    await load.stop();
  }
  const sourceSums = await tableChecksums((sql) => cluster.query(sql), prepared.tables);
  const { max } = (
    await cluster.query<{ max: string }>('SELECT max(id)::text AS max FROM public.write_load')
  )[0]!;

  const scratch = scratchDir('bb-restore');
  const restoredDir = join(scratch, 'data');
  const remap = opts.remapTablespace ?? true;
  const newTs = join(scratch, 'ts');
  const { oid } = (
    await cluster.query<{ oid: string }>(`SELECT oid::text FROM pg_tablespace WHERE spcname = 'datagen_ts'`)
  )[0]!;
  chownTree(scratch, cluster.serverUser);
  if (opts.beforeRestore) await opts.beforeRestore();
  await restoreBackup({
    storage,
    targetDir: restoredDir,
    backupId: backup.backupId,
    tablespaceMapping: remap ? { [oid]: newTs } : {},
    owner: { uid: cluster.serverUser.uid, gid: cluster.serverUser.gid },
  });
  if (opts.keepRestored) await opts.keepRestored(restoredDir, backup);

  const port = await freePort();
  const socketDir = join(scratch, 'sock');
  mkdirSync(socketDir);
  chownTree(scratch, cluster.serverUser);
  await startServer({
    binaries: cluster.binaries,
    user: cluster.serverUser,
    dataDir: restoredDir,
    port,
    socketDir,
    logFile: join(scratch, 'server.log'),
  });
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: cluster.superuser.password,
    database: 'postgres',
  });
  try {
    await client.connect();
    const restoredSums = await tableChecksums(async (sql) => (await client.query(sql)).rows, prepared.tables);
    expect(restoredSums).toEqual(sourceSums);
    expect(Object.keys(restoredSums)).toEqual(expect.arrayContaining([...DATASET_TABLES, TABLESPACE_TABLE]));
    const [r] = (
      await client.query(
        'SELECT count(*)::int AS n, coalesce(max(id), 0)::text AS max FROM public.write_load',
      )
    ).rows as [{ n: number; max: string }];
    expect(r.n).toBeGreaterThanOrEqual(rowsBefore);
    expect(BigInt(r.max)).toBeLessThanOrEqual(BigInt(max));
    // The table was restored into the remapped tablespace directory.
    const [loc] = (
      await client.query(
        `SELECT pg_tablespace_location(oid) AS l FROM pg_tablespace WHERE spcname = 'datagen_ts'`,
      )
    ).rows as [{ l: string }];
    expect(loc.l).toBe(remap ? newTs : prepared.tablespaceDir);
  } finally {
    await client.end().catch(() => undefined);
    await stopServer({
      binaries: cluster.binaries,
      user: cluster.serverUser,
      dataDir: restoredDir,
      mode: 'fast',
    });
  }
  return { backup, restoredDir, scratch };
}

export function removeScratch(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}
