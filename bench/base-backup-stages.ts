/**
 * Base backup, stage by stage (measures, never asserts): where does the time go between the socket
 * and the store? On Debian's PostgreSQL 15 with a generated data set, interleaved in one run:
 *
 *   pgbb     pg_basebackup -Ft -X none (default: fsyncs the result)     the baseline
 *   pgbb-ns  the same with --no-sync                                      for reference
 *   raw      CopyOut of BASE_BACKUP with a no-op consumer                 socket + framer + connection
 *   demux    + readBaseBackupStream                                       + demux into archive events
 *   fs       runBaseBackup into the fs driver (sha256, fsync, rename)    the whole pipeline
 *   s3       runBaseBackup into the s3 driver (Swift s3api)               (--s3 only)
 *
 *   npx tsx bench/base-backup-stages.ts [--size-mb 512] [--runs 3] [--stages raw,demux,fs] [--s3]
 *
 * In-process (no CLI start-up): each figure is MiB/s of the stream and CPU seconds (user + system;
 * pg_basebackup's own, or this process's) per GB of tar, the steadier figure on a shared machine.
 * Output directories are removed after the figures are taken. Prints one JSON line per run and a
 * summary with medians; nothing is written to bench/results (this is a diagnosis tool).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { ReplicationConnection } from '../src/connection/replication-connection';
import { buildBaseBackupCommand } from '../src/replication/base-backup-command';
import { readBaseBackupStream } from '../src/replication/base-backup-stream';
import { runBaseBackup } from '../src/archive/base-backup-writer';
import { createFsStorage } from '../src/storage/fs-storage';
import { createS3Storage } from '../src/storage/s3-storage';
import { createS3Client } from '../src/storage/s3-client';
import { startCluster, TEST_ROOT } from '../test/harness/postgres';
import { generateDataset } from '../test/harness/datagen';
import { startS3Server, type S3Server } from '../test/harness/s3-server';
import { arg, dirBytes, median } from './bench-util';

const MIB = 1024 * 1024;
const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';

const now = (): number => Number(process.hrtime.bigint()) / 1e9;

/** Runs a command; resolves with its CPU seconds (user + system, GNU time). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const m = /CPU ([\d.]+) ([\d.]+)/.exec(err);
      return code === 0
        ? resolve(m ? Number(m[1]) + Number(m[2]) : NaN)
        : reject(new Error(`${cmd} exited ${code}: ${err}`));
    });
  });
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('size-mb', '512'));
  const runs = Number(arg('runs', '3'));
  const withS3 = process.argv.includes('--s3');
  const stages = arg('stages', `pgbb,pgbb-ns,raw,demux,fs${withS3 ? ',s3' : ''}`).split(',');
  const s3: S3Server | undefined = withS3 ? await startS3Server() : undefined;
  const cluster = await startCluster({ major: 15, flavor: 'debian' });
  const work = join(TEST_ROOT, `bench-stages-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const connection = {
    host: '127.0.0.1',
    port: cluster.port,
    user: cluster.replicationUser.user,
    password: cluster.replicationUser.password,
    ssl: 'disable' as const,
  };
  const env = { ...process.env, PGPASSWORD: cluster.replicationUser.password };
  const conninfo = `host=127.0.0.1 port=${cluster.port} user=${cluster.replicationUser.user} sslmode=disable`;
  try {
    process.stderr.write(`generating ${sizeMb} MB …\n`);
    const t0 = now();
    await generateDataset(cluster, { sizeMb });
    await cluster.query('CHECKPOINT');
    process.stderr.write(`generated in ${(now() - t0).toFixed(1)} s\n`);
    const figures: Record<string, number[]> = {};
    const cpuPerGb: Record<string, number[]> = {};
    let bytes = 0;
    // Load pg and the connection code once, so the first in-process stage is not charged for it.
    const warm = await ReplicationConnection.connect(connection);
    await warm.query('IDENTIFY_SYSTEM');
    await warm.close();
    for (let i = 0; i < runs; i++) {
      for (const stage of stages) {
        const t = now();
        const cpu0 = process.cpuUsage();
        let childCpu: number | undefined;
        let n = 0;
        // Removed after the figures are taken: deleting a 400 MB file costs CPU neither tool spends.
        let removeAfter: string | undefined;
        if (stage === 'pgbb' || stage === 'pgbb-ns') {
          const dir = join(work, `pgbb-${i}`);
          childCpu = await run(
            PG_BASEBACKUP,
            [
              '-d',
              conninfo,
              '-D',
              dir,
              '-Ft',
              '-X',
              'none',
              '-c',
              'fast',
              ...(stage === 'pgbb-ns' ? ['--no-sync'] : []),
            ],
            env,
          );
          n = dirBytes(dir);
          bytes = n;
          removeAfter = dir;
        } else if (stage === 'raw' || stage === 'demux') {
          const conn = await ReplicationConnection.connect(connection);
          const sql = buildBaseBackupCommand(
            {
              label: 'stages',
              progress: true,
              checkpoint: 'fast',
              wal: false,
              wait: false,
              tablespaceMap: true,
              verifyChecksums: true,
              manifestChecksums: 'CRC32C',
            },
            conn.serverVersionNum,
          );
          if (stage === 'raw') {
            for await (const ev of conn.copyOut(sql)) if (ev.type === 'copyData') n += ev.data.length;
          } else {
            for await (const ev of readBaseBackupStream(conn.copyOut(sql), false)) {
              if (ev.type === 'data' || ev.type === 'manifest-data') n += ev.data.length;
            }
          }
          await conn.close();
        } else if (stage === 'fs') {
          const root = join(work, `repo-${i}`);
          const r = await runBaseBackup({
            connection,
            storage: createFsStorage({ root }),
            checkpoint: 'fast',
            wal: 'none',
          });
          n = r.entry.sizes.storedBytes;
          removeAfter = root;
        } else if (stage === 's3' && s3) {
          const bucket = `bench-stages-${Date.now().toString(36)}-${i}`;
          const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
          const client = createS3Client({ endpoint: s3.endpoint, region: s3.region, credentials });
          await client.send(new CreateBucketCommand({ Bucket: bucket }));
          client.destroy();
          const storage = createS3Storage({ bucket, endpoint: s3.endpoint, region: s3.region, credentials });
          const r = await runBaseBackup({ connection, storage, checkpoint: 'fast', wal: 'none' });
          n = r.entry.sizes.storedBytes;
          await storage.close();
        }
        const seconds = now() - t;
        const c = process.cpuUsage(cpu0);
        // CPU seconds of the client (this process, or pg_basebackup): the figure the machine's load does not distort.
        const cpuSeconds = childCpu ?? (c.user + c.system) / 1e6;
        const mibps = n / MIB / seconds;
        (figures[stage] ??= []).push(mibps);
        (cpuPerGb[stage] ??= []).push(cpuSeconds / (n / 1e9));
        if (removeAfter) rmSync(removeAfter, { recursive: true, force: true });
        process.stdout.write(
          JSON.stringify({
            run: i,
            stage,
            bytes: n,
            seconds: +seconds.toFixed(2),
            mibps: +mibps.toFixed(1),
            cpuSeconds: +cpuSeconds.toFixed(2),
            cpuSecondsPerGB: +(cpuSeconds / (n / 1e9)).toFixed(2),
            rssMiB: Math.round(process.memoryUsage.rss() / MIB),
          }) + '\n',
        );
      }
    }
    const summary = Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, +median(v).toFixed(1)]));
    const cpuSummary = Object.fromEntries(
      Object.entries(cpuPerGb).map(([k, v]) => [`${k}CpuPerGB`, +median(v).toFixed(2)]),
    );
    process.stdout.write(
      JSON.stringify({
        summary: 'median MiB/s',
        sizeMb,
        bytes,
        runs,
        ...summary,
        ...cpuSummary,
        maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      }) + '\n',
    );
  } finally {
    await cluster.destroy();
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
