/**
 * Shared steps of the restore integration tests: a bundled CLI (for archive_command and
 * restore_command: the servers run it as the unprivileged user), repositories on fs and S3 with the
 * settings a server needs to reach them, a source cluster that archives through `pgark archive-push`,
 * and starting a restored directory with the same binaries (src/local-server, as restore does).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import pg from 'pg';
import { inject } from 'vitest';
import {
  parseLsn,
  runBaseBackup,
  type ArchiveFetchSpec,
  type BaseBackupResult,
  type Storage,
} from '../../src/index';
import {
  chownTree,
  isServerRunning,
  resolveServerUser,
  shellQuote,
  startServer,
  stopServer,
  type ServerBinaries,
} from '../../src/local-server';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage, type S3StorageOptions } from '../../src/storage/s3-storage';
import { freePort, startCluster, TEST_ROOT, type Major, type TestCluster } from '../harness/postgres';
import { createTestBucket } from '../harness/s3';
import { spawnArchiver, type ArchiverProcess } from '../harness/archiver-process';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const STANZA = 'main';

/** Bundles the CLI into .tmp (readable by the server user); returns its path and a cleanup. */
export async function bundleCli(stem: string): Promise<{ cli: string; cleanup: () => void }> {
  const dir = join(REPO_ROOT, '.tmp', `${stem}-${process.pid}-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  const cli = join(dir, 'cli.mjs');
  await build({
    entryPoints: [join(REPO_ROOT, 'src/cli/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile: cli,
    logLevel: 'silent',
  });
  chmodSync(join(REPO_ROOT, '.tmp'), 0o755);
  chmodSync(dir, 0o755);
  chmodSync(cli, 0o644);
  return { cli, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestRepo {
  kind: 'fs' | 's3';
  storage: Storage;
  /** For restoreBackup's `archive` (cliPath added by the caller). */
  spec: Omit<ArchiveFetchSpec, 'cliPath'>;
  /** CLI words: --repo … --stanza … [--s3-endpoint …] */
  cliArgs: string[];
  /** Server environment (S3 credentials only there). */
  env: Record<string, string>;
  /** The s3 driver's options (s3 repositories only), e.g. for a child process that opens the same repository. */
  s3StorageOptions?: S3StorageOptions;
  cleanup(): Promise<void>;
}

export function scratch(stem: string): string {
  const dir = join(TEST_ROOT, `${stem}-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}

export async function makeRepo(kind: 'fs' | 's3'): Promise<TestRepo> {
  if (kind === 'fs') {
    const dir = scratch('restore-repo');
    chownTree(dir, resolveServerUser());
    return {
      kind,
      storage: createFsStorage({ root: dir }),
      spec: { repo: dir },
      cliArgs: ['--repo', dir, '--stanza', STANZA],
      env: {},
      async cleanup() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const bucket = await createTestBucket({ prefix: 'pg', name: 'restore' });
  const s3 = inject('s3');
  const storage = createS3Storage(bucket.storageOptions);
  return {
    kind,
    storage,
    spec: { repo: `s3://${bucket.bucket}/pg`, s3Endpoint: s3.endpoint },
    cliArgs: ['--repo', `s3://${bucket.bucket}/pg`, '--s3-endpoint', s3.endpoint, '--stanza', STANZA],
    env: {
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_REGION: s3.region,
    },
    s3StorageOptions: bucket.storageOptions,
    async cleanup() {
      await storage.close();
      await bucket.cleanup();
    },
  };
}

/** A source cluster that archives every segment through `pgark archive-push`. */
export async function archivingCluster(major: Major, repo: TestRepo, cli: string): Promise<TestCluster> {
  const cmd = `${shellQuote(process.execPath)} ${shellQuote(cli)} archive-push %p ${repo.cliArgs.map(shellQuote).join(' ')}`;
  const c = await startCluster({
    major,
    settings: { archive_mode: 'on', archive_command: cmd, archive_timeout: '0' },
    env: repo.env,
  });
  // The first archived segment creates the repository and stanza as the server user (so it can write wal/ later).
  await switchAndArchive(c);
  return c;
}

/**
 * A source cluster archived by pgark's streaming archiver (a child process) into an fs repository:
 * once the archiver has flushed, a table `t` gets 100 'base' rows and a base backup is taken (it
 * ends with a WAL switch, so what follows lands in a new, incomplete segment).
 */
export async function streamArchivedCluster(
  major: Major,
  repo: TestRepo,
  slot: string,
): Promise<{ cluster: TestCluster; archiver: ArchiverProcess }> {
  const cluster = await startCluster({ major });
  const archiver = spawnArchiver({
    connection: { ...cluster.connectionConfig({ user: cluster.replicationUser }), ssl: 'disable' },
    slot,
    fsRoot: repo.spec.repo,
  });
  await waitFor('the archiver to flush', async () => (archiver.flushedLsn() > 0n ? true : undefined));
  await cluster.query(`CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL)`);
  await cluster.query(`INSERT INTO t (phase) SELECT 'base' FROM generate_series(1, 100)`);
  await backup(cluster, repo);
  return { cluster, archiver };
}

/**
 * Waits until the archiver has flushed the cluster's current WAL position, then stops it cleanly
 * (SIGTERM: the incomplete segment is stored as `.partial`); throws unless it exits with 0.
 */
export async function stopArchiverAtCurrentLsn(
  cluster: TestCluster,
  archiver: ArchiverProcess,
): Promise<void> {
  const end = parseLsn((await cluster.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l);
  await waitFor('the archiver to flush the last rows', async () =>
    archiver.flushedLsn() >= end ? true : undefined,
  );
  archiver.kill('SIGTERM');
  const code = await archiver.exited;
  if (code !== 0) throw new Error(`the archiver exited with ${String(code)}`);
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 90_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** pg_switch_wal() and wait until that segment is archived. */
export async function switchAndArchive(c: TestCluster): Promise<string> {
  await c.query('SELECT txid_current()'); // make sure the segment is not empty (a switch of an empty segment is a no-op)
  const walfile = (await c.query<{ w: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS w'))[0]!.w;
  await waitFor(`archiving of ${walfile}`, async () => {
    const [s] = await c.query<{ last: string | null; failed: string }>(
      'SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver',
    );
    if (s && Number(s.failed) > 0) throw new Error(`archive_command failed (${s.failed}); see ${c.logFile}`);
    return s?.last && s.last >= walfile ? true : undefined;
  });
  return walfile;
}

export async function backup(c: TestCluster, repo: TestRepo): Promise<BaseBackupResult> {
  const r = await runBaseBackup({
    connection: {
      host: c.host,
      port: c.port,
      user: c.replicationUser.user,
      password: c.replicationUser.password,
      ssl: 'disable',
    },
    storage: repo.storage,
    stanza: STANZA,
    checkpoint: 'fast',
  });
  return r;
}

export interface Restored {
  dir: string;
  dataDir: string;
  socketDir: string;
  port: number;
  logFile: string;
  client(): Promise<pg.Client>;
  running(): boolean;
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/** A directory for a restored cluster (dataDir does not exist yet), and how to start/stop it. */
export function restoredSlot(
  binaries: ServerBinaries,
  stem = 'restored',
): Restored & { start(env?: Record<string, string>): Promise<void> } {
  const dir = scratch(stem);
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'sock');
  mkdirSync(socketDir);
  const user = resolveServerUser();
  chownTree(dir, user);
  const logFile = join(dir, 'server.log');
  let port = 0;
  const clients: pg.Client[] = [];
  const slot = {
    dir,
    dataDir,
    socketDir,
    logFile,
    get port() {
      return port;
    },
    async start(env?: Record<string, string>) {
      port = await freePort();
      chownTree(dir, user);
      await startServer({ binaries, user, dataDir, port, socketDir, logFile, ...(env ? { env } : {}) });
    },
    async client() {
      const c = new pg.Client({ host: socketDir, port, user: 'postgres', database: 'postgres' });
      c.on('error', () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    },
    running: () => isServerRunning(dataDir),
    async stop() {
      for (const c of clients.splice(0)) await c.end().catch(() => undefined);
      await stopServer({ binaries, user, dataDir, mode: 'immediate' }).catch(() => undefined);
    },
    async destroy() {
      await slot.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return slot;
}

/** Waits until a promoted server has left recovery. */
export async function waitPromoted(client: pg.Client): Promise<void> {
  await waitFor('the end of recovery', async () =>
    (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r ? undefined : true,
  );
}
