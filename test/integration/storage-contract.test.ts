/**
 * The storage contract suite (conventions.md §6/§7): ONE set of tests, run against every driver:
 * the local-directory driver and the s3 driver against the real S3-compatible server of the harness
 * (Swift s3api, started by test/harness/global-setup.ts). Outcomes only: bytes and sha256 read back,
 * error codes, what is visible afterwards (and, for s3, that no multipart upload is left behind).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, StorageError } from '../../src/errors';
import { createFsStorage } from '../../src/storage/fs-storage';
import type { Storage } from '../../src/storage/storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import { createTestBucket } from '../harness/s3';

const MiB = 1024 * 1024;

/** A driver under test plus the probes the contract needs that the Storage interface does not offer. */
export interface DriverUnderTest {
  storage: Storage;
  /**
   * Whether concurrent conditional creates of one key are atomic (exactly one wins). fs: yes
   * (link(2)). Swift 2.30's s3api: no; it checks If-None-Match on CompleteMultipartUpload before
   * writing, so racing creators can all succeed (measured: in 7 of 10 rounds of 3 writers more than
   * one won). AWS S3 is atomic. Sequential ifAbsent is honoured by both.
   */
  atomicIfAbsent: boolean;
  /** The driver's part size (s3) or a comparable chunk size (fs). */
  partSizeBytes: number;
  /** Leftovers invisible through the interface: fs temporary files, s3 unfinished multipart uploads. */
  leftovers(): Promise<string[]>;
  cleanup(): Promise<void>;
}

export interface DriverFactory {
  name: string;
  create(): Promise<DriverUnderTest>;
}

const FS_FACTORY: DriverFactory = {
  name: 'fs',
  async create() {
    const root = await mkdtemp(join(tmpdir(), 'pgark-contract-'));
    const storage = createFsStorage({ root });
    return {
      storage,
      atomicIfAbsent: true,
      partSizeBytes: 5 * MiB,
      async leftovers() {
        const out: string[] = [];
        const walk = async (dir: string): Promise<void> => {
          for (const e of await readdir(dir, { withFileTypes: true })) {
            if (e.isDirectory()) await walk(join(dir, e.name));
            else if (/\.tmp-/.test(e.name)) out.push(join(dir, e.name));
          }
        };
        await walk(root);
        return out;
      },
      async cleanup() {
        await storage.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  },
};

/** The s3 driver against the harness's S3 server, a fresh bucket, a key prefix, 5 MiB parts. */
const S3_FACTORY: DriverFactory = {
  name: 's3',
  async create() {
    const bucket = await createTestBucket({ prefix: 'contract/run', name: 'pgark-contract' });
    const storage = createS3Storage({ ...bucket.storageOptions, partSizeBytes: 5 * MiB, queueSize: 4 });
    return {
      storage,
      atomicIfAbsent: false,
      partSizeBytes: 5 * MiB,
      async leftovers() {
        const n = await bucket.openUploads();
        return n === 0 ? [] : [`${n} open multipart upload(s)`];
      },
      async cleanup() {
        await storage.close();
        await bucket.cleanup();
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// Helpers

/** Deterministic pseudo-random bytes: a random 1 MiB block with the chunk number stamped in front. */
function generated(totalBytes: number, chunkBytes = MiB): { stream: Readable; sha256: () => string } {
  const block = randomBytes(chunkBytes);
  const hash = createHash('sha256');
  let produced = 0;
  let n = 0;
  const stream = new Readable({
    read() {
      if (produced >= totalBytes) {
        this.push(null);
        return;
      }
      const len = Math.min(chunkBytes, totalBytes - produced);
      const chunk = Buffer.allocUnsafe(len);
      block.copy(chunk, 0, 0, len);
      if (len >= 8) chunk.writeBigUInt64BE(BigInt(n), 0);
      n++;
      produced += len;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, sha256: () => hash.digest('hex') };
}

async function sha256OfStream(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

async function readAll(
  storage: Storage,
  key: string,
  range?: { start: number; end?: number },
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await storage.get(key, range ? { range } : {})) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function keysOf(storage: Storage, prefix: string, pageSize?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix, pageSize ? { pageSize } : {})) out.push(o.key);
  return out;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function inParallel<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++]!;
        await fn(item);
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------

describe.each([FS_FACTORY, S3_FACTORY])('storage contract: $name', (factory) => {
  let d: DriverUnderTest;
  let storage: Storage;

  beforeAll(async () => {
    d = await factory.create();
    storage = d.storage;
  });
  afterAll(async () => {
    await d?.cleanup();
  });

  it('describes itself without secrets', () => {
    expect(storage.kind).toBe(factory.name);
    expect(storage.describe()).not.toMatch(/testing|secret/i);
  });

  describe('round trips', () => {
    const sizes = (): [string, number][] => [
      ['0 bytes', 0],
      ['1 byte', 1],
      ['exactly one part', d.partSizeBytes],
      ['two parts + 1 byte', 2 * d.partSizeBytes + 1],
    ];

    it.each(['buffer', 'stream', 'stream with contentLength'] as const)(
      '%s bodies of 0, 1, part, parts+1 bytes',
      async (mode) => {
        for (const [label, size] of sizes()) {
          const data = randomBytes(size);
          const key = `rt/${mode.replace(/ /g, '-')}/${size}`;
          const body =
            mode === 'buffer'
              ? data
              : Readable.from(
                  size === 0 ? [] : [data.subarray(0, 7), data.subarray(7)].filter((b) => b.length > 0),
                );
          const res = await storage.put(key, body, mode === 'stream' ? {} : { contentLength: size });
          expect(res.size, label).toBe(size);
          expect(res.sha256, label).toBe(sha(data));
          expect(res.key).toBe(key);
          const info = await storage.head(key);
          expect(info?.size, label).toBe(size);
          expect(info?.key).toBe(key);
          const back = await readAll(storage, key);
          expect(back.length, label).toBe(size);
          expect(sha(back), label).toBe(sha(data));
        }
        expect(await d.leftovers()).toEqual([]);
      },
    );

    it('overwrites an existing key whole', async () => {
      await storage.put('ow/key', Buffer.from('first version'));
      await storage.put('ow/key', Buffer.from('second'));
      expect((await readAll(storage, 'ow/key')).toString()).toBe('second');
    });

    it('streams 1 GiB in and out with equal sha256', async () => {
      const total = 1024 * MiB;
      const gen = generated(total);
      const res = await storage.put('big/1gib', gen.stream, { sizeHint: total });
      const expected = gen.sha256();
      expect(res.size).toBe(total);
      expect(res.sha256).toBe(expected);
      expect((await storage.head('big/1gib'))?.size).toBe(total);
      const back = await sha256OfStream(await storage.get('big/1gib'));
      expect(back).toEqual({ sha256: expected, size: total });
      await storage.delete(['big/1gib']);
      expect(await storage.head('big/1gib')).toBeUndefined();
    }, 600_000);
  });

  describe('reads', () => {
    const data = randomBytes(10_000);
    beforeAll(async () => {
      await storage.put('range/obj', data);
    });

    it('reads a start-end range, both ends inclusive', async () => {
      expect(
        (await readAll(storage, 'range/obj', { start: 1000, end: 1999 })).equals(data.subarray(1000, 2000)),
      ).toBe(true);
      expect((await readAll(storage, 'range/obj', { start: 0, end: 0 })).equals(data.subarray(0, 1))).toBe(
        true,
      );
      expect(
        (await readAll(storage, 'range/obj', { start: 9999, end: 9999 })).equals(data.subarray(9999)),
      ).toBe(true);
    });

    it('reads a start-only range to the end', async () => {
      expect((await readAll(storage, 'range/obj', { start: 9990 })).equals(data.subarray(9990))).toBe(true);
    });

    it('clamps an end beyond the object, as HTTP ranges do', async () => {
      expect(
        (await readAll(storage, 'range/obj', { start: 9000, end: 20_000 })).equals(data.subarray(9000)),
      ).toBe(true);
    });

    it('refuses a range starting beyond the end', async () => {
      for (const start of [10_000, 50_000]) {
        const err = await rejection(readAll(storage, 'range/obj', { start }));
        expect(err).toBeInstanceOf(StorageError);
        expect((err as StorageError).code).toBe('STORAGE_INVALID_RANGE');
      }
    });

    it('reports an absent key: get → STORAGE_NOT_FOUND, head → undefined', async () => {
      const err = await rejection(storage.get('range/absent'));
      expect(err).toBeInstanceOf(StorageError);
      expect((err as StorageError).code).toBe('STORAGE_NOT_FOUND');
      expect((err as StorageError).key).toBe('range/absent');
      expect(await storage.head('range/absent')).toBeUndefined();
      // A "directory" of keys is not a key.
      expect(await storage.head('range')).toBeUndefined();
      expect(((await rejection(storage.get('range'))) as StorageError).code).toBe('STORAGE_NOT_FOUND');
    });
  });

  describe('listing', () => {
    const N = 2500;
    const keys: string[] = [];
    for (let i = 0; i < N; i++) keys.push(`list/k${String(i).padStart(5, '0')}`);
    // Keys whose S3 order differs from a naive per-directory sort ('-' < '.' < '/' < '0').
    const tricky = ['list/a-b', 'list/a.c', 'list/a/x', 'list/a/y/z', 'list/a0', 'list/é'];
    const all = [...keys, ...tricky].sort(byUtf8);

    beforeAll(async () => {
      await inParallel([...keys, ...tricky], 16, (k) => storage.put(k, Buffer.from(k)));
    }, 300_000);

    it('lists thousands of keys sorted by UTF-8 bytes, with sizes', async () => {
      const seen: string[] = [];
      for await (const o of storage.list('list/')) {
        seen.push(o.key);
        if (o.key === 'list/k00042') expect(o.size).toBe('list/k00042'.length);
      }
      expect(seen).toEqual(all);
    });

    it('pages: default, 1000 and small pages give the same result', async () => {
      expect(await keysOf(storage, 'list/', 1000)).toEqual(all);
      expect(await keysOf(storage, 'list/k0', 7)).toEqual(keys.filter((k) => k.startsWith('list/k0')));
    });

    it('matches a plain string prefix, not a directory', async () => {
      const expected = keys.filter((k) => k.startsWith('list/k0001'));
      expect(expected.length).toBe(10);
      expect(await keysOf(storage, 'list/k0001')).toEqual(expected);
      expect(await keysOf(storage, 'list/a')).toEqual([
        'list/a-b',
        'list/a.c',
        'list/a/x',
        'list/a/y/z',
        'list/a0',
      ]);
      expect(await keysOf(storage, 'list/a/')).toEqual(['list/a/x', 'list/a/y/z']);
      expect(await keysOf(storage, 'list/nothing-here')).toEqual([]);
      expect(await keysOf(storage, 'no-such-prefix/')).toEqual([]);
    });

    it('deletes thousands of keys in one call', async () => {
      await storage.delete(all);
      expect(await keysOf(storage, 'list/')).toEqual([]);
    }, 600_000);
  });

  describe('delete', () => {
    it('deletes present keys and ignores absent ones', async () => {
      await storage.put('del/a', Buffer.from('a'));
      await storage.put('del/b/c', Buffer.from('c'));
      await storage.delete(['del/a', 'del/absent', 'del/b/c', 'del/b/c']);
      expect(await storage.head('del/a')).toBeUndefined();
      expect(await storage.head('del/b/c')).toBeUndefined();
      expect(await keysOf(storage, 'del/')).toEqual([]);
      await storage.delete([]);
      // A key can be written again where a deleted "directory" was.
      await storage.put('del/b/c', Buffer.from('again'));
      expect((await readAll(storage, 'del/b/c')).toString()).toBe('again');
    });
  });

  describe('conditional create (ifAbsent)', () => {
    it.each(['buffer', 'stream'] as const)(
      'a second create of the same key conflicts and leaves the first (%s)',
      async (mode) => {
        const key = `cond/${mode}`;
        const body = (s: string): Buffer | Readable =>
          mode === 'buffer' ? Buffer.from(s) : Readable.from([Buffer.from(s)]);
        const first = await storage.put(key, body('original'), { ifAbsent: true });
        expect(first.size).toBe(8);
        const err = await rejection(storage.put(key, body('intruder!'), { ifAbsent: true }));
        expect(err).toBeInstanceOf(StorageError);
        expect((err as StorageError).code).toBe('STORAGE_CONFLICT');
        expect((err as StorageError).key).toBe(key);
        expect((await readAll(storage, key)).toString()).toBe('original');
        expect(await d.leftovers()).toEqual([]);
      },
    );

    it('concurrent creators of one key: exactly one wins where the store is atomic; never a torn object', async () => {
      let roundsWithOneWinner = 0;
      for (let round = 0; round < 10; round++) {
        const key = `cond/race-${round}`;
        const bodies = [0, 1, 2].map((w) => Buffer.from(`writer ${w} of round ${round}`));
        const settled = await Promise.allSettled(bodies.map((b) => storage.put(key, b, { ifAbsent: true })));
        const winners = settled.flatMap((r, w) => (r.status === 'fulfilled' ? [w] : []));
        for (const r of settled) {
          if (r.status === 'rejected') expect((r.reason as StorageError).code).toBe('STORAGE_CONFLICT');
        }
        expect(winners.length).toBeGreaterThanOrEqual(1);
        const stored = await readAll(storage, key);
        // Whatever happened, the stored object is one writer's whole body, and one of the winners'.
        expect(winners.map((w) => bodies[w]!.toString())).toContain(stored.toString());
        if (winners.length === 1) roundsWithOneWinner++;
      }
      if (d.atomicIfAbsent) expect(roundsWithOneWinner).toBe(10);
      expect(await d.leftovers()).toEqual([]);
    });

    it('a large conditional create (multipart on s3) conflicts too', async () => {
      const size = d.partSizeBytes + 1;
      const a = randomBytes(size);
      await storage.put('cond/large', Readable.from([a]), { ifAbsent: true });
      const err = await rejection(
        storage.put('cond/large', Readable.from([randomBytes(size)]), { ifAbsent: true }),
      );
      expect((err as StorageError).code).toBe('STORAGE_CONFLICT');
      expect(sha(await readAll(storage, 'cond/large'))).toBe(sha(a));
      expect(await d.leftovers()).toEqual([]);
    });
  });

  describe('failures leave nothing visible', () => {
    it('abort mid-stream: AbortError, no key, no temp file or multipart upload', async () => {
      const ac = new AbortController();
      let sent = 0;
      // More than one part, then a stall: the abort arrives while the upload is in flight.
      const body = new Readable({
        read() {
          if (sent >= 2 * d.partSizeBytes + 1024) {
            setTimeout(() => ac.abort(new Error('test abort')), 50);
            return; // never ends
          }
          const chunk = randomBytes(MiB);
          sent += chunk.length;
          this.push(chunk);
        },
      });
      const err = await rejection(storage.put('fail/aborted', body, { signal: ac.signal }));
      expect(err).toBeInstanceOf(AbortError);
      expect((err as AbortError).code).toBe('ABORTED');
      expect(await storage.head('fail/aborted')).toBeUndefined();
      expect(await keysOf(storage, 'fail/')).toEqual([]);
      expect(await d.leftovers()).toEqual([]);
    });

    it('an already aborted signal rejects before writing', async () => {
      const ac = new AbortController();
      ac.abort();
      const err = await rejection(storage.put('fail/pre-aborted', Buffer.from('x'), { signal: ac.signal }));
      expect((err as AbortError).code).toBe('ABORTED');
      expect(await storage.head('fail/pre-aborted')).toBeUndefined();
    });

    it('a body shorter or longer than its contentLength is an error, nothing visible', async () => {
      for (const [actual, declared] of [
        [100, 200],
        [d.partSizeBytes + 10, 2 * d.partSizeBytes],
        [300, 100],
      ] as const) {
        const key = `fail/length-${actual}-${declared}`;
        const err = await rejection(
          storage.put(key, Readable.from([randomBytes(actual)]), { contentLength: declared }),
        );
        expect(err, key).toBeInstanceOf(StorageError);
        expect((err as StorageError).code, key).toBe('STORAGE_INCOMPLETE_UPLOAD');
        expect(await storage.head(key)).toBeUndefined();
      }
      const err = await rejection(storage.put('fail/buffer-length', Buffer.alloc(10), { contentLength: 11 }));
      expect((err as StorageError).code).toBe('STORAGE_INCOMPLETE_UPLOAD');
      expect(await storage.head('fail/buffer-length')).toBeUndefined();
      expect(await d.leftovers()).toEqual([]);
    });

    it('a body that errors mid-stream leaves nothing visible', async () => {
      let n = 0;
      const body = new Readable({
        read() {
          if (n++ === 3) {
            this.destroy(new Error('source failed'));
            return;
          }
          this.push(randomBytes(MiB));
        },
      });
      await rejection(storage.put('fail/source-error', body));
      expect(await storage.head('fail/source-error')).toBeUndefined();
      expect(await d.leftovers()).toEqual([]);
    });
  });

  it('concurrent writers of different keys', async () => {
    const sizes = [0, 1, 1000, MiB, d.partSizeBytes + 3, 3 * MiB, 17, 2 * d.partSizeBytes];
    const datas = sizes.map((s) => randomBytes(s));
    const results = await Promise.all(
      datas.map((data, i) => storage.put(`conc/${i}`, Readable.from(data.length ? [data] : []), {})),
    );
    for (let i = 0; i < datas.length; i++) {
      expect(results[i]!.sha256).toBe(sha(datas[i]!));
      expect(sha(await readAll(storage, `conc/${i}`))).toBe(sha(datas[i]!));
    }
    expect(await keysOf(storage, 'conc/')).toEqual(datas.map((_, i) => `conc/${i}`).sort(byUtf8));
  });

  it('refuses invalid keys with STORAGE_INVALID_KEY', async () => {
    for (const key of ['', '/abs', 'a//b', 'a/./b', 'a/../b', '..', '.', 'trail/', 'nul\0byte']) {
      for (const op of [
        () => storage.put(key, Buffer.from('x')),
        () => storage.get(key),
        () => storage.head(key),
        () => storage.delete([key]),
      ]) {
        const err = await rejection(op());
        expect(err, JSON.stringify(key)).toBeInstanceOf(StorageError);
        expect((err as StorageError).code, JSON.stringify(key)).toBe('STORAGE_INVALID_KEY');
      }
    }
    expect(await d.leftovers()).toEqual([]);
  });
});
