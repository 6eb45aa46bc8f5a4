/**
 * The restore's sha256 on a worker thread (src/restore/sha256-worker.ts) and extractArchive's use of
 * it for objects of MIN_WORKER_HASH_BYTES and more: same digest as an inline hash for any chunking,
 * a mismatch still refused, an abort still ends the extraction (and the worker) promptly.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { AbortError, IntegrityError } from '../../src/errors';
import { extractArchive, MIN_WORKER_HASH_BYTES } from '../../src/restore/extract-archive';
import { WorkerSha256 } from '../../src/restore/sha256-worker';
import { createFsStorage } from '../../src/storage/fs-storage';
import type { CatalogObject } from '../../src/archive/backup-catalog';

const MIB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'pgark-sha-worker-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const storage = createFsStorage({ root: join(work, 'repo') });

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((x = (x * 1103515245 + 12345) >>> 0), Math.min(i, n - 4));
  return b;
}

async function hashInWorker(data: Buffer, chunk: number): Promise<string> {
  const w = new WorkerSha256();
  for (let at = 0; at < data.length; at += chunk) {
    const wait = w.update(data.subarray(at, Math.min(data.length, at + chunk)));
    if (wait) await wait;
  }
  expect(w.bytes).toBe(data.length);
  return w.digest();
}

describe('WorkerSha256', () => {
  it('gives the inline digest for empty input, small chunks, chunks above one slot, and a full ring', async () => {
    const data = bytes(20 * MIB + 13, 5);
    const expected = createHash('sha256').update(data).digest('hex');
    for (const chunk of [4096, 1 * MIB, 3 * MIB + 1, data.length])
      expect(await hashInWorker(data, chunk)).toBe(expected);
    expect(await hashInWorker(Buffer.alloc(0), 1)).toBe(createHash('sha256').digest('hex'));
  });
});

describe('extractArchive of a large object (worker hash)', () => {
  const files = new Map<string, Buffer>();
  let obj: CatalogObject;

  it('writes every member and checks the sha256', async () => {
    const p = pack();
    for (let i = 0; i < 5; i++) {
      const body = bytes(MIN_WORKER_HASH_BYTES / 4 + i * 1001, i + 1);
      files.set(`base/1/${i}`, body);
      p.entry({ name: `base/1/${i}`, size: body.length }, body);
    }
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
    const tar = Buffer.concat(chunks);
    expect(tar.length).toBeGreaterThanOrEqual(MIN_WORKER_HASH_BYTES);
    await storage.put('b/base.tar', tar);
    obj = {
      kind: 'archive',
      name: 'base.tar',
      key: 'b/base.tar',
      size: tar.length,
      sha256: createHash('sha256').update(tar).digest('hex'),
    };
    const root = join(work, 'out1');
    expect(await extractArchive(storage, obj, root)).toBe(files.size);
    for (const [name, body] of files) expect(readFileSync(join(root, name)).equals(body)).toBe(true);
  });

  it('refuses a sha256 or size that differs from the catalog (INTEGRITY_CHECKSUM_MISMATCH)', async () => {
    for (const [i, bad] of [
      { ...obj, sha256: '0'.repeat(64) },
      { ...obj, size: obj.size + 1 },
    ].entries()) {
      const err = await extractArchive(storage, bad, join(work, `bad${i}`)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).code).toBe('INTEGRITY_CHECKSUM_MISMATCH');
    }
  });

  it('an abort mid-extraction ends it with AbortError', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    const err = await extractArchive(storage, obj, join(work, 'aborted'), { signal: ac.signal }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AbortError);
  });
});
