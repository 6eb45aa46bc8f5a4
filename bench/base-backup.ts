/**
 * Base backup bench (measures, never asserts), on Debian's PostgreSQL 15 server with a generated
 * data set, all cases in one run against their baselines:
 *
 *   A. pgark to a local directory  vs  pg_basebackup -Ft -X none -D <dir>   (throughput ratio, target >= 1.0)
 *   B. pgark to S3 (Swift s3api)   vs  the raw upload ceiling: the s3 driver's put of the same bytes
 *                                      (pg_basebackup's base.tar) read from a local file (target >= 0.9)
 *   C. peak RSS of the pgark process in A and B (VmHWM of a child `pgark backup`), to compare with
 *      100 MiB + part size x (queue + 1)
 *
 *   npx tsx bench/base-backup.ts [--size-mb 2048] [--runs 3] [--part-mib 16] [--queue 4]
 *
 * Each pgark run is a child process of the CLI (`pgark backup -X none`), so its peak RSS is its
 * own. Results (one JSON line per case with the medians): bench/results/base-backup.jsonl.
 */
import { spawn } from 'node:child_process';
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

const MIB = 1024 * 1024;
const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results', 'base-backup.jsonl');
const CLI = join(HERE, '..', 'src', 'cli', 'main.ts');
const TSX = join(HERE, '..', 'node_modules', '.bin', 'tsx');
const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  }
  return n;
}

/** Runs a command; returns wall time and the peak RSS (GNU time %M, KiB) of the process. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ seconds: number; peakRssMiB: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', 'PEAKRSS %M', cmd, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const m = /PEAKRSS (\d+)/.exec(err);
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`));
      resolve({ seconds, peakRssMiB: m ? Number(m[1]) / 1024 : NaN, stdout: out });
    });
  });
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('size-mb', '2048'));
  const runs = Number(arg('runs', '3'));
  const partMib = Number(arg('part-mib', '16'));
  const queue = Number(arg('queue', '4'));
  const s3 = await startS3Server();
  const cluster = await startCluster({ major: 15, flavor: 'debian' });
  const work = join(TEST_ROOT, `bench-bb-${process.pid}`);
  mkdirSync(work, { recursive: true });
  try {
    process.stderr.write(`generating ${sizeMb} MB …\n`);
    await generateDataset(cluster, { sizeMb });
    await cluster.query('CHECKPOINT');
    const env = { ...process.env, PGPASSWORD: cluster.replicationUser.password, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    const conninfo = `host=127.0.0.1 port=${cluster.port} user=${cluster.replicationUser.user} sslmode=disable`;
    const client = createS3Client({ endpoint: s3.endpoint, region: s3.region, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    const rows: Record<string, number[]> = { pgbb: [], pgarkFs: [], pgarkFsRss: [], pgarkS3: [], pgarkS3Rss: [], raw: [], bytes: [] };
    for (let i = 0; i < runs; i++) {
      // A: baseline pg_basebackup -Ft -X none, then pgark to a directory.
      const bbDir = join(work, `pgbb-${i}`);
      const bb = await timed(PG_BASEBACKUP, ['-d', conninfo, '-D', bbDir, '-Ft', '-X', 'none', '-c', 'fast', '--no-sync'], env);
      const bytes = dirBytes(bbDir);
      rows.bytes!.push(bytes);
      rows.pgbb!.push(bytes / MIB / bb.seconds);
      const repo = join(work, `repo-${i}`);
      const fsRun = await timed(TSX, [CLI, 'backup', '-d', conninfo, '--repo', repo, '-X', 'none', '--fast', '--json'], env);
      rows.pgarkFs!.push(bytes / MIB / fsRun.seconds);
      rows.pgarkFsRss!.push(fsRun.peakRssMiB);
      rmSync(repo, { recursive: true, force: true });

      // B: pgark to S3, then the raw ceiling: the same bytes (pg_basebackup's base.tar) through the driver's put.
      const bucket = `bench-bb-${Date.now().toString(36)}-${i}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      const s3Run = await timed(
        TSX,
        [CLI, 'backup', '-d', conninfo, '--repo', `s3://${bucket}/p`, '--s3-endpoint', s3.endpoint, '--s3-region', s3.region, '--s3-part-size', String(partMib), '-X', 'none', '--fast', '--json'],
        env,
      );
      rows.pgarkS3!.push(bytes / MIB / s3Run.seconds);
      rows.pgarkS3Rss!.push(s3Run.peakRssMiB);
      const storage = createS3Storage({ bucket, prefix: 'raw', endpoint: s3.endpoint, region: s3.region, partSizeBytes: partMib * MIB, queueSize: queue, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
      const t0 = process.hrtime.bigint();
      for (const f of readdirSync(bbDir)) {
        const p = join(bbDir, f);
        await storage.put(f, createReadStream(p, { highWaterMark: MIB }), { contentLength: statSync(p).size });
      }
      rows.raw!.push(bytes / MIB / (Number(process.hrtime.bigint() - t0) / 1e9));
      await storage.close();
      rmSync(bbDir, { recursive: true, force: true });
    }
    const result = {
      bench: 'base-backup',
      at: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30) },
      node: process.version,
      postgres: 'debian 15',
      s3: 'swift s3api (local)',
      sizeMb,
      runs,
      bytes: median(rows.bytes!),
      partMib,
      queue,
      pgBasebackupMiBps: median(rows.pgbb!),
      pgarkFsMiBps: median(rows.pgarkFs!),
      ratioFs: median(rows.pgarkFs!) / median(rows.pgbb!),
      pgarkS3MiBps: median(rows.pgarkS3!),
      rawS3MiBps: median(rows.raw!),
      ratioS3: median(rows.pgarkS3!) / median(rows.raw!),
      peakRssFsMiB: median(rows.pgarkFsRss!),
      peakRssS3MiB: median(rows.pgarkS3Rss!),
      rssBudgetMiB: 100 + partMib * (queue + 1),
      command: `npx tsx bench/base-backup.ts --size-mb ${sizeMb} --runs ${runs} --part-mib ${partMib} --queue ${queue}`,
    };
    mkdirSync(dirname(RESULTS), { recursive: true });
    appendFileSync(RESULTS, JSON.stringify(result) + '\n');
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    client.destroy();
  } finally {
    await cluster.destroy();
    await s3.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});

