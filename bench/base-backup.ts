/**
 * Base backup bench (measures, never asserts), on Debian's PostgreSQL 15 server with a generated
 * data set, all cases in one run against their baselines:
 *
 *   A. pgark to a local directory  vs  pg_basebackup -Ft -X none -D <dir>   (throughput ratio, target >= 1.0)
 *      Both make the result durable: pg_basebackup fsyncs by default (no --no-sync), pgark's fs
 *      driver fsyncs every object before its rename.
 *   B. pgark to S3 (Swift s3api)   vs  the raw upload ceiling: the s3 driver's put of the same bytes
 *                                      (pg_basebackup's base.tar) read from a local file (target >= 0.9)
 *   C. peak RSS of the pgark process in A and B (VmHWM of a child `pgark backup`), to compare with
 *      100 MiB + part size x (queue + 1)
 *
 *   npx tsx bench/base-backup.ts [--size-mb 2048] [--runs 3] [--part-mib 16] [--queue 4] [--no-s3]
 *
 * Each pair (pgark and its baseline) runs back to back, in an order that alternates from run to run,
 * after a `sync`; the ratio is the median of the per-run ratios.
 *
 * Each pgark run is a child process of the CLI (`pgark backup -X none`) run as plain JavaScript
 * (src/cli/main.ts bundled once by esbuild into a temporary file, the way `npm run build` ships it),
 * so neither tsx's start-up and on-the-fly compilation nor its memory count, and its peak RSS is
 * its own. Besides wall-clock throughput, the CPU seconds (user + system) of pgark and of
 * pg_basebackup are recorded: on a shared, loaded machine they are the steadier figure.
 * Results (one JSON line per run with the medians): bench/results/base-backup.jsonl.
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, createReadStream, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createS3Storage } from '../src/storage/s3-storage';
import { createS3Client } from '../src/storage/s3-client';
import { startS3Server } from '../test/harness/s3-server';
import { startCluster, TEST_ROOT } from '../test/harness/postgres';
import { generateDataset } from '../test/harness/datagen';
import { arg, bundleCli, dirBytes, median } from './bench-util';

const MIB = 1024 * 1024;
const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results', 'base-backup.jsonl');
const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';

/** Runs a command; returns wall time, CPU seconds and the peak RSS (GNU time %M, KiB) of the process. */
function timed(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ seconds: number; cpuSeconds: number; peakRssMiB: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', 'PEAKRSS %M CPU %U %S', cmd, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const m = /PEAKRSS (\d+) CPU ([\d.]+) ([\d.]+)/.exec(err);
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`));
      resolve({
        seconds,
        cpuSeconds: m ? Number(m[2]) + Number(m[3]) : NaN,
        peakRssMiB: m ? Number(m[1]) / 1024 : NaN,
        stdout: out,
      });
    });
  });
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('size-mb', '2048'));
  const runs = Number(arg('runs', '3'));
  const partMib = Number(arg('part-mib', '16'));
  const queue = Number(arg('queue', '4'));
  const withS3 = !process.argv.includes('--no-s3');
  const s3 = withS3 ? await startS3Server() : undefined;
  const cluster = await startCluster({ major: 15, flavor: 'debian' });
  const work = join(TEST_ROOT, `bench-bb-${process.pid}`);
  mkdirSync(work, { recursive: true });
  // Inside the repository (its .tmp/ is git-ignored) so that the bundle's imports resolve to node_modules.
  const cli = join(HERE, '..', '.tmp', 'bench', `pgark-cli-${process.pid}.mjs`);
  bundleCli(cli);
  if (spawnSync(process.execPath, [cli, '--help'], { stdio: 'ignore' }).status !== 0)
    throw new Error(`the bundled CLI ${cli} does not start`);
  const NODE = process.execPath;
  try {
    process.stderr.write(`generating ${sizeMb} MB …\n`);
    await generateDataset(cluster, { sizeMb });
    await cluster.query('CHECKPOINT');
    const env = {
      ...process.env,
      PGPASSWORD: cluster.replicationUser.password,
      ...(s3 ? { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } : {}),
    };
    const conninfo = `host=127.0.0.1 port=${cluster.port} user=${cluster.replicationUser.user} sslmode=disable`;
    const credentials = s3 ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } : undefined;
    const client = s3 ? createS3Client({ endpoint: s3.endpoint, region: s3.region, credentials }) : undefined;
    const rows: Record<string, number[]> = {};
    const add = (k: string, v: number): void => void (rows[k] ??= []).push(v);
    const med = (k: string): number | undefined => (rows[k] ? median(rows[k]) : undefined);
    for (let i = 0; i < runs; i++) {
      // Each pair runs back to back; its order alternates from run to run (pg_basebackup first in
      // even runs, pgark first in odd ones), so that neither side always meets the disk as the other
      // left it (its writeback, the removal of its output). `sync` before each case for the same reason.
      const pgarkFirst = i % 2 === 1;
      const bbDir = join(work, `pgbb-${i}`);
      let bytes = 0;
      let bbSeconds = 0;
      // A: baseline pg_basebackup -Ft -X none (fsyncs) and pgark to a directory (fsyncs).
      const runPgbb = async (): Promise<void> => {
        spawnSync('sync');
        const bb = await timed(
          PG_BASEBACKUP,
          ['-d', conninfo, '-D', bbDir, '-Ft', '-X', 'none', '-c', 'fast'],
          env,
        );
        bytes = dirBytes(bbDir);
        bbSeconds = bb.seconds;
        add('bytes', bytes);
        add('pgbb', bytes / MIB / bb.seconds);
        add('pgbbCpu', bb.cpuSeconds);
      };
      const runFs = async (): Promise<{ seconds: number; cpuSeconds: number; peakRssMiB: number }> => {
        spawnSync('sync');
        const repo = join(work, `repo-${i}`);
        const r = await timed(
          NODE,
          [cli, 'backup', '-d', conninfo, '--repo', repo, '-X', 'none', '--fast', '--json'],
          env,
        );
        rmSync(repo, { recursive: true, force: true });
        return r;
      };
      let fsRun;
      if (pgarkFirst) {
        fsRun = await runFs();
        await runPgbb();
      } else {
        await runPgbb();
        fsRun = await runFs();
      }
      add('pgarkFs', bytes / MIB / fsRun.seconds);
      add('pgarkFsCpu', fsRun.cpuSeconds);
      add('pgarkFsRss', fsRun.peakRssMiB);
      add('ratioFs', bbSeconds / fsRun.seconds);
      process.stderr.write(
        `run ${i}: pg_basebackup ${(bytes / MIB / bbSeconds).toFixed(1)} MiB/s (${rows.pgbbCpu!.at(-1)!.toFixed(1)} cpu s), pgark fs ${(bytes / MIB / fsRun.seconds).toFixed(1)} MiB/s (${fsRun.cpuSeconds.toFixed(1)} cpu s, ${fsRun.peakRssMiB.toFixed(0)} MiB)${pgarkFirst ? ' (pgark first)' : ''}\n`,
      );

      if (s3 && client && credentials) {
        // B: pgark to S3 and the raw ceiling: the same bytes (pg_basebackup's tar files) through the
        // driver's put from a local file, with the same part size and queue; same alternation.
        const bucket = `bench-bb-${Date.now().toString(36)}-${i}`;
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        const runPgarkS3 = (): Promise<{ seconds: number; cpuSeconds: number; peakRssMiB: number }> => {
          spawnSync('sync');
          return timed(
            NODE,
            [
              cli,
              'backup',
              '-d',
              conninfo,
              '--repo',
              `s3://${bucket}/p`,
              '--s3-endpoint',
              s3.endpoint,
              '--s3-region',
              s3.region,
              '--s3-part-size',
              String(partMib),
              '-X',
              'none',
              '--fast',
              '--json',
            ],
            env,
          );
        };
        const runRaw = async (): Promise<number> => {
          spawnSync('sync');
          const storage = createS3Storage({
            bucket,
            prefix: 'raw',
            endpoint: s3.endpoint,
            region: s3.region,
            partSizeBytes: partMib * MIB,
            queueSize: queue,
            credentials,
          });
          const t0 = process.hrtime.bigint();
          for (const f of readdirSync(bbDir)) {
            const p = join(bbDir, f);
            await storage.put(f, createReadStream(p, { highWaterMark: MIB }), {
              contentLength: statSync(p).size,
            });
          }
          const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
          await storage.close();
          return seconds;
        };
        let s3Run;
        let rawSeconds;
        if (pgarkFirst) {
          s3Run = await runPgarkS3();
          rawSeconds = await runRaw();
        } else {
          rawSeconds = await runRaw();
          s3Run = await runPgarkS3();
        }
        add('pgarkS3', bytes / MIB / s3Run.seconds);
        add('pgarkS3Cpu', s3Run.cpuSeconds);
        add('pgarkS3Rss', s3Run.peakRssMiB);
        add('raw', bytes / MIB / rawSeconds);
        add('ratioS3', rawSeconds / s3Run.seconds);
        process.stderr.write(
          `run ${i}: pgark s3 ${(bytes / MIB / s3Run.seconds).toFixed(1)} MiB/s (${s3Run.peakRssMiB.toFixed(0)} MiB), raw ${(bytes / MIB / rawSeconds).toFixed(1)} MiB/s\n`,
        );
      }
      rmSync(bbDir, { recursive: true, force: true });
    }
    const result = {
      bench: 'base-backup',
      at: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        model: os.cpus()[0]?.model,
        memGiB: Math.round(os.totalmem() / 2 ** 30),
        loadavg1: os.loadavg()[0],
      },
      node: process.version,
      postgres: 'debian 15',
      s3: s3 ? 'swift s3api (local)' : undefined,
      sizeMb,
      runs,
      bytes: med('bytes'),
      partMib,
      queue,
      pgarkRunAs: 'node (esbuild bundle of src/cli/main.ts)',
      pgBasebackupMiBps: med('pgbb'),
      pgBasebackupCpuSeconds: med('pgbbCpu'),
      pgarkFsMiBps: med('pgarkFs'),
      pgarkFsCpuSeconds: med('pgarkFsCpu'),
      /** Median of the per-run ratios (each run's pgark and pg_basebackup ran back to back). */
      ratioFs: med('ratioFs'),
      pgarkS3MiBps: med('pgarkS3'),
      pgarkS3CpuSeconds: med('pgarkS3Cpu'),
      rawS3MiBps: med('raw'),
      ratioS3: med('ratioS3'),
      peakRssFsMiB: med('pgarkFsRss'),
      peakRssS3MiB: med('pgarkS3Rss'),
      maxPeakRssMiB: Math.max(...(rows.pgarkFsRss ?? []), ...(rows.pgarkS3Rss ?? [])),
      rssBudgetMiB: 100 + partMib * (queue + 1),
      perRun: rows,
      command: `npx tsx bench/base-backup.ts --size-mb ${sizeMb} --runs ${runs} --part-mib ${partMib} --queue ${queue}${s3 ? '' : ' --no-s3'}`,
    };
    mkdirSync(dirname(RESULTS), { recursive: true });
    appendFileSync(RESULTS, JSON.stringify(result) + '\n');
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    client?.destroy();
  } finally {
    await cluster.destroy();
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(cli, { force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
