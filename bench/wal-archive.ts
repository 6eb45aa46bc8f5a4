/**
 * WAL archiver bench (measures, never asserts), on Debian's PostgreSQL 15 server, all cases in one
 * run against pg_receivewal as the baseline:
 *
 *   pg_receivewal (dir)  |  pg_receivewal --synchronous (dir)  |  pgark async/sync → dir  |  pgark async/sync → S3
 *
 * For each case: a fresh slot, the receiver started (synchronous cases are named in
 * synchronous_standby_names), VACUUM of the pgbench tables, CHECKPOINT, `pgbench -c 4 -j 2 -T <seconds>`
 * (the cases alternate their order from run to run); meanwhile
 * pg_stat_replication is sampled every 200 ms (bytes between pg_current_wal_lsn() and the
 * receiver's flush_lsn, and flush_lag); after pgbench ends, the catch-up time until the receiver's
 * position reaches pg_current_wal_lsn(): flush_lsn for synchronous cases, write_lsn for
 * asynchronous ones (plain pg_receivewal flushes only at segment ends, so its flush_lsn would not
 * catch up until the next segment; pgark async flushes every flushIntervalMs). Reports tps, lag
 * max/median, catch-up, and ratios to the baseline, and the receiver side's CPU per transaction
 * (this process plus pg_receivewal's) with how busy the machine was. docs/bench-wal.md summarises a run.
 *
 *   npx tsx bench/wal-archive.ts [--seconds 60] [--runs 1] [--scale 10] [--cases a,b,…] [--in-process]
 *
 * pgark runs as an operator runs it, `pgark wal-archive [--synchronous] -q` in its own process (the
 * CLI bundled by esbuild, plain node; blockingFlush on, as the CLI sets it), like pg_receivewal. With
 * `--in-process` it runs as startWalArchiver inside this process instead, where the 200 ms sampler
 * and pgbench's output share its event loop.
 *
 * Results: one JSON line per case in bench/results/wal-archive.jsonl.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { startWalArchiver, type WalArchiverHandle } from '../src/archive/wal-archiver';
import { createFsStorage } from '../src/storage/fs-storage';
import { createS3Storage } from '../src/storage/s3-storage';
import { createS3Client } from '../src/storage/s3-client';
import type { Storage } from '../src/storage/storage';
import { startS3Server, type S3Server } from '../test/harness/s3-server';
import { startCluster, type TestCluster } from '../test/harness/postgres';
import { arg, bundleCli, median, procCpuSeconds } from './bench-util';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results', 'wal-archive.jsonl');
const BIN = '/usr/lib/postgresql/15/bin';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type CaseName =
  'receivewal' | 'receivewal-sync' | 'pgark-dir' | 'pgark-dir-sync' | 'pgark-s3' | 'pgark-s3-sync';
const ALL: CaseName[] = [
  'receivewal',
  'receivewal-sync',
  'pgark-dir',
  'pgark-dir-sync',
  'pgark-s3',
  'pgark-s3-sync',
];

interface Receiver {
  appName: string;
  /** CPU seconds (user + system) the receiver's own child process used so far (0 when in this process). */
  childCpuSeconds(): number;
  stop(): Promise<void>;
}

/** The machine's busy and total CPU jiffies, from the first line of /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const nums = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = nums.reduce((a, b) => a + b, 0);
  const idle = (nums[3] ?? 0) + (nums[4] ?? 0);
  return { busy: total - idle, total };
}

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const c = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => res({ code, out }));
  });
}

/** A fresh bucket on the bench's S3 server. */
async function makeBucket(s3: S3Server, run: number): Promise<string> {
  const bucket = `walbench-${Date.now().toString(36)}-${run}`;
  const client = createS3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return bucket;
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '60'));
  const runs = Number(arg('runs', '1'));
  const scale = Number(arg('scale', '10'));
  const cases = arg('cases', ALL.join(',')).split(',') as CaseName[];
  const inProcess = process.argv.includes('--in-process');
  // Inside the repository (its .tmp/ is git-ignored) so that the bundle's imports resolve to node_modules.
  const cli = join(HERE, '..', '.tmp', 'bench', `pgark-cli-${process.pid}.mjs`);
  if (!inProcess) bundleCli(cli);
  mkdirSync(dirname(RESULTS), { recursive: true });

  const cluster: TestCluster = await startCluster({
    major: 15,
    flavor: 'debian',
    settings: { max_wal_size: '1GB' },
  });
  const needS3 = cases.some((c) => c.startsWith('pgark-s3'));
  let s3: S3Server | undefined;
  if (needS3) s3 = await startS3Server();
  const env = { ...process.env, PGPASSWORD: cluster.superuser.password };
  const conn = ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', cluster.superuser.user];
  const init = await run(join(BIN, 'pgbench'), [...conn, '-i', '-s', String(scale), 'postgres'], env);
  if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.out}`);

  const header = {
    machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    postgres: (await cluster.query<{ v: string }>('SELECT version() AS v'))[0]!.v,
    s3: needS3 ? 'swift s3api (local)' : undefined,
    pgbench: `-c 4 -j 2 -T ${seconds} (scale ${scale})`,
    pgarkRunAs: inProcess
      ? 'startWalArchiver in the bench process'
      : '`pgark wal-archive -q` child (bundled CLI, plain node)',
  };
  process.stdout.write(`# ${JSON.stringify(header)}\n`);
  const results: Record<string, unknown>[] = [];

  for (let r = 0; r < runs; r++) {
    // The cases alternate their order from run to run (A B, B A, A B, …): a case that always ran
    // second would always meet the database as the first left it (more dead rows, a checkpoint due).
    const order = r % 2 === 0 ? cases : [...cases].reverse();
    for (const name of order) {
      const slot = `bench_${name.replace(/-/g, '_')}_${r}`;
      await cluster.query(`SELECT pg_create_physical_replication_slot($1, true)`, [slot]);
      const dir = mkdtempSync(join(os.tmpdir(), 'pgark-walbench-'));
      const sync = name.endsWith('-sync');
      let receiver: Receiver;
      let storage: Storage | undefined;
      if (name.startsWith('receivewal')) {
        const args = [
          '-h',
          '127.0.0.1',
          '-p',
          String(cluster.port),
          '-U',
          cluster.superuser.user,
          '-D',
          dir,
          '-S',
          slot,
          '--no-loop',
        ];
        if (sync) args.push('--synchronous');
        const child: ChildProcess = spawn(join(BIN, 'pg_receivewal'), args, { env, stdio: 'ignore' });
        receiver = {
          appName: 'pg_receivewal',
          childCpuSeconds: () => (child.pid === undefined ? 0 : (procCpuSeconds(child.pid) ?? 0)),
          stop: async () => {
            child.kill('SIGINT');
            await new Promise((res) => child.once('exit', res));
          },
        };
      } else if (!inProcess) {
        // pgark as an operator runs it: `pgark wal-archive` in its own process (the bundled CLI, plain
        // node), like pg_receivewal; nothing else shares its event loop.
        const s3Case = name.startsWith('pgark-s3');
        const repoArgs = s3Case
          ? [
              '--repo',
              `s3://${await makeBucket(s3!, r)}/wal`,
              '--s3-endpoint',
              s3!.endpoint,
              '--s3-region',
              s3!.region,
              '--s3-path-style',
            ]
          : ['--repo', dir];
        const childEnv = s3Case
          ? { ...env, AWS_ACCESS_KEY_ID: s3!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3!.secretAccessKey }
          : env;
        const args = [
          cli,
          'wal-archive',
          '-d',
          `host=127.0.0.1 port=${cluster.port} user=${cluster.superuser.user} dbname=postgres sslmode=disable`,
          ...repoArgs,
          '--slot',
          slot,
          '-q',
        ];
        if (sync) args.push('--synchronous');
        const child: ChildProcess = spawn(process.execPath, args, {
          env: childEnv,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let err = '';
        child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        receiver = {
          appName: slot,
          childCpuSeconds: () => (child.pid === undefined ? 0 : (procCpuSeconds(child.pid) ?? 0)),
          stop: async () => {
            child.kill('SIGINT');
            const code = await new Promise<number | null>((res) => child.once('exit', res));
            if (code !== 0) throw new Error(`pgark wal-archive exited with ${code}: ${err.slice(-2000)}`);
          },
        };
      } else {
        if (name.startsWith('pgark-s3')) {
          const bucket = await makeBucket(s3!, r);
          storage = createS3Storage({
            endpoint: s3!.endpoint,
            region: s3!.region,
            forcePathStyle: true,
            credentials: { accessKeyId: s3!.accessKeyId, secretAccessKey: s3!.secretAccessKey },
            bucket,
          } as Parameters<typeof createS3Storage>[0]);
        } else {
          storage = createFsStorage({ root: dir });
        }
        const h: WalArchiverHandle = startWalArchiver({
          connection: { ...cluster.connectionConfig(), ssl: 'disable' },
          storage,
          slot,
          synchronous: sync,
          // As `pgark wal-archive` runs it (a process that only archives).
          blockingFlush: process.env.PGARK_BENCH_ASYNC_FLUSH !== '1',
        });
        receiver = {
          appName: slot,
          childCpuSeconds: () => 0,
          stop: async () => {
            await h.stop();
            await h.done;
          },
        };
      }
      // Wait until the receiver streams.
      for (let i = 0; ; i++) {
        const rows = await cluster.query(
          `SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`,
          [receiver.appName],
        );
        if (rows.length) break;
        if (i > 300) throw new Error(`${name}: receiver never streamed`);
        await sleep(100);
      }
      await cluster.query(
        `ALTER SYSTEM SET synchronous_standby_names = '${sync ? `"${receiver.appName}"` : ''}'`,
      );
      await cluster.query('SELECT pg_reload_conf()');
      await sleep(500);
      // Every case starts from the same state: pgbench itself vacuums only its small tables, so
      // pgbench_accounts would collect the dead rows of every earlier case until autovacuum ran
      // in the middle of some later case (seen as a ±15 % swing of tps between runs).
      await cluster.query('VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history');
      await cluster.query('CHECKPOINT');

      const lagBytes: number[] = [];
      const lagMs: number[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const rows = await cluster.query<{ b: string; l: number | null }>(
            `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint::text AS b, extract(epoch FROM flush_lag) * 1000 AS l
               FROM pg_stat_replication WHERE application_name = $1`,
            [receiver.appName],
          );
          if (rows[0]) {
            lagBytes.push(Number(rows[0].b));
            if (rows[0].l !== null) lagMs.push(Number(rows[0].l));
          }
          await sleep(200);
        }
      })();
      // CPU over the pgbench window: this process (the sampler in every case, plus pgark's
      // archiver in the pgark cases), the receiver's child (pg_receivewal), and the whole machine
      // (how close to saturated the 2 cores are: on a saturated machine the receiver's CPU per
      // commit is taken from the server's backends, and shows as tps).
      const cpu0 = process.cpuUsage();
      const child0 = receiver.childCpuSeconds();
      const mach0 = machineCpu();
      const bench = await run(
        join(BIN, 'pgbench'),
        [...conn, '-c', '4', '-j', '2', '-T', String(seconds), 'postgres'],
        env,
      );
      const cpu1 = process.cpuUsage(cpu0);
      const childCpuS = receiver.childCpuSeconds() - child0;
      const mach1 = machineCpu();
      sampling = false;
      await sampler;
      const tps = Number(/tps = ([0-9.]+)/.exec(bench.out)?.[1] ?? NaN);
      const transactions = Number(
        /number of transactions actually processed: (\d+)/.exec(bench.out)?.[1] ?? NaN,
      );
      const benchProcessCpuS = (cpu1.user + cpu1.system) / 1e6;
      const machineBusy = (mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total);
      const end = Date.now();
      const [{ target }] = (await cluster.query<{ target: string }>(
        'SELECT pg_current_wal_lsn()::text AS target',
      )) as [{ target: string }];
      const caughtUpBy = sync ? 'flush_lsn' : 'write_lsn';
      for (;;) {
        const rows = await cluster.query<{ ok: boolean }>(
          `SELECT ${caughtUpBy} >= $2::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = $1`,
          [receiver.appName, target],
        );
        if (rows[0]?.ok) break;
        if (Date.now() - end > 120_000) break;
        await sleep(50);
      }
      const catchUpMs = Date.now() - end;
      await cluster.query(`ALTER SYSTEM SET synchronous_standby_names = ''`);
      await cluster.query('SELECT pg_reload_conf()');
      await receiver.stop();
      await storage?.close();
      await cluster.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
      rmSync(dir, { recursive: true, force: true });
      const row = {
        case: name,
        run: r,
        tps,
        lagBytesMax: Math.max(0, ...lagBytes),
        lagBytesMedian: median(lagBytes),
        flushLagMsMax: Math.max(0, ...lagMs),
        flushLagMsMedian: median(lagMs),
        catchUpMs,
        catchUpBy: caughtUpBy,
        benchProcessCpuS: Number(benchProcessCpuS.toFixed(2)),
        receiverChildCpuS: Number(childCpuS.toFixed(2)),
        // Receiver-side CPU per transaction: this process + the receiver's child, in µs.
        receiverCpuUsPerTx: Number((((benchProcessCpuS + childCpuS) / transactions) * 1e6).toFixed(1)),
        machineBusy: Number(machineBusy.toFixed(3)),
      };
      results.push(row);
      process.stdout.write(JSON.stringify(row) + '\n');
    }
  }
  // Ratios of the medians to the matching pg_receivewal baseline.
  const med = (c: string, k: string) => median(results.filter((x) => x.case === c).map((x) => Number(x[k])));
  for (const name of cases) {
    const base = name.endsWith('-sync') ? 'receivewal-sync' : 'receivewal';
    const line = {
      ...header,
      case: name,
      runs,
      tps: med(name, 'tps'),
      lagBytesMax: med(name, 'lagBytesMax'),
      lagBytesMedian: med(name, 'lagBytesMedian'),
      flushLagMsMax: med(name, 'flushLagMsMax'),
      flushLagMsMedian: med(name, 'flushLagMsMedian'),
      catchUpMs: med(name, 'catchUpMs'),
      receiverCpuUsPerTx: med(name, 'receiverCpuUsPerTx'),
      machineBusy: med(name, 'machineBusy'),
      perRunTps: results.filter((x) => x.case === name).map((x) => x.tps),
      catchUpBy: name.endsWith('-sync') ? 'flush_lsn' : 'write_lsn',
      baseline: base,
      tpsCostVsBaseline: cases.includes(base) ? med(base, 'tps') / med(name, 'tps') : undefined,
      at: new Date().toISOString(),
    };
    appendFileSync(RESULTS, JSON.stringify(line) + '\n');
    process.stdout.write(`summary ${JSON.stringify(line)}\n`);
  }
  await s3?.stop();
  await cluster.destroy();
  if (!inProcess) rmSync(cli, { force: true });
}

main().catch((e: unknown) => {
  process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = 1;
});
