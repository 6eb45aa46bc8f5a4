/**
 * Restore bench (measures, never asserts), on an embedded PostgreSQL 15 with a generated data set:
 *
 *   A. restoreBackup from a directory repository  vs  `tar -xf` of the same (uncompressed) tars from
 *      local disk followed by `sync -f` (restoreBackup fsyncs every file)     (throughput ratio, target >= 0.9)
 *   B. restoreBackup from S3 (Swift s3api)         vs  the same tar baseline   (target >= 0.9)
 *   C. WAL replay through restore_command (`pgark archive-fetch`) with prefetch 8 vs prefetch 0:
 *      time from server start to the end of recovery for the same archived WAL (--wal-mb of writes),
 *      from the directory repository or (--replay-repo s3) from S3, where the WAL archived into the
 *      directory is copied first and restore_command reads it through the S3 API.
 *
 *   npx tsx bench/restore.ts [--size-mb 2048] [--wal-mb 512] [--runs 3] [--no-s3] [--no-replay]
 *                            [--no-restore] [--replay-repo fs|s3] [--raw-get] [--s3-ab] [--no-record]
 *
 *   --raw-get   also reads the S3 backup's tars without restoring (to a byte counter), as one
 *               GetObject stream per object and as the driver's parallel ranged GETs: the ceiling of
 *               the store for the same objects.
 *   --s3-ab     also restores from S3 with readConcurrency 1 (one GetObject stream), interleaved.
 *   --no-record prints the JSON line without appending it to bench/results/restore.jsonl.
 *   Every path also records the CPU seconds (user+sys) of this process (`*CpuS`).
 *
 * Results (one JSON line with the medians): bench/results/restore.jsonl.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, rmSync, createWriteStream } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import pg from 'pg';
import { restoreBackup, runBaseBackup, type Storage } from '../src/index';
import { createFsStorage } from '../src/storage/fs-storage';
import { createS3Storage } from '../src/storage/s3-storage';
import { createS3Client } from '../src/storage/s3-client';
import { walPrefix } from '../src/archive/repo-layout';
import { chownTree, resolveServerUser, shellQuote, startServer, stopServer } from '../src/local-server';
import { startS3Server } from '../test/harness/s3-server';
import { freePort, startCluster, TEST_ROOT } from '../test/harness/postgres';
import { generateDataset } from '../test/harness/datagen';
import { arg, median } from './bench-util';

const MIB = 1024 * 1024;
const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results', 'restore.jsonl');
const REPO_ROOT = join(HERE, '..');
const ESBUILD = join(REPO_ROOT, 'node_modules', '.bin', 'esbuild');

const sizeMb = Number(arg('size-mb', '2048'));
const walMb = Number(arg('wal-mb', '512'));
const runs = Number(arg('runs', '3'));
const withS3 = !process.argv.includes('--no-s3');
const withReplay = !process.argv.includes('--no-replay');
const withRestore = !process.argv.includes('--no-restore');
const replayRepo = arg('replay-repo', 'fs');
const rawGet = process.argv.includes('--raw-get');
const s3Ab = process.argv.includes('--s3-ab');
const record = !process.argv.includes('--no-record');
const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1e6;
};
if (replayRepo !== 'fs' && replayRepo !== 's3') throw new Error('--replay-repo is fs or s3');
if (replayRepo === 's3' && !withS3) throw new Error('--replay-repo s3 needs S3 (drop --no-s3)');
const started = performance.now();
/** Progress on stderr: the bench runs for many minutes on a small machine. */
const note = (what: string): void =>
  void process.stderr.write(
    `[restore bench ${((performance.now() - started) / 1000).toFixed(0)} s] ${what}\n`,
  );

async function main(): Promise<void> {
  const root = join(TEST_ROOT, `bench-restore-${process.pid}`);
  mkdirSync(root, { recursive: true });
  const user = resolveServerUser();
  // The CLI bundle keeps its packages external, so it must live inside the repository to resolve
  // node_modules (a bundle under /tmp cannot load commander: every archive-push failed and the WAL
  // wait below never ended). The server user runs it: .tmp and the bundle must be readable.
  const cliDir = join(REPO_ROOT, '.tmp', `bench-restore-cli-${process.pid}`);
  mkdirSync(cliDir, { recursive: true });
  chmodSync(join(REPO_ROOT, '.tmp'), 0o755);
  chmodSync(cliDir, 0o755);
  const cli = join(cliDir, 'cli.mjs');
  if (
    spawnSync(ESBUILD, [
      join(REPO_ROOT, 'src/cli/main.ts'),
      '--bundle',
      '--platform=node',
      '--format=esm',
      '--target=node20',
      '--packages=external',
      `--outfile=${cli}`,
      '--log-level=warning',
    ]).status !== 0
  )
    throw new Error('esbuild failed');
  chmodSync(cli, 0o644);
  const repoDir = join(root, 'repo');
  mkdirSync(repoDir);
  chownTree(root, user);
  const fsRepo = createFsStorage({ root: repoDir });
  const pushCmd = `${shellQuote(process.execPath)} ${shellQuote(cli)} archive-push %p --repo ${shellQuote(repoDir)}`;
  const source = await startCluster({
    major: 15,
    settings: { archive_mode: 'on', archive_command: pushCmd },
  });
  const out: Record<string, unknown> = {
    bench: 'restore',
    at: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    pg: 15,
    s3: withS3 ? 'OpenStack Swift 2.30 s3api (local)' : undefined,
    sizeMb,
    walMb,
    runs,
    replayRepo: withReplay ? replayRepo : undefined,
    loadAvgStart: os.loadavg().map((x) => Number(x.toFixed(1))),
  };
  const s3srv = withS3 ? await startS3Server() : undefined;
  try {
    note(`generating ${sizeMb} MB`);
    await generateDataset(source, { sizeMb });
    note('base backups');
    const conn = {
      host: source.host,
      port: source.port,
      user: source.replicationUser.user,
      password: source.replicationUser.password,
      ssl: 'disable' as const,
    };
    const bb = await runBaseBackup({ connection: conn, storage: fsRepo, checkpoint: 'fast', wal: 'stream' });
    const dataBytes = bb.entry.sizes.dataBytes;
    out.backupBytes = bb.entry.sizes.storedBytes;

    // Baseline tars on local disk (copies of the repository's objects).
    const tarDir = join(root, 'tars');
    mkdirSync(tarDir);
    for (const o of bb.entry.objects.filter((x) => x.kind === 'archive'))
      await pipeline(await fsRepo.get(o.key), createWriteStream(join(tarDir, o.name)));
    const tarTimes: number[] = [];
    const fsTimes: number[] = [];
    const s3Times: number[] = [];
    let s3Repo: Storage | undefined;
    let s3Single: Storage | undefined;
    let s3BackupId: string | undefined;
    let s3Archives: { key: string; size: number }[] = [];
    const cpu: Record<string, number[]> = { fs: [], s3: [], s3Single: [], rawSingle: [], rawParallel: [] };
    const rawTimes: Record<string, number[]> = { single: [], parallel: [] };
    const s3SingleTimes: number[] = [];
    if (s3srv) {
      const client = createS3Client({
        endpoint: s3srv.endpoint,
        region: s3srv.region,
        credentials: { accessKeyId: s3srv.accessKeyId, secretAccessKey: s3srv.secretAccessKey },
      });
      await client.send(new CreateBucketCommand({ Bucket: 'bench-restore' }));
      client.destroy();
      s3Repo = createS3Storage({
        bucket: 'bench-restore',
        endpoint: s3srv.endpoint,
        region: s3srv.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3srv.accessKeyId, secretAccessKey: s3srv.secretAccessKey },
      });
      const s3bb = await runBaseBackup({
        connection: conn,
        storage: s3Repo,
        checkpoint: 'fast',
        wal: 'stream',
      });
      s3BackupId = s3bb.backupId;
      s3Archives = s3bb.entry.objects.filter((x) => x.kind === 'archive');
      if (s3Ab || rawGet)
        s3Single = createS3Storage({
          bucket: 'bench-restore',
          endpoint: s3srv.endpoint,
          region: s3srv.region,
          forcePathStyle: true,
          credentials: { accessKeyId: s3srv.accessKeyId, secretAccessKey: s3srv.secretAccessKey },
          readConcurrency: 1,
        });
    }
    for (let i = 0; i < (withRestore ? runs : 0); i++) {
      note(`restore run ${i + 1}/${runs}`);
      const t = join(root, 'tar-out');
      rmSync(t, { recursive: true, force: true });
      mkdirSync(t);
      let t0 = performance.now();
      for (const o of bb.entry.objects.filter((x) => x.kind === 'archive')) {
        const d = o.spcOid === undefined ? t : join(t, `ts${o.spcOid}`);
        mkdirSync(d, { recursive: true });
        spawnSync('tar', ['-xf', join(tarDir, o.name), '-C', d], { stdio: 'inherit' });
      }
      spawnSync('sync', ['-f', t]);
      tarTimes.push(performance.now() - t0);
      rmSync(t, { recursive: true, force: true });
      if (rawGet && s3Repo && s3Single) {
        for (const [name, storage] of [
          ['single', s3Single],
          ['parallel', s3Repo],
        ] as [string, Storage][]) {
          const c0 = process.cpuUsage();
          t0 = performance.now();
          let n = 0;
          for (const o of s3Archives)
            for await (const c of await storage.get(o.key, { readChunkBytes: MIB }))
              n += (c as Buffer).length;
          rawTimes[name]!.push(performance.now() - t0);
          cpu[name === 'single' ? 'rawSingle' : 'rawParallel']!.push(cpuSeconds(c0));
          if (n !== s3Archives.reduce((a, o) => a + o.size, 0)) throw new Error('raw get: short read');
        }
      }
      for (const [name, storage, times] of [
        ['fs', fsRepo, fsTimes],
        ...(s3Repo ? [['s3', s3Repo, s3Times]] : []),
        ...(s3Ab && s3Single ? [['s3Single', s3Single, s3SingleTimes]] : []),
      ] as [string, Storage, number[]][]) {
        const c0 = process.cpuUsage();
        t0 = performance.now();
        await restoreBackup({ storage, targetDir: t, tablespaceRoot: join(root, 'ts-out'), clean: true });
        times.push(performance.now() - t0);
        cpu[name]!.push(cpuSeconds(c0));
        rmSync(t, { recursive: true, force: true });
        rmSync(join(root, 'ts-out'), { recursive: true, force: true });
      }
    }
    await s3Single?.close();
    const mbps = (ms: number): number => dataBytes / MIB / (ms / 1000);
    out.dataBytes = dataBytes;
    out.tarMs = tarTimes;
    out.fsMs = fsTimes;
    out.s3Ms = s3Times;
    if (withRestore) {
      out.tarMBps = mbps(median(tarTimes));
      out.fsMBps = mbps(median(fsTimes));
      out.fsRatio = median(tarTimes) / median(fsTimes);
    }
    if (s3Times.length) {
      out.s3MBps = mbps(median(s3Times));
      out.s3Ratio = median(tarTimes) / median(s3Times);
    }
    if (s3SingleTimes.length) {
      out.s3SingleMs = s3SingleTimes;
      out.s3SingleRatio = median(tarTimes) / median(s3SingleTimes);
    }
    if (rawTimes.single!.length) {
      const storedMb = s3Archives.reduce((a, o) => a + o.size, 0) / MIB;
      out.rawGetSingleMs = rawTimes.single;
      out.rawGetParallelMs = rawTimes.parallel;
      out.rawGetSingleMBps = storedMb / (median(rawTimes.single!) / 1000);
      out.rawGetParallelMBps = storedMb / (median(rawTimes.parallel!) / 1000);
    }
    for (const [k, v] of Object.entries(cpu))
      if (v.length) out[`${k}CpuS`] = v.map((x) => Number(x.toFixed(2)));

    // C. WAL replay with and without prefetch.
    if (withReplay) await replayBench(bb, s3Repo, s3BackupId);
    out.loadAvgEnd = os.loadavg().map((x) => Number(x.toFixed(1)));
  } finally {
    await source.destroy();
    await s3srv?.stop();
    rmSync(root, { recursive: true, force: true });
    rmSync(cliDir, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  if (record) {
    mkdirSync(dirname(RESULTS), { recursive: true });
    appendFileSync(RESULTS, `${JSON.stringify(out)}\n`);
  }

  async function replayBench(
    bb: { backupId: string; entry: { startLsn: string } },
    s3Repo: Storage | undefined,
    s3BackupId: string | undefined,
  ): Promise<void> {
    note(`generating ${walMb} MB of WAL writes`);
    await generateDataset(source, { sizeMb: walMb, seed: 2 });
    const w = (await source.query<{ w: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS w'))[0]!.w;
    note(`waiting for archive-push up to ${w}`);
    for (;;) {
      const [s] = await source.query<{ last: string | null; failed: string }>(
        'SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver',
      );
      if (s?.last && s.last >= w) break;
      // A failing archive_command would otherwise make this wait forever.
      if (Number(s?.failed) > 0)
        throw new Error(`archive_command failed ${s?.failed} times (see the server log)`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await source.stop();
    // From S3: the same archived WAL, copied from the directory repository into the bucket.
    const fromS3 = replayRepo === 's3' && s3Repo && s3srv && s3BackupId;
    if (fromS3) {
      note('copying the archived wal to s3');
      for await (const o of fsRepo.list(walPrefix('main')))
        if (!(await s3Repo.head(o.key))) await s3Repo.put(o.key, await fsRepo.get(o.key));
    }
    out.replayFrom = bb.entry.startLsn;
    out.replayToWal = w;
    const replayTimes: Record<number, number[]> = { 8: [], 0: [] };
    for (let i = 0; i < runs; i++) {
      // Interleaved, so that a change in the machine's load hits both alike.
      for (const prefetch of [8, 0]) {
        const times = replayTimes[prefetch]!;
        note(`replay prefetch ${prefetch} run ${i + 1}/${runs}`);
        const dir = join(root, `replay-${prefetch}`);
        const dataDir = join(dir, 'data');
        mkdirSync(join(dir, 'sock'), { recursive: true });
        chownTree(dir, user);
        await restoreBackup({
          storage: fromS3 ? s3Repo : fsRepo,
          targetDir: dataDir,
          tablespaceRoot: join(dir, 'ts'),
          backupId: fromS3 ? s3BackupId : bb.backupId,
          archive: fromS3
            ? {
                repo: 's3://bench-restore',
                cliPath: cli,
                prefetch,
                s3Endpoint: s3srv.endpoint,
                s3Region: s3srv.region,
                s3PathStyle: true,
                credentials: { accessKeyId: s3srv.accessKeyId, secretAccessKey: s3srv.secretAccessKey },
                envFile: join(dir, 's3.env'),
              }
            : { repo: repoDir, cliPath: cli, prefetch },
          owner: { uid: user.uid, gid: user.gid },
        });
        const port = await freePort();
        const t0 = performance.now();
        await startServer({
          binaries: source.binaries,
          user,
          dataDir,
          port,
          socketDir: join(dir, 'sock'),
          logFile: join(dir, 'log'),
          timeoutMs: 3_600_000,
        });
        const c = new pg.Client({ host: join(dir, 'sock'), port, user: 'postgres', database: 'postgres' });
        await c.connect();
        while ((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)
          await new Promise((r) => setTimeout(r, 100));
        times.push(performance.now() - t0);
        await c.end();
        await stopServer({ binaries: source.binaries, user, dataDir, mode: 'immediate' });
        rmSync(dir, { recursive: true, force: true });
      }
    }
    out.replayMs = replayTimes;
    for (const prefetch of [8, 0]) out[`replayMs_prefetch${prefetch}`] = median(replayTimes[prefetch]!);
    out.prefetchSpeedup = (out.replayMs_prefetch0 as number) / (out.replayMs_prefetch8 as number);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
