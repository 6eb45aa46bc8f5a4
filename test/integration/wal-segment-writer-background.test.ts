/**
 * Synchronous mode at a segment boundary (wal-segment-writer.ts): the finished segment's last bytes
 * become durable as a chunk and the flush position passes the boundary while the whole segment's
 * upload still runs; at most `maxPendingSegments` complete segments wait (then `write` waits:
 * bounded memory); the flush position never passes what is durable; after the uploads, only whole
 * segments remain. Real fs storage; whole-segment puts are held back by a gate around it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { WalSegmentWriter } from '../../src/archive/wal-segment-writer';
import { readArchivedPartial } from '../../src/archive/wal-partial';
import { walSegmentKey } from '../../src/archive/repo-layout';
import { walFileName } from '../../src/lsn';
import { createFsStorage } from '../../src/storage/fs-storage';
import type { Storage } from '../../src/storage/storage';

const SEG = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('wal segment writer: background upload of complete segments (sync mode)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgark-walwriter-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports the boundary durable before the whole upload, bounds the waiting segments, ends with whole segments', async () => {
    const fs = createFsStorage({ root: dir });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const durableKeys = new Set<string>();
    const storage: Storage = Object.create(fs) as Storage;
    // The chunk-object path (as on S3): without it, synchronous mode on fs writes a padded file in place.
    storage.openFixedSizeFile = undefined;
    storage.put = async (key, body, opts) => {
      if (!key.includes('.partial')) await gate; // whole segments wait
      const r = await fs.put(key, body, opts);
      durableKeys.add(key);
      return r;
    };
    const flushes: bigint[] = [];
    const w = new WalSegmentWriter({
      storage,
      stanza: 'main',
      segmentSize: SEG,
      synchronous: true,
      flushIntervalMs: 1000,
      maxPendingSegments: 2,
      onFlushed: (l) => flushes.push(l),
    });
    const start = BigInt(SEG) * 16n;
    await w.begin(1, start);
    const data = randomBytes(SEG * 4);
    await w.write(start, data.subarray(0, SEG + 100));
    for (let i = 0; w.flushedLsn < start + BigInt(SEG + 100); i++) {
      if (i > 200) throw new Error(`flush stuck at ${w.flushedLsn}`);
      await sleep(20);
    }
    const seg0 = walFileName(1, 16n, SEG);
    expect(durableKeys.has(walSegmentKey('main', seg0))).toBe(false); // the whole upload is held back
    expect((await readArchivedPartial(fs, 'main', seg0, SEG)).bytes.equals(data.subarray(0, SEG))).toBe(true);

    // Two complete segments waiting (16 and 17): the write that opens segment 18 must wait.
    await w.write(start + BigInt(SEG + 100), data.subarray(SEG + 100, 2 * SEG));
    for (let i = 0; w.flushedLsn < start + BigInt(2 * SEG); i++) {
      if (i > 200) throw new Error(`flush stuck at ${w.flushedLsn}`);
      await sleep(20);
    }
    let wrote = false;
    const blocked = w
      .write(start + BigInt(2 * SEG), data.subarray(2 * SEG, 2 * SEG + 10))
      .then(() => (wrote = true));
    await sleep(300);
    expect(wrote).toBe(false);
    // Never more than durable: every reported position is covered by durable chunks.
    expect(flushes.every((l, i) => i === 0 || l >= flushes[i - 1]!)).toBe(true);
    expect(w.flushedLsn <= w.writtenLsn).toBe(true);

    release();
    await blocked;
    await w.flush();
    expect(w.flushedLsn).toBe(start + BigInt(2 * SEG + 10));
    for (const n of [16n, 17n]) {
      const name = walFileName(1, n, SEG);
      expect(durableKeys.has(walSegmentKey('main', name))).toBe(true);
      expect((await readArchivedPartial(fs, 'main', name, SEG)).keys).toEqual([]); // chunks deleted
    }
    await w.close();
    await fs.close();
  });
});
