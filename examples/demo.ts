/**
 * pgark's main job on an embedded default, end to end:
 *   a throwaway PostgreSQL → continuous WAL archiving through a slot → a base backup → a "mistake"
 *   → point-in-time restore to just before the mistake → the restored cluster starts and its data is
 *   checked. Everything it creates is removed at the end.
 *
 *   npm run demo                                   # repository in a temporary directory
 *   npm run demo -- --repo s3://bucket/prefix --s3-endpoint http://127.0.0.1:9000 --s3-path-style
 *   npm run demo -- --major 15                     # another PostgreSQL major (14-18)
 *
 * S3 credentials come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a
 * profile…). Imports only from the public package.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  chownTree,
  createReplicationSlot,
  findServerBinaries,
  formatLsn,
  identifySystem,
  initCluster,
  openStorage,
  parseLsn,
  ReplicationConnection,
  resolveServerUser,
  restoreBackup,
  runBaseBackup,
  startServer,
  startWalArchiver,
  stopServer,
  type ReplicationConnectionOptions,
  type ServerBinaries,
  type ServerUser,
} from 'pgark';

const { values: args } = parseArgs({
  options: {
    repo: { type: 'string' },
    's3-endpoint': { type: 'string' },
    's3-region': { type: 'string' },
    's3-path-style': { type: 'boolean', default: false },
    major: { type: 'string', default: '17' },
    'keep-repo': { type: 'boolean', default: false },
  },
});

const say = (msg: string) => process.stdout.write(`${msg}\n`);

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
  });
}

interface LocalServer {
  dataDir: string;
  port: number;
  logFile: string;
  stop(): Promise<void>;
}

async function start(
  binaries: ServerBinaries,
  user: ServerUser,
  root: string,
  name: string,
  settings: Record<string, string | number>,
): Promise<LocalServer> {
  const dataDir = join(root, name);
  const socketDir = join(root, `${name}-sock`);
  const logFile = join(root, `${name}.log`);
  mkdirSync(socketDir, { recursive: true });
  chownTree(socketDir, user);
  const port = await freePort();
  await startServer({ binaries, user, dataDir, port, socketDir, logFile, settings });
  return { dataDir, port, logFile, stop: () => stopServer({ binaries, user, dataDir, logFile }) };
}

async function sql<T extends pg.QueryResultRow>(port: number, text: string): Promise<T[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const major = Number(args.major);
  const root = mkdtempSync(join(tmpdir(), 'pgark-demo-'));
  chmodSync(root, 0o755); // the server's unprivileged OS user must reach its directories
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(root, { recursive: true, force: true })];
  try {
    // 1. A throwaway PostgreSQL, run as an unprivileged OS user (PostgreSQL refuses root).
    const binaries = findServerBinaries({ major });
    const user = resolveServerUser();
    chownTree(root, user); // logs and sockets are created by the server user
    const dataDir = join(root, 'source');
    mkdirSync(dataDir, { mode: 0o700 });
    chownTree(dataDir, user);
    await initCluster({ binaries, user, dataDir, noSync: true });
    const source = await start(binaries, user, root, 'source', {
      wal_level: 'replica',
      max_wal_senders: 10,
      max_replication_slots: 10,
    });
    cleanups.unshift(() => source.stop());
    say(`started PostgreSQL ${major} (${binaries.source}: ${binaries.binDir}) on 127.0.0.1:${source.port}`);

    const connection: ReplicationConnectionOptions = {
      host: '127.0.0.1',
      port: source.port,
      user: 'postgres',
    };

    // 2. The replication protocol, spoken by pgark: IDENTIFY_SYSTEM and a physical slot.
    const conn = await ReplicationConnection.connect(connection);
    try {
      const sys = await identifySystem(conn);
      say(
        `IDENTIFY_SYSTEM: systemid ${sys.systemIdentifier}, timeline ${sys.timeline}, xlogpos ${formatLsn(sys.xlogPos)}`,
      );
      await createReplicationSlot(conn, { name: 'pgark_demo', reserveWal: true });
    } finally {
      await conn.close();
    }
    for (const s of await sql<{ slot_name: string; slot_type: string; restart_lsn: string }>(
      source.port,
      'SELECT slot_name, slot_type, restart_lsn::text FROM pg_replication_slots ORDER BY slot_name',
    )) {
      say(`slot ${s.slot_name}: ${s.slot_type}, restart_lsn ${s.restart_lsn}`);
    }

    // 3. The repository: a local directory by default, or any S3-compatible store.
    const repo = args.repo ?? join(root, 'repo');
    const storage = openStorage(repo, {
      endpoint: args['s3-endpoint'],
      region: args['s3-region'],
      forcePathStyle: args['s3-path-style'],
    });
    const stanza = `demo-${Date.now()}`;
    cleanups.unshift(async () => {
      if (args.repo && !args['keep-repo']) {
        const keys: string[] = [];
        for await (const o of storage.list(`stanzas/${stanza}/`)) keys.push(o.key);
        await storage.delete(keys);
      }
      await storage.close();
    });
    say(`repository: ${storage.describe()}, stanza ${stanza}`);

    // 4. Continuous WAL archiving through the slot; only durable WAL is acknowledged to the server.
    const archiver = startWalArchiver({ connection, storage, stanza, slot: 'pgark_demo' });
    await sql(source.port, 'CREATE TABLE orders (id int PRIMARY KEY, note text)');
    await sql(source.port, "INSERT INTO orders SELECT g, 'before backup' FROM generate_series(1, 1000) g");

    // 5. A base backup, streamed straight into the repository (self-contained: it carries its WAL).
    const backup = await runBaseBackup({ connection, storage, stanza, checkpoint: 'fast', label: 'demo' });
    say(
      `base backup ${backup.backupId}: ${formatLsn(backup.startLsn)} → ${formatLsn(backup.endLsn)}, ` +
        `${backup.entry.objects.length} objects`,
    );

    // 6. More work, a recovery point, then the mistake.
    await sql(source.port, "INSERT INTO orders SELECT g, 'after backup' FROM generate_series(1001, 1500) g");
    const targetLsn = (
      await sql<{ lsn: string }>(source.port, 'SELECT pg_current_wal_lsn()::text AS lsn')
    )[0]!.lsn;
    await sql(source.port, 'DELETE FROM orders WHERE id % 2 = 0'); // the mistake
    await sql(source.port, 'SELECT pg_switch_wal()');
    const endLsn = (
      await sql<{ lsn: string }>(source.port, 'SELECT pg_current_wal_flush_lsn()::text AS lsn')
    )[0]!.lsn;
    say(`recovery target: ${targetLsn} (before a DELETE of half the rows); WAL written up to ${endLsn}`);

    // Wait until the archiver has made that WAL durable, then stop it.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && archiver.stats().flushedLsn < parseLsn(endLsn)) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await archiver.stop();
    const archived = await archiver.done;
    say(
      `archiver stopped: durable up to ${formatLsn(archived.flushedLsn)}, ${archived.segmentsStored} segments`,
    );
    await source.stop();
    // restore_command runs as the server's OS user: a local repository written by root must be readable by it.
    if (!args.repo) chownTree(repo, user);

    // 7. Point-in-time restore from the repository alone, into a new directory.
    const restoredDir = join(root, 'restored');
    const restored = await restoreBackup({
      storage,
      stanza,
      targetDir: restoredDir,
      owner: user,
      archive: {
        repo: args.repo ? args.repo : resolve(repo),
        s3Endpoint: args['s3-endpoint'],
        s3Region: args['s3-region'],
        s3PathStyle: args['s3-path-style'],
      },
      recovery: { target: { lsn: targetLsn }, action: 'promote' },
    });
    say(`restored backup ${restored.backupId} into ${restoredDir} (${restored.bytes} bytes read)`);
    const copy = await start(binaries, user, root, 'restored', {});
    cleanups.unshift(() => copy.stop());
    let rows = 0;
    for (let i = 0; i < 300; i++) {
      const inRecovery = (await sql<{ r: boolean }>(copy.port, 'SELECT pg_is_in_recovery() AS r'))[0]!.r;
      if (!inRecovery) {
        rows = Number((await sql<{ n: string }>(copy.port, 'SELECT count(*) AS n FROM orders'))[0]!.n);
        break;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    say(
      `restored cluster is up and promoted: orders has ${rows} rows (the source had 1500 before the mistake)`,
    );
    if (rows !== 1500) throw new Error(`expected 1500 rows after point-in-time recovery, found ${rows}`);
    say('demo finished: backup → WAL archive → point-in-time restore verified');
  } finally {
    for (const c of cleanups) {
      try {
        await c();
      } catch (e) {
        process.stderr.write(`cleanup: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  }
}

main().catch((e: unknown) => {
  const code = (e as { code?: string }).code;
  process.stderr.write(
    `demo failed: ${e instanceof Error ? e.message : String(e)}${code ? ` [${code}]` : ''}\n`,
  );
  process.exitCode = 1;
});
