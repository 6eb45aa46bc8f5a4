/**
 * Connection bench: pgark's MessageFramer + ReplicationConnection vs node-postgres' pg-protocol
 * Parser on a large CopyOut (BASE_BACKUP, TARGET client). Measures; never asserts.
 *
 *   npx tsx bench/connection-framer.ts [--mib 200] [--runs 5] [--save stream.bin]
 *
 * 1. Starts a PG17 cluster with the test harness and fills it to about --mib MiB.
 * 2. Records one BASE_BACKUP's raw backend byte stream through a TCP proxy (in memory).
 * 3. Replay: feeds that stream in 64 KiB chunks (a socket's read size) to each parser, alternating,
 *    --runs times; reports the median MB/s.
 * 4. End to end: BASE_BACKUP through ReplicationConnection (pull loop) vs pg.Client with a
 *    'copyData' listener on its connection (pg-protocol parsing, no backpressure), alternating.
 * 5. Slow consumer (≈ 100 MB/s, an S3-like sink): peak external (Buffer) memory with each design.
 * Results: bench/results/connection-framer.jsonl (one JSON line per measurement).
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Parser } from 'pg-protocol/dist/parser';
import { startCluster, type TestCluster } from '../test/harness/postgres';
import { startTcpProxy, serverBytesFrom } from '../test/support/tcp-proxy';
import { ReplicationConnection } from '../src/connection/replication-connection';
import { BackendCode, MessageFramer } from '../src/protocol';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results', 'connection-framer.jsonl');
const MB = 1e6;
const SQL = "BASE_BACKUP (LABEL 'bench', CHECKPOINT 'fast', MANIFEST 'yes', WAIT 0)";

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function record(row: Record<string, unknown>): void {
  const line = {
    bench: 'connection-framer',
    at: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    ...row,
  };
  appendFileSync(RESULTS, JSON.stringify(line) + '\n');
  process.stdout.write(JSON.stringify(row) + '\n');
}

function replayFramer(chunks: Buffer[]): number {
  const f = new MessageFramer();
  let bytes = 0;
  for (const c of chunks) {
    f.push(c);
    for (let m = f.next(); m; m = f.next()) if (m.code === BackendCode.CopyData) bytes += m.body.length;
  }
  return bytes;
}

function replayPgProtocol(chunks: Buffer[]): number {
  const p = new Parser();
  let bytes = 0;
  for (const c of chunks) {
    p.parse(c, (msg) => {
      if (msg.name === 'copyData') bytes += (msg as unknown as { chunk: Buffer }).chunk.length;
    });
  }
  return bytes;
}

async function viaPgarkConnection(
  cluster: TestCluster,
  slowMBps?: number,
): Promise<{ bytes: number; ms: number; peakExternal: number }> {
  const cfg = cluster.connectionConfig({ user: cluster.replicationUser, replication: true });
  const conn = await ReplicationConnection.connect({
    host: cfg.host,
    port: cfg.port,
    user: cfg.user,
    password: cfg.password,
    ssl: 'disable',
  });
  const base = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const t0 = performance.now();
  let bytes = 0;
  let sinceSleep = 0;
  for await (const ev of conn.copyOut(SQL)) {
    if (ev.type !== 'copyData') continue;
    bytes += ev.data.length;
    sinceSleep += ev.data.length;
    if (slowMBps && sinceSleep >= 1 << 20) {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
      await new Promise((r) => setTimeout(r, (sinceSleep / (slowMBps * MB)) * 1000));
      sinceSleep = 0;
    }
  }
  const ms = performance.now() - t0;
  await conn.close();
  return { bytes, ms, peakExternal: peak };
}

/** pg.Client does startup; CopyData arrives through pg-protocol's flowing parser (no backpressure). */
async function viaPgProtocol(
  cluster: TestCluster,
  slowMBps?: number,
): Promise<{ bytes: number; ms: number; peakExternal: number }> {
  const cfg = cluster.connectionConfig({ user: cluster.replicationUser, replication: true });
  const client = new pg.Client({ ...cfg, replication: 'true' } as pg.ClientConfig);
  await client.connect();
  const con = (client as unknown as { connection: pg.Connection & { stream: import('node:net').Socket } })
    .connection;
  // Only our listeners: pg.Client itself would error on result sets of a query it did not send.
  con.removeAllListeners();
  con.on('error', () => {});
  const base = process.memoryUsage().arrayBuffers;
  let peak = 0;
  let bytes = 0;
  const t0 = performance.now();
  // A consumer that can only keep up at slowMBps has to queue what arrives faster: copy each chunk
  // (pg-protocol may overwrite its buffer) and drain the queue at the consumer's pace.
  const queue: Buffer[] = [];
  let done = false;
  const finished = new Promise<void>((resolve, reject) => {
    con.on('copyData', (m: { chunk: Buffer }) => {
      if (slowMBps) queue.push(Buffer.from(m.chunk));
      else bytes += m.chunk.length;
    });
    con.on('errorMessage', (e: Error) => reject(e));
    con.once('readyForQuery', () => {
      done = true;
      resolve();
    });
  });
  con.stream.write(queryMessage(SQL));
  if (slowMBps) {
    let sinceSleep = 0;
    while (!done || queue.length) {
      const c = queue.shift();
      if (!c) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      bytes += c.length;
      sinceSleep += c.length;
      if (sinceSleep >= 1 << 20) {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
        await new Promise((r) => setTimeout(r, (sinceSleep / (slowMBps * MB)) * 1000));
        sinceSleep = 0;
      }
    }
  }
  await finished;
  const ms = performance.now() - t0;
  await client.end();
  return { bytes, ms, peakExternal: peak };
}

function queryMessage(sql: string): Buffer {
  const text = Buffer.from(sql + '\0');
  const b = Buffer.alloc(5 + text.length);
  b[0] = 0x51;
  b.writeInt32BE(4 + text.length, 1);
  text.copy(b, 5);
  return b;
}

async function main(): Promise<void> {
  mkdirSync(dirname(RESULTS), { recursive: true });
  const mib = arg('mib', 200);
  const runs = arg('runs', 5);
  const cluster = await startCluster({ major: 17 });
  try {
    const rows = Math.round((mib * 1024 * 1024) / 190);
    await cluster.query(
      `CREATE TABLE bench AS SELECT g, repeat(md5(g::text), 4) AS pad FROM generate_series(1, ${rows}) g`,
    );
    await cluster.query('CHECKPOINT');

    // Record the raw stream.
    const proxy = await startTcpProxy(cluster.host, cluster.port);
    const cfg = cluster.connectionConfig({ user: cluster.replicationUser, replication: true });
    const conn = await ReplicationConnection.connect({
      host: cfg.host,
      port: proxy.port,
      user: cfg.user,
      password: cfg.password,
      ssl: 'disable',
    });
    const pc = proxy.connections[0]!;
    const from = pc.serverBytes;
    for await (const ev of conn.copyOut(SQL)) void ev;
    await conn.close();
    const stream = Buffer.from(serverBytesFrom(pc, from));
    await proxy.close();
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 65536) chunks.push(stream.subarray(i, i + 65536));
    process.stdout.write(`recorded ${stream.length} bytes in ${chunks.length} chunks\n`);
    const saveAt = process.argv.indexOf('--save');
    if (saveAt >= 0) writeFileSync(process.argv[saveAt + 1]!, stream);

    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < runs; r++) {
      let t = performance.now();
      const a = replayFramer(chunks);
      ours.push(stream.length / MB / ((performance.now() - t) / 1000));
      t = performance.now();
      const b = replayPgProtocol(chunks);
      theirs.push(stream.length / MB / ((performance.now() - t) / 1000));
      if (a !== b) throw new Error(`parsers disagree: ${a} vs ${b}`);
    }
    record({
      case: 'replay',
      streamBytes: stream.length,
      runs,
      framerMBps: median(ours),
      pgProtocolMBps: median(theirs),
      ratio: median(ours) / median(theirs),
    });

    const e2eOurs: number[] = [];
    const e2eTheirs: number[] = [];
    for (let r = 0; r < Math.min(runs, 3); r++) {
      const a = await viaPgarkConnection(cluster);
      e2eOurs.push(a.bytes / MB / (a.ms / 1000));
      const b = await viaPgProtocol(cluster);
      e2eTheirs.push(b.bytes / MB / (b.ms / 1000));
    }
    record({
      case: 'end-to-end',
      runs: Math.min(runs, 3),
      pgarkMBps: median(e2eOurs),
      pgProtocolMBps: median(e2eTheirs),
      ratio: median(e2eOurs) / median(e2eTheirs),
    });

    const slowA = await viaPgarkConnection(cluster, 100);
    const slowB = await viaPgProtocol(cluster, 100);
    record({
      case: 'slow-consumer-100MBps',
      pgarkPeakExternalMiB: slowA.peakExternal / 2 ** 20,
      pgProtocolPeakExternalMiB: slowB.peakExternal / 2 ** 20,
      pgarkSeconds: slowA.ms / 1000,
      pgProtocolSeconds: slowB.ms / 1000,
    });
  } finally {
    await cluster.destroy();
  }
}

await main();
