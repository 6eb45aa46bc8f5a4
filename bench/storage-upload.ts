/**
 * Storage upload bench: the s3 driver's `put` of a generated stream against the raw ceiling, a
 * plain lib-storage `Upload` of the same bytes from memory, on a Swift s3api server this script
 * starts itself. Measures; never asserts.
 *
 *   npx tsx bench/storage-upload.ts [--sizes 1024,4096] [--runs 3] [--part-mib 16] [--queue 4]
 *                                   [--driver-only [--puts N]] [--child-node-flags "--trace-gc"]
 *                                   [--allocating-source]
 *
 * `--driver-only` runs the driver alone and records nothing (a quick peak-RSS check while changing
 * the driver; RSS is far less sensitive to machine load than throughput); `--puts N` makes each
 * driver child do N such puts one after the other through one storage. Each child prints the
 * sampled memory split at its RSS peak (V8 heap, Buffer memory) to show where the memory is.
 *
 * Sizes are in MiB. Each run is a child process (so its peak RSS, VmHWM, is its own); driver and
 * raw runs alternate. The child is this file bundled by esbuild (dependencies left external) and
 * run by plain `node`, as a user's compiled program would be: under the tsx loader the same child
 * starts ~26 MiB heavier (89 vs 63 MiB with the SDK loaded, measured here), which is the loader's
 * cost, not the driver's.
 *
 * The bytes: one 1 MiB AES-128-CTR keystream block, repeated. The driver's body is a stream of 1 MiB
 * chunks with no knowledge of its length, each a view of that one pre-generated block; the raw
 * upload yields one pre-generated part buffer (the block repeated) over and over. Both objects
 * therefore have the same bytes and, with the same part size, the same multipart ETag, which the
 * bench checks. Why views of one block: the budget is the DRIVER's memory. A body that allocates a
 * fresh 1 MiB Buffer per chunk (as this bench did until session 3: `cipher.update` per chunk) leaves
 * its dead chunks resident until V8 collects them, 25-35 MiB of the CALLER's garbage at 145 MiB/s,
 * which then shows in the driver child's RSS (186-196 MiB then, 160 MiB with views, same driver).
 * `--allocating-source` brings the old body back, to see that effect.
 * Results: bench/results/storage-upload.jsonl.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createS3Storage } from '../src/storage/s3-storage';
import { startS3Server } from '../test/harness/s3-server';
import { arg } from './bench-util';

const MIB = 1024 * 1024;
const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results', 'storage-upload.jsonl');
const KEY = Buffer.alloc(16, 7);
const IV = Buffer.alloc(16, 9);

/** The 1 MiB block every body repeats (see the header comment). */
function keystreamBlock(): Buffer {
  return createCipheriv('aes-128-ctr', KEY, IV).update(Buffer.alloc(MIB));
}

/**
 * The driver's body: 1 MiB at a time, length unknown to the reader. Each chunk is a view of one
 * pre-generated block (nothing allocated per chunk); `allocating` encrypts a fresh Buffer per chunk
 * instead (the pre-session-3 body, whose garbage counts in the child's RSS), with the same bytes.
 */
function generatedStream(total: number, allocating: boolean): Readable {
  const block = keystreamBlock();
  const zeros = Buffer.alloc(MIB);
  let sent = 0;
  return new Readable({
    highWaterMark: MIB,
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(MIB, total - sent);
      sent += n;
      if (allocating) this.push(createCipheriv('aes-128-ctr', KEY, IV).update(zeros.subarray(0, n)));
      else this.push(n === MIB ? block : block.subarray(0, n));
    },
  });
}

/** The raw ceiling's body: the same bytes from one pre-generated part buffer, reused. */
function pregeneratedParts(total: number, blockSize: number): Readable {
  const block = keystreamBlock();
  const part = Buffer.allocUnsafe(blockSize);
  for (let off = 0; off < blockSize; off += MIB) block.copy(part, off, 0, Math.min(MIB, blockSize - off));
  return Readable.from(
    (function* () {
      for (let off = 0; off < total; off += blockSize) {
        yield total - off >= blockSize ? part : part.subarray(0, total - off);
      }
    })(),
    { objectMode: false },
  );
}

function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

interface ChildResult {
  seconds: number;
  peakRssBytes: number;
  etag: string;
  atSampledPeak: Record<string, number>;
}

/** One upload in this (child) process; prints a JSON line. */
async function child(): Promise<void> {
  const mode = arg('child', '');
  const endpoint = arg('endpoint', '');
  const bucket = arg('bucket', '');
  const size = Number(arg('bytes', '0'));
  const partSize = Number(arg('part-mib', '16')) * MIB;
  const queueSize = Number(arg('queue', '4'));
  const allocatingSource = process.argv.includes('--allocating-source');
  const key = `bench/${mode}-${size}`;
  const credentials = { accessKeyId: 'test:tester', secretAccessKey: 'testing' };
  // Where the memory is at the RSS peak: rss vs V8 heap vs Buffer memory (arrayBuffers).
  let atPeak = process.memoryUsage();
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > atPeak.rss) atPeak = m;
  }, 25);
  const t0 = process.hrtime.bigint();
  let etag: string;
  if (mode === 'driver') {
    const storage = createS3Storage({ bucket, endpoint, credentials, partSizeBytes: partSize, queueSize });
    // --puts N: N puts of the same body one after the other through one storage, as a base backup
    // writes base.tar, then its manifest, WAL, … (memory must not add up across puts).
    const puts = Number(arg('puts', '1'));
    const r = await storage.put(key, generatedStream(size, allocatingSource));
    for (let i = 1; i < puts; i++) await storage.put(`${key}-${i}`, generatedStream(size, allocatingSource));
    for (let i = 1; i < puts; i++) await storage.delete([`${key}-${i}`]);
    etag = r.etag ?? '';
    await storage.close();
  } else {
    const client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const up = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: pregeneratedParts(size, partSize) },
      partSize,
      queueSize,
      leavePartsOnError: false,
    });
    const r = await up.done();
    etag = r.ETag ?? '';
    client.destroy();
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(sampler);
  const out: ChildResult = {
    seconds,
    peakRssBytes: Math.max(peakRssBytes(), atPeak.rss),
    etag: etag.replace(/"/g, ''),
    atSampledPeak: {
      rssMiB: Math.round(atPeak.rss / MIB),
      heapUsedMiB: Math.round(atPeak.heapUsed / MIB),
      heapTotalMiB: Math.round(atPeak.heapTotal / MIB),
      externalMiB: Math.round(atPeak.external / MIB),
      arrayBuffersMiB: Math.round(atPeak.arrayBuffers / MIB),
    },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

let childScript = '';
/** Extra node flags for the children (`--child-node-flags "--trace-gc"`), for looking into memory. */
let childNodeFlags: string[] = [];
/** `--allocating-source`: the driver's body allocates a Buffer per chunk (see the header comment). */
let allocatingSourceFlag = false;
/** Sequential puts per driver child (`--puts N`, with --driver-only). */
let puts = 1;

/** Bundles this file once so the children run under plain node (see the header comment). */
async function bundleChild(): Promise<string> {
  // Inside the repository (node_modules/.cache) so the bundle resolves the external packages.
  const cache = join(HERE, '..', 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(join(cache, 'pgark-bench-'));
  // Loaded here only: the children must not carry esbuild.
  const { build } = await import('esbuild');
  const outfile = join(dir, 'storage-upload-child.mjs');
  await build({
    entryPoints: [fileURLToPath(import.meta.url)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

function runChild(
  mode: string,
  endpoint: string,
  bucket: string,
  bytes: number,
  partMib: number,
  queue: number,
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [
        '--no-warnings',
        ...childNodeFlags,
        childScript,
        '--child',
        mode,
        '--endpoint',
        endpoint,
        '--bucket',
        bucket,
        '--bytes',
        String(bytes),
        '--part-mib',
        String(partMib),
        '--queue',
        String(queue),
        '--puts',
        String(mode === 'driver' ? puts : 1),
        ...(allocatingSourceFlag ? ['--allocating-source'] : []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (childNodeFlags.length > 0) process.stderr.write(d);
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code: number | null) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{'))
        reject(new Error(`${mode} run failed (exit ${code}): ${err.slice(-2000)}`));
      else resolve(JSON.parse(line) as ChildResult);
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

async function main(): Promise<void> {
  const sizesMib = arg('sizes', '1024,4096').split(',').map(Number);
  const runs = Number(arg('runs', '3'));
  const partMib = Number(arg('part-mib', '16'));
  const queue = Number(arg('queue', '4'));
  const driverOnly = process.argv.includes('--driver-only');
  childNodeFlags = arg('child-node-flags', '').split(' ').filter(Boolean);
  puts = driverOnly ? Number(arg('puts', '1')) : 1;
  allocatingSourceFlag = process.argv.includes('--allocating-source');
  const record = (line: object): void => {
    if (!driverOnly) appendFileSync(RESULTS, `${JSON.stringify(line)}\n`);
    process.stdout.write(`${JSON.stringify(line)}\n`);
  };
  mkdirSync(dirname(RESULTS), { recursive: true });

  childScript = await bundleChild();
  const server = await startS3Server();
  try {
    const info = JSON.parse(execFileSync('curl', ['-s', `${server.endpoint}/info`]).toString()) as {
      swift?: { version?: string };
    };
    const header = {
      type: 'header',
      bench: 'storage-upload',
      date: new Date().toISOString(),
      machine: `${os.hostname()} ${os.cpus()[0]?.model ?? 'unknown cpu'} ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
      cores: os.cpus().length,
      node: process.version,
      s3Server: `OpenStack Swift ${info.swift?.version ?? '?'} s3api (single node, 1 replica, same machine)`,
      partSizeBytes: partMib * MIB,
      queueSize: queue,
      runs,
      driverBody: allocatingSourceFlag
        ? 'allocating (a fresh 1 MiB Buffer per chunk)'
        : 'views of one 1 MiB block',
    };
    record(header);

    const admin = new S3Client({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    });
    const bucket = `bench-${Date.now().toString(36)}`;
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));

    for (const mib of sizesMib) {
      const bytes = mib * MIB;
      const driver: ChildResult[] = [];
      const raw: ChildResult[] = [];
      for (let r = 0; r < runs; r++) {
        for (const mode of driverOnly ? (['driver'] as const) : (['driver', 'raw'] as const)) {
          const res = await runChild(mode, server.endpoint, bucket, bytes, partMib, queue);
          (mode === 'driver' ? driver : raw).push(res);
          process.stdout.write(
            `  ${mib} MiB ${mode} run ${r + 1}: ${res.seconds.toFixed(2)} s, peak rss ${(res.peakRssBytes / MIB).toFixed(0)} MiB ${JSON.stringify(res.atSampledPeak)}\n`,
          );
          await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: `bench/${mode}-${bytes}` }));
        }
      }
      if (driverOnly) continue;
      const dMed = median(driver.map((x) => x.seconds));
      const rMed = median(raw.map((x) => x.seconds));
      const budget = 100 * MIB + partMib * MIB * (queue + 1);
      const driverPeak = Math.max(...driver.map((x) => x.peakRssBytes));
      const result = {
        type: 'result',
        sizeBytes: bytes,
        runs,
        driver: {
          medianSeconds: +dMed.toFixed(3),
          mibPerSecond: +(mib / dMed).toFixed(1),
          seconds: driver.map((x) => +x.seconds.toFixed(3)),
          peakRssBytes: driverPeak,
        },
        raw: {
          medianSeconds: +rMed.toFixed(3),
          mibPerSecond: +(mib / rMed).toFixed(1),
          seconds: raw.map((x) => +x.seconds.toFixed(3)),
          peakRssBytes: Math.max(...raw.map((x) => x.peakRssBytes)),
        },
        /** Throughput of the driver relative to the raw ceiling (raw time / driver time). */
        ratio: +(rMed / dMed).toFixed(3),
        rssBudgetBytes: budget,
        driverWithinRssBudget: driverPeak <= budget,
        sameEtag: driver.every((d) => d.etag === raw[0]?.etag),
      };
      record(result);
    }
    await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
    admin.destroy();
  } finally {
    await server.stop();
    rmSync(dirname(childScript), { recursive: true, force: true });
  }
}

if (process.argv.includes('--child')) {
  await child();
} else {
  await main();
}
