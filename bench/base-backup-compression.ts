/**
 * Server-side vs client-side compression in a base backup (issue 5: "client-side compression where
 * it is cheaper for the user"; measures, never asserts). One data set on Debian's PostgreSQL 15
 * (built with lz4 and zstd), backed up by `pgark backup -X none --fast` into a local directory with:
 * none, server-gzip/lz4/zstd, client-gzip/lz4/zstd (default levels). For each case:
 *
 * - wall time of the pgark process;
 * - pgark's CPU seconds (user + system, GNU time);
 * - the server's CPU seconds for the backup: the walsender backend running BASE_BACKUP (its pid from
 *   pg_stat_progress_basebackup), utime + stime from /proc/<pid>/stat, sampled every 20 ms until it
 *   exits (so up to ~20 ms of its last CPU may be missed);
 * - bytes stored (the repository directory after the run).
 *
 *   npx tsx bench/base-backup-compression.ts [--size-mb 384] [--runs 1] [--cases none,server-zstd,…]
 *
 * Cases are interleaved per run (run 1: every case, run 2: every case…) so a load change on the
 * shared machine spreads over all of them. Prints one JSON object; with --results FILE also appends
 * it as one line to FILE (e.g. bench/results/base-backup-compression.jsonl).
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, TEST_ROOT, type TestCluster } from '../test/harness/postgres';
import { generateDataset } from '../test/harness/datagen';
import { arg, bundleCli, dirBytes, median, procCpuSeconds } from './bench-util';

const MIB = 1024 * 1024;
const HERE = dirname(fileURLToPath(import.meta.url));
const ALL_CASES = [
  'none',
  'server-gzip',
  'server-lz4',
  'server-zstd',
  'client-gzip',
  'client-lz4',
  'client-zstd',
];

/**
 * Follows the BASE_BACKUP walsender of `cluster` while `running()` holds: its pid from
 * pg_stat_progress_basebackup, its CPU from /proc. Returns the last CPU reading.
 */
async function watchBackend(cluster: TestCluster, running: () => boolean): Promise<number | undefined> {
  let pid: number | undefined;
  let cpu: number | undefined;
  while (running()) {
    if (pid === undefined) {
      const r = await cluster.query<{ pid: number }>('SELECT pid FROM pg_stat_progress_basebackup');
      pid = r[0]?.pid;
    }
    if (pid !== undefined) cpu = procCpuSeconds(pid) ?? cpu;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cpu;
}

interface CaseResult {
  seconds: number;
  clientCpuSeconds: number;
  serverCpuSeconds: number | undefined;
  storedBytes: number;
}

async function runCase(
  cluster: TestCluster,
  cli: string,
  conninfo: string,
  repo: string,
  spec: string,
  env: NodeJS.ProcessEnv,
): Promise<CaseResult> {
  let alive = true;
  const t0 = process.hrtime.bigint();
  const child = spawn(
    '/usr/bin/time',
    [
      '-f',
      'CPU %U %S',
      process.execPath,
      cli,
      'backup',
      '-d',
      conninfo,
      '--repo',
      repo,
      '-X',
      'none',
      '--fast',
      '--compress',
      spec,
      '--json',
    ],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const server = watchBackend(cluster, () => alive);
  const code = await exited;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  alive = false;
  const serverCpuSeconds = await server;
  if (code !== 0) throw new Error(`pgark backup --compress ${spec} exited ${code}: ${err.slice(-2000)}`);
  const m = /CPU ([\d.]+) ([\d.]+)/.exec(err);
  const storedBytes = dirBytes(repo);
  rmSync(repo, { recursive: true, force: true });
  return {
    seconds,
    clientCpuSeconds: m ? Number(m[1]) + Number(m[2]) : NaN,
    serverCpuSeconds,
    storedBytes,
  };
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('size-mb', '384'));
  const runs = Number(arg('runs', '1'));
  const cases = arg('cases', ALL_CASES.join(',')).split(',');
  const resultsFile = arg('results', '');
  const loadBefore = os.loadavg();
  const cluster = await startCluster({ major: 15, flavor: 'debian' });
  const work = join(TEST_ROOT, `bench-bbc-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const cli = join(HERE, '..', '.tmp', 'bench', `pgark-cli-bbc-${process.pid}.mjs`);
  bundleCli(cli);
  try {
    process.stderr.write(`generating ${sizeMb} MB …\n`);
    const info = await generateDataset(cluster, { sizeMb });
    await cluster.query('CHECKPOINT');
    const env = { ...process.env, PGPASSWORD: cluster.replicationUser.password };
    const conninfo = `host=127.0.0.1 port=${cluster.port} user=${cluster.replicationUser.user} sslmode=disable`;
    const per: Record<string, CaseResult[]> = {};
    const loads: number[] = [];
    for (let i = 0; i < runs; i++) {
      for (const spec of cases) {
        loads.push(os.loadavg()[0]!);
        const r = await runCase(cluster, cli, conninfo, join(work, `repo-${spec}-${i}`), spec, env);
        (per[spec] ??= []).push(r);
        process.stderr.write(
          `run ${i} ${spec}: ${r.seconds.toFixed(1)} s, pgark cpu ${r.clientCpuSeconds.toFixed(2)} s, server cpu ${r.serverCpuSeconds?.toFixed(2) ?? '?'} s, stored ${(r.storedBytes / MIB).toFixed(1)} MiB (load ${os.loadavg()[0]!.toFixed(1)})\n`,
        );
      }
    }
    const summary = Object.fromEntries(
      Object.entries(per).map(([spec, rs]) => [
        spec,
        {
          seconds: median(rs.map((r) => r.seconds)),
          clientCpuSeconds: median(rs.map((r) => r.clientCpuSeconds)),
          serverCpuSeconds: rs.every((r) => r.serverCpuSeconds !== undefined)
            ? median(rs.map((r) => r.serverCpuSeconds!))
            : undefined,
          storedMiB: median(rs.map((r) => r.storedBytes)) / MIB,
        },
      ]),
    );
    const result = {
      bench: 'base-backup-compression',
      at: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        model: os.cpus()[0]?.model,
        loadavgBefore: loadBefore,
        loadavg1During: loads,
        loadavgAfter: os.loadavg(),
      },
      node: process.version,
      postgres: 'debian 15 (lz4, zstd)',
      sizeMb,
      datasetBytes: info.bytes,
      runs,
      summary,
      command: `npx tsx bench/base-backup-compression.ts --size-mb ${sizeMb} --runs ${runs}`,
    };
    if (resultsFile) appendFileSync(resultsFile, JSON.stringify(result) + '\n');
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await cluster.destroy();
    rmSync(work, { recursive: true, force: true });
    rmSync(cli, { force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
