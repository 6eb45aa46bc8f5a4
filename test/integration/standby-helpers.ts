/**
 * Streaming standbys for integration tests, built with pgark itself (any major 14-18, unlike
 * Debian's pg_basebackup which only exists for 15): a base backup of the upstream into a private
 * directory repository, restoreBackup with `standby` (standby.signal, primary_conninfo with a
 * passfile: no password in postgresql.auto.conf), then the server started with the harness's
 * settings. The upstream may itself be a standby (a cascading standby).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { restoreBackup, runBaseBackup, type RunBaseBackupOptions } from '../../src/index';
import {
  chownTree,
  promote,
  startServer,
  stopServer,
  type ServerBinaries,
  type ServerUser,
} from '../../src/local-server';
import { createFsStorage } from '../../src/storage/fs-storage';
import { defaultSettings, freePort, type Major, type PgUser, type TestCluster } from '../harness/postgres';
import { scratchDir } from './base-backup-helpers';
import { waitFor } from './restore-helpers';

/** What a standby needs to know about its upstream (a TestCluster or another StandbyServer). */
export interface Upstream {
  major: Major;
  port: number;
  binaries: ServerBinaries;
  serverUser: ServerUser;
  superuser: PgUser;
  replicationUser: PgUser;
  query<R = any>(sql: string, params?: unknown[]): Promise<R[]>;
}

export interface StandbyServer extends Upstream {
  name: string;
  dataDir: string;
  logFile: string;
  rootDir: string;
  /** A replication connection for runBaseBackup & co. */
  connection: RunBaseBackupOptions['connection'];
  /** A new client (superuser, TCP); the caller ends it. */
  client(): Promise<pg.Client>;
  /** pg_ctl promote -w. */
  promote(): Promise<void>;
  destroy(): Promise<void>;
}

export function replicationConnection(u: { port: number; replicationUser: PgUser }) {
  return {
    host: '127.0.0.1',
    port: u.port,
    user: u.replicationUser.user,
    password: u.replicationUser.password,
    ssl: 'disable' as const,
  };
}

/** The upstream's view of the standby: streaming in pg_stat_replication under `name`. */
export async function waitStreaming(upstream: Upstream, name: string): Promise<void> {
  await waitFor(`${name} streaming`, async () => {
    const r = await upstream.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`,
      [name],
    );
    return r[0]!.n === 1 ? true : undefined;
  });
}

/** Waits until `standby` has replayed at least `lsn` (text X/X). */
export async function waitReplayed(standby: Upstream, lsn: string): Promise<void> {
  await waitFor(`replay to ${lsn}`, async () => {
    const r = await standby.query<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [
      lsn,
    ]);
    return r[0]!.ok ? true : undefined;
  });
}

/**
 * Builds and starts a streaming standby of `upstream` (hot_standby, recovery_target_timeline
 * latest: PostgreSQL's default), named `name` (its application_name), and waits until it streams.
 */
export async function startStreamingStandby(
  upstream: Upstream,
  name: string,
  settings: Record<string, string> = {},
): Promise<StandbyServer> {
  const rootDir = scratchDir(`standby-${name}`);
  const dataDir = join(rootDir, 'data');
  const socketDir = join(rootDir, 'sock');
  const logFile = join(rootDir, 'server.log');
  const repoDir = join(rootDir, 'repo');
  const user = upstream.serverUser;
  const binaries = upstream.binaries;
  let port = 0;
  let client: pg.Client | undefined;
  const connect = async (): Promise<pg.Client> => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port,
      user: upstream.superuser.user,
      password: upstream.superuser.password,
      database: 'postgres',
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  const standby: StandbyServer = {
    name,
    major: upstream.major,
    get port() {
      return port;
    },
    binaries,
    serverUser: user,
    superuser: upstream.superuser,
    replicationUser: upstream.replicationUser,
    dataDir,
    logFile,
    rootDir,
    get connection() {
      return replicationConnection({ port, replicationUser: upstream.replicationUser });
    },
    client: connect,
    async query<R = any>(sql: string, params?: unknown[]): Promise<R[]> {
      client ??= await connect();
      return (await client.query(sql, params as any[])).rows as R[];
    },
    async promote() {
      await promote({ binaries, user, dataDir, logFile });
    },
    async destroy() {
      await client?.end().catch(() => undefined);
      client = undefined;
      await stopServer({ binaries, user, dataDir, mode: 'immediate' }).catch(() => undefined);
      rmSync(rootDir, { recursive: true, force: true });
    },
  };
  try {
    const storage = createFsStorage({ root: repoDir });
    await runBaseBackup({
      connection: replicationConnection(upstream),
      storage,
      checkpoint: 'fast',
      label: `standby ${name}`,
    });
    const passfile = join(rootDir, 'pgpass');
    writeFileSync(
      passfile,
      `127.0.0.1:${upstream.port}:*:${upstream.replicationUser.user}:${upstream.replicationUser.password}\n`,
      { mode: 0o600 },
    );
    await restoreBackup({
      storage,
      targetDir: dataDir,
      standby: {
        primaryConninfo: `host=127.0.0.1 port=${upstream.port} user=${upstream.replicationUser.user} passfile=${passfile} application_name=${name}`,
      },
      owner: { uid: user.uid, gid: user.gid },
    });
    rmSync(repoDir, { recursive: true, force: true });
    mkdirSync(socketDir);
    chownTree(rootDir, user);
    port = await freePort();
    await startServer({
      binaries,
      user,
      dataDir,
      port,
      socketDir,
      logFile,
      settings: { ...defaultSettings(upstream.major), ...settings },
    });
    await waitStreaming(upstream, name);
  } catch (e) {
    await standby.destroy();
    throw e;
  }
  return standby;
}

/** A TestCluster seen as an Upstream (it already is one; this only narrows the type). */
export function asUpstream(c: TestCluster): Upstream {
  return c;
}
