/**
 * Compress/decompress throughput of each codec in src/archive/compression.ts on one real data file, streamed in
 * 1 MiB chunks (median of 3 runs), with the system CLI tools (gzip, lz4, zstd) as the baseline in the same run.
 * Measures, never asserts. Writes JSON lines to stdout.
 *
 *   npx tsx bench/compression.ts <file>
 *
 * docs/design-compression.md used a pgbench_accounts heap file (pgbench -i -s 14 on PG15, 188 MB).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  compressionImplementations,
  createCompressStream,
  createDecompressStream,
  type CompressionName,
} from '../src/archive/compression';

const file = process.argv[2];
if (!file) throw new Error('usage: tsx bench/compression.ts <file>');
const data = readFileSync(file);
const MB = data.length / 1e6;
const chunks: Buffer[] = [];
for (let off = 0; off < data.length; off += 1 << 20) chunks.push(data.subarray(off, off + (1 << 20)));

async function through(input: Buffer[], t: NodeJS.ReadWriteStream): Promise<Buffer[]> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(input), t, async function (src: AsyncIterable<unknown>) {
    for await (const c of src) out.push(c as Buffer);
  });
  return out;
}

async function median(fn: () => Promise<void> | void): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return t.sort((a, b) => a - b)[1]!;
}

const line = (o: object): boolean => process.stdout.write(JSON.stringify(o) + '\n');
line({
  machine: cpus()[0]?.model,
  cores: cpus().length,
  node: process.version,
  file,
  bytes: data.length,
  impl: compressionImplementations(),
});

for (const codec of ['gzip', 'lz4', 'zstd'] as CompressionName[]) {
  let compressed: Buffer[] = [];
  const tc = await median(async () => {
    compressed = await through(chunks, createCompressStream(codec));
  });
  const csize = compressed.reduce((n, c) => n + c.length, 0);
  const td = await median(async () => {
    await through(compressed, createDecompressStream(codec));
  });
  const cli = codec === 'gzip' ? 'gzip' : codec;
  const cliArgs = codec === 'zstd' ? ['-q', '-3', '-c'] : ['-c'];
  const cliC = await median(() => void execFileSync(cli, cliArgs, { input: data, maxBuffer: 1 << 30 }));
  const cliBytes = execFileSync(cli, cliArgs, { input: data, maxBuffer: 1 << 30 });
  const cliD = await median(
    () => void execFileSync(cli, ['-d', '-c'], { input: cliBytes, maxBuffer: 1 << 30 }),
  );
  line({
    bench: 'compression',
    codec,
    ratio: +(data.length / csize).toFixed(2),
    compressMBps: +(MB / tc).toFixed(1),
    decompressMBps: +(MB / td).toFixed(1),
    cliCompressMBps: +(MB / cliC).toFixed(1),
    cliDecompressMBps: +(MB / cliD).toFixed(1),
    peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  });
}
