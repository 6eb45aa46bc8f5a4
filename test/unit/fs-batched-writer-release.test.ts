/**
 * The fs driver's batched writer releases leased chunks (storage/chunk-release.ts: the replication
 * connection's read slabs) once their write has settled, never before, each exactly once; the file
 * holds every byte in order.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchedFileWriter } from '../../src/storage/fs-batched-writer';
import { attachChunkRelease } from '../../src/storage/chunk-release';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('batched file writer: chunk release', () => {
  it('releases each leased chunk once, after the write of its batch settled', async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgark-bfw-'));
    const path = join(dir, 'f');
    const fh = await open(path, 'w');
    const released: number[] = [];
    const chunks = [60, 60, 60, 60, 30].map((n, i) => {
      const c = Buffer.alloc(n, i + 1);
      attachChunkRelease(c, () => released.push(i));
      return c;
    });
    const plain = Buffer.alloc(10, 9); // no release attached
    const w = new BatchedFileWriter(fh, { batchBytes: 100, syncEveryBytes: 0 });
    expect(w.add(chunks[0]!)).toBeUndefined(); // 60 < 100: gathered, not written
    expect(released).toEqual([]);
    const full = w.add(chunks[1]!); // 120 >= 100: the first batch goes out
    expect(full).toBeDefined();
    expect(released).toEqual([]); // not before its write settled
    await full;
    const second = w.add(chunks[2]!);
    expect(second).toBeUndefined();
    const third = w.add(chunks[3]!); // waits for batch 1, then writes chunks 2 and 3
    await third;
    expect(released).toEqual([0, 1]);
    expect(w.add(chunks[4]!)).toBeUndefined();
    expect(w.add(plain)).toBeUndefined();
    await w.finish();
    expect(released).toEqual([0, 1, 2, 3, 4]);
    await fh.close();
    expect(readFileSync(path)).toEqual(Buffer.concat([...chunks, plain]));
  });
});
