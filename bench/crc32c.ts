/**
 * Throughput of pgark's CRC-32C (slice-by-8) against the byte-wise table and node's sha256, on 64 MiB of random
 * bytes in 1 MiB chunks. Measures, never asserts. Run: npx tsx bench/crc32c.ts
 */
import { createHash, randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { crc32cInit, crc32cUpdate, crc32cUpdateBytewise } from '../src/verify/crc32c';

const CHUNK = 1024 * 1024;
const TOTAL_MB = 64;
const chunk = randomBytes(CHUNK);

function measure(name: string, run: () => void): void {
  const times: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  const median = times[1]!;
  process.stdout.write(
    JSON.stringify({
      bench: 'crc32c',
      case: name,
      mb: TOTAL_MB,
      medianSeconds: +median.toFixed(3),
      mbPerSecond: +(TOTAL_MB / median).toFixed(1),
    }) + '\n',
  );
}

process.stdout.write(JSON.stringify({ machine: cpus()[0]?.model, node: process.version }) + '\n');
measure('slice-by-8', () => {
  let s = crc32cInit();
  for (let i = 0; i < TOTAL_MB; i++) s = crc32cUpdate(s, chunk);
});
measure('bytewise', () => {
  let s = crc32cInit();
  for (let i = 0; i < TOTAL_MB; i++) s = crc32cUpdateBytewise(s, chunk);
});
measure('node sha256 (reference)', () => {
  const h = createHash('sha256');
  for (let i = 0; i < TOTAL_MB; i++) h.update(chunk);
  h.digest();
});
