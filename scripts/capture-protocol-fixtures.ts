/**
 * Captures real backend byte streams of replication sessions for the protocol parser tests.
 *
 *   npx tsx scripts/capture-protocol-fixtures.ts [majors…]     (default: 14 15 16 17 18)
 *
 * For each major it starts a throw-away cluster with the test harness, connects pgark's
 * ReplicationConnection through a recording TCP proxy, runs a few sessions, and writes what the
 * server sent after authentication (from the first command on, so no SCRAM exchange is stored) to
 * test/fixtures/protocol/pg<major>-<session>.bin, plus index.json describing every file. Large
 * CopyData runs of a BASE_BACKUP are thinned at message boundaries (first 2 and last 1 data
 * messages of each run are kept) so the fixtures stay small; the framing remains valid.
 */
import { chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startCluster, type Major, type TestCluster } from '../test/harness/postgres';
import { startTcpProxy, serverBytesFrom, type TcpProxy } from '../test/support/tcp-proxy';
import { ReplicationConnection } from '../src/connection/replication-connection';
import { identifySystem } from '../src/replication/identify-system';
import { BackendCode, MessageFramer, buildStandbyStatusUpdate, type BackendMessage } from '../src/protocol';
import { formatLsn } from '../src/lsn';

const OUT_DIR = resolve(import.meta.dirname, '..', 'test', 'fixtures', 'protocol');

interface FixtureInfo {
  file: string;
  major: number;
  serverVersion: string;
  session: string;
  commands: string[];
  bytes: number;
  messages: number;
  thinned: boolean;
  notes?: string;
}

function frame(buf: Buffer): BackendMessage[] {
  const f = new MessageFramer();
  f.push(buf);
  const out: BackendMessage[] = [];
  for (let m = f.next(); m; m = f.next()) out.push(m);
  if (f.midMessage) throw new Error('capture ended mid-message');
  return out;
}

function encode(m: BackendMessage): Buffer {
  const h = Buffer.alloc(5);
  h[0] = m.code;
  h.writeInt32BE(m.body.length + 4, 1);
  return Buffer.concat([h, m.body]);
}

/** Keeps every message except the middle of long runs of archive/manifest data messages. */
function thin(messages: BackendMessage[], legacy: boolean): BackendMessage[] {
  const isData = (m: BackendMessage): boolean =>
    m.code === BackendCode.CopyData && (legacy || m.body[0] === 0x64); /* 'd' sub-message */
  const out: BackendMessage[] = [];
  let run: BackendMessage[] = [];
  const flush = (): void => {
    if (run.length <= 3) out.push(...run);
    else out.push(run[0]!, run[1]!, run[run.length - 1]!);
    run = [];
  };
  for (const m of messages) {
    if (isData(m)) run.push(m);
    else {
      flush();
      out.push(m);
    }
  }
  flush();
  return out;
}

async function session(
  cluster: TestCluster,
  proxy: TcpProxy,
  body: (conn: ReplicationConnection) => Promise<string[]>,
): Promise<{ bytes: Buffer; commands: string[]; version: string }> {
  const cfg = cluster.connectionConfig({ user: cluster.replicationUser, replication: true });
  const conn = await ReplicationConnection.connect({
    host: '127.0.0.1',
    port: proxy.port,
    user: cfg.user,
    password: cfg.password,
    ssl: 'disable',
  });
  const pc = proxy.connections[proxy.connections.length - 1]!;
  const startAt = pc.serverBytes; // everything up to the startup's ReadyForQuery
  const commands = await body(conn);
  await conn.close();
  await new Promise((r) => setTimeout(r, 50));
  return {
    bytes: serverBytesFrom(pc, startAt),
    commands,
    version: conn.parameters.get('server_version') ?? '',
  };
}

async function runQuiet(conn: ReplicationConnection, sql: string, log: string[]): Promise<void> {
  log.push(sql);
  try {
    await conn.query(sql);
  } catch {
    /* errors are part of the capture */
  }
}

async function captureMajor(major: Major, index: FixtureInfo[]): Promise<void> {
  const cluster = await startCluster({ major, settings: { restore_command: 'false' } });
  const proxy = await startTcpProxy(cluster.host, cluster.port);
  const write = (
    name: string,
    s: { bytes: Buffer; commands: string[]; version: string },
    thinned = false,
    notes?: string,
  ): void => {
    const file = `pg${major}-${name}.bin`;
    writeFileSync(join(OUT_DIR, file), s.bytes);
    index.push({
      file,
      major,
      serverVersion: s.version,
      session: name,
      commands: s.commands,
      bytes: s.bytes.length,
      messages: frame(s.bytes).length,
      thinned,
      ...(notes ? { notes } : {}),
    });
  };
  try {
    // 1. Small commands and their errors.
    write(
      'commands',
      await session(cluster, proxy, async (conn) => {
        const log: string[] = [];
        for (const sql of [
          'IDENTIFY_SYSTEM',
          'SHOW wal_segment_size',
          'SHOW server_version_num',
          'SHOW no_such_setting',
          'TIMELINE_HISTORY 1',
          major >= 15
            ? 'CREATE_REPLICATION_SLOT "fixture_slot" PHYSICAL (RESERVE_WAL)'
            : 'CREATE_REPLICATION_SLOT "fixture_slot" PHYSICAL RESERVE_WAL',
          'CREATE_REPLICATION_SLOT "fixture_slot" PHYSICAL',
          ...(major >= 15
            ? ['READ_REPLICATION_SLOT "fixture_slot"', 'READ_REPLICATION_SLOT "no_such_slot"']
            : ['READ_REPLICATION_SLOT "fixture_slot"']),
          'DROP_REPLICATION_SLOT "fixture_slot"',
          'DROP_REPLICATION_SLOT "fixture_slot"',
          'SELECT 1',
        ]) {
          await runQuiet(conn, sql, log);
        }
        return log;
      }),
    );

    // 2. A short START_REPLICATION: from the page holding the flush position, with some new WAL,
    //    one status update with replyRequested (the server answers with a keepalive), then CopyDone.
    write(
      'start-replication',
      await session(cluster, proxy, async (conn) => {
        const sys = await identifySystem(conn);
        const start = sys.xlogPos - (sys.xlogPos % 8192n);
        const sql = `START_REPLICATION ${formatLsn(start)} TIMELINE ${sys.timeline}`;
        const stream = conn.copyBoth(sql);
        let w = 0;
        let k = 0;
        let generated = false;
        let sentDone = false;
        for await (const ev of stream) {
          if (ev.type !== 'copyData') continue;
          if (ev.data[0] === 0x77) w++;
          if (ev.data[0] === 0x6b) k++;
          if (!generated) {
            generated = true;
            await cluster.query(
              'CREATE TABLE IF NOT EXISTS fixture_t AS SELECT g FROM generate_series(1, 200) g',
            );
            await conn.sendCopyData(
              buildStandbyStatusUpdate({ writeLsn: start, flushLsn: 0n, applyLsn: 0n, replyRequested: true }),
            );
          }
          if (!sentDone && w >= 2 && k >= 1) {
            sentDone = true;
            conn.sendCopyDone();
          }
        }
        return ['IDENTIFY_SYSTEM', sql, "(client) CopyData 'r' replyRequested", '(client) CopyDone'];
      }),
    );

    // 3. A base backup (legacy protocol on 14, single CopyOut with n/d/p/m sub-messages on 15+).
    if (major === 14 || major === 17) {
      const s = await session(cluster, proxy, async (conn) => {
        const sql =
          major >= 15
            ? "BASE_BACKUP (LABEL 'fixture', CHECKPOINT 'fast', MANIFEST 'yes', WAIT 0)"
            : "BASE_BACKUP LABEL 'fixture' FAST MANIFEST 'yes' NOWAIT";
        for await (const ev of conn.copyOut(sql)) void ev;
        return [sql];
      });
      const thinned = thin(frame(s.bytes), major < 15);
      write(
        'base-backup',
        { ...s, bytes: Buffer.concat(thinned.map(encode)) },
        true,
        'archive and manifest data runs thinned to their first 2 and last 1 CopyData messages',
      );
    }

    // 4. TIMELINE_HISTORY after a promotion: archive recovery (recovery.signal, restore_command
    //    'false') ends on a new timeline 2, which writes 00000002.history.
    // 4. PG18 (data checksums on by default): a page with a bad checksum makes BASE_BACKUP send
    //    WARNING notices, all data, the end LSN, then ErrorResponse XX001 (basebackup.c perform_base_backup).
    if (major === 18) {
      await cluster.query('CREATE TABLE fixture_corrupt AS SELECT g FROM generate_series(1, 1000) g');
      await cluster.query('CHECKPOINT');
      const [rel] = await cluster.query<{ p: string }>("SELECT pg_relation_filepath('fixture_corrupt') AS p");
      await cluster.stop('fast');
      const file = join(cluster.dataDir, rel!.p);
      const page = readFileSync(file);
      page[4000] = page[4000]! ^ 0xff;
      writeFileSync(file, page);
      await cluster.start();
      const s = await session(cluster, proxy, async (conn) => {
        const sql = "BASE_BACKUP (LABEL 'fixture-checksum', CHECKPOINT 'fast', WAIT 0)";
        try {
          for await (const ev of conn.copyOut(sql)) void ev;
        } catch {
          /* XX001 is the point of this capture */
        }
        return [sql];
      });
      const thinned = thin(frame(s.bytes), false);
      write(
        'base-backup-checksum-failure',
        { ...s, bytes: Buffer.concat(thinned.map(encode)) },
        true,
        'data runs thinned as in base-backup; ends with ErrorResponse XX001 after the end LSN',
      );
      await cluster.query('DROP TABLE fixture_corrupt');
    }

    // 5. TIMELINE_HISTORY after a promotion.
    if (major === 14 || major === 18) {
      await cluster.stop('fast');
      const sig = join(cluster.dataDir, 'recovery.signal');
      writeFileSync(sig, '');
      const st = statSync(cluster.dataDir);
      chownSync(sig, st.uid, st.gid);
      await cluster.start();
      for (let i = 0; i < 100; i++) {
        const [r] = await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        if (!r?.r) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      write(
        'timeline-history',
        await session(cluster, proxy, async (conn) => {
          const log: string[] = [];
          for (const sql of ['IDENTIFY_SYSTEM', 'TIMELINE_HISTORY 2', 'TIMELINE_HISTORY 3'])
            await runQuiet(conn, sql, log);
          return log;
        }),
      );
    }
  } finally {
    await proxy.close();
    await cluster.destroy();
  }
}

async function main(): Promise<void> {
  mkdirSync(OUT_DIR, { recursive: true });
  const majors = (
    process.argv.slice(2).length ? process.argv.slice(2).map(Number) : [14, 15, 16, 17, 18]
  ) as Major[];
  // Re-capturing some majors keeps the other majors' entries.
  const indexFile = join(OUT_DIR, 'index.json');
  const previous = existsSync(indexFile)
    ? (JSON.parse(readFileSync(indexFile, 'utf8')) as { fixtures: FixtureInfo[] }).fixtures
    : [];
  const index: FixtureInfo[] = previous.filter((f) => !majors.includes(f.major as Major));
  for (const major of majors) {
    await captureMajor(major, index);
    process.stdout.write(`captured pg${major}\n`);
  }
  writeFileSync(
    indexFile,
    JSON.stringify(
      { capturedAt: new Date().toISOString(), fixtures: index.sort((a, b) => a.file.localeCompare(b.file)) },
      null,
      2,
    ) + '\n',
  );
  const total = index.reduce((a, f) => a + f.bytes, 0);
  process.stdout.write(`wrote ${index.length} fixtures, ${total} bytes\n`);
}

await main();
