/**
 * The writer's in-place path (synchronous mode, fs storage): one padded file per open segment, the
 * flush position passes a segment boundary once the last bytes are fdatasync'ed, the complete
 * segment ends up under its own name (published from the padded file, create-only, equal bytes
 * accepted), a stop compacts the tip to `.partial`, and a writer that resumes from `.partial`
 * creates the padded file with those bytes. Real fs storage.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { WalSegmentWriter } from '../../src/archive/wal-segment-writer';
import { walPartialKey, walPartialPaddedKey, walSegmentKey } from '../../src/archive/repo-layout';
import { walFileName } from '../../src/lsn';
import { createFsStorage } from '../../src/storage/fs-storage';
import { StorageError } from '../../src/errors';

const SEG = 1024 * 1024;

describe('wal segment writer: padded file in place (sync mode, fs)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgark-walpadw-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (key: string) => readFileSync(join(dir, ...key.split('/')));

  it('writes in place, publishes complete segments, compacts on stop, resumes from .partial', async () => {
    const fs = createFsStorage({ root: dir });
    const events: string[] = [];
    const mk = () =>
      new WalSegmentWriter({
        storage: fs,
        stanza: 'main',
        segmentSize: SEG,
        synchronous: true,
        flushIntervalMs: 1000,
        onEvent: (e) => {
          if (e.type === 'wal.partial.durable' || e.type === 'wal.segment.durable') events.push(e.key);
        },
      });
    const start = BigInt(SEG) * 16n;
    const s16 = walFileName(1, 16n, SEG);
    const s17 = walFileName(1, 17n, SEG);
    const data = randomBytes(SEG * 2);
    // Segment 16 already archived with the same bytes (archive_command, say): accepted as is.
    await fs.put(walSegmentKey('main', s16), data.subarray(0, SEG));

    let w = mk();
    await w.begin(1, start);
    await w.write(start, data.subarray(0, 1000));
    await w.flush();
    expect(w.flushedLsn).toBe(start + 1000n);
    expect((await fs.head(walPartialPaddedKey('main', s16)))?.size).toBe(SEG);
    await w.write(start + 1000n, data.subarray(1000, SEG + 300));
    await w.flush();
    expect(w.flushedLsn).toBe(start + BigInt(SEG + 300));
    expect(w.counters.segmentsAlreadyPresent).toBe(1);
    expect(await fs.head(walPartialPaddedKey('main', s16))).toBeUndefined();
    const padded17 = file(walPartialPaddedKey('main', s17));
    expect(padded17.length).toBe(SEG);
    expect(padded17.subarray(0, 300).equals(data.subarray(SEG, SEG + 300))).toBe(true);
    expect(padded17.subarray(300).every((b) => b === 0)).toBe(true);
    expect(events.every((k) => !k.includes('.partial.0'))).toBe(true); // no chunk objects

    // Stop: the tip becomes `.partial` (exact bytes), the padded file goes.
    await w.compact(true);
    await w.close();
    expect(file(walPartialKey('main', s17)).equals(data.subarray(SEG, SEG + 300))).toBe(true);
    expect(await fs.head(walPartialPaddedKey('main', s17))).toBeUndefined();

    // Resume from `.partial`: the padded file is created holding those bytes, then grows in place.
    w = mk();
    await w.begin(1, start + BigInt(SEG));
    expect(w.flushedLsn).toBe(start + BigInt(SEG + 300));
    await w.write(start + BigInt(SEG), data.subarray(SEG, SEG + 300)); // re-streamed: compared
    await w.write(start + BigInt(SEG + 300), data.subarray(SEG + 300, 2 * SEG));
    await w.flush();
    expect(w.flushedLsn).toBe(start + BigInt(2 * SEG));
    expect(file(walSegmentKey('main', s17)).equals(data.subarray(SEG, 2 * SEG))).toBe(true);
    expect(await fs.head(walPartialKey('main', s17))).toBeUndefined();
    expect(await fs.head(walPartialPaddedKey('main', s17))).toBeUndefined();
    await w.close();
    await fs.close();
  });

  it('restarts over a padded file: nothing counted durable, zeros accepted, a stop before catching up keeps it, a changed byte is a conflict', async () => {
    const fs = createFsStorage({ root: dir });
    const mk = () =>
      new WalSegmentWriter({
        storage: fs,
        stanza: 'main',
        segmentSize: SEG,
        synchronous: true,
        flushIntervalMs: 1000,
      });
    const start = BigInt(SEG) * 40n;
    const name = walFileName(1, 40n, SEG);
    const key = walPartialPaddedKey('main', name);
    const data = randomBytes(SEG);
    for (let i = 0; i < data.length; i++) if (data[i] === 0) data[i] = 1; // every WAL byte non-zero here
    // What a killed run left: 8000 bytes written, a zero "page" at 2048..3072 (lost by a power loss).
    const f = await fs.openFixedSizeFile!(key, SEG, { initial: data.subarray(0, 8000) });
    await f.writeDurably(Buffer.alloc(1024), 2048);
    await f.close();

    let w = mk();
    await w.begin(1, start);
    expect(w.flushedLsn).toBe(start); // the padded file's durable prefix is unknown
    await w.write(start, data.subarray(0, 4000)); // over the zero hole: accepted
    await w.flush();
    expect(w.flushedLsn).toBe(start + 4000n);
    // Stopped before the re-stream reached the file's end: the file stays, holding the union.
    await w.compact(true);
    await w.close();
    expect(await fs.head(walPartialKey('main', name))).toBeUndefined();
    expect(file(key).subarray(0, 8000).equals(data.subarray(0, 8000))).toBe(true);

    // A different non-zero byte inside what the file holds: INTEGRITY_WAL_CONFLICT.
    w = mk();
    await w.begin(1, start);
    const other = Buffer.from(data.subarray(0, 8000));
    other[6000] = data[6000] === 1 ? 2 : 1;
    const err = await w.write(start, other).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('INTEGRITY_WAL_CONFLICT');
    await w.close();

    // The same bytes: caught up, then a stop compacts to the exact `.partial`.
    w = mk();
    await w.begin(1, start);
    await w.write(start, data.subarray(0, 9000));
    await w.compact(true);
    await w.close();
    expect(file(walPartialKey('main', name)).equals(data.subarray(0, 9000))).toBe(true);
    expect(await fs.head(key)).toBeUndefined();
    await fs.close();
  });

  it('blocking flush: a failed in-line write is not counted, and the segment file is written again from its start', async () => {
    const fs = createFsStorage({ root: join(dir, 'blocking') });
    // The real fs driver, with one in-line write made to fail (as an EIO on fdatasync would).
    let failNext = false;
    let reopened = 0;
    const storage = Object.assign(Object.create(fs) as typeof fs, {
      openFixedSizeFile: async (...args: Parameters<NonNullable<typeof fs.openFixedSizeFile>>) => {
        reopened++;
        const f = await fs.openFixedSizeFile!(...args);
        const sync = f.writeDurablySync!;
        return Object.assign(Object.create(f) as typeof f, {
          writeDurablySync: (data: Buffer, offset: number) => {
            if (failNext) {
              failNext = false;
              throw new StorageError('STORAGE_IO', 'injected write failure', { key: f.key });
            }
            sync(data, offset);
          },
        });
      },
    });
    const w = new WalSegmentWriter({
      storage,
      stanza: 'main',
      segmentSize: SEG,
      synchronous: true,
      blockingFlush: true,
      flushIntervalMs: 1000,
    });
    const start = BigInt(SEG) * 16n;
    const name = walFileName(1, 16n, SEG);
    const data = randomBytes(4000);
    await w.begin(1, start);
    await w.write(start, data.subarray(0, 1000));
    await w.flush(); // opens the file (the async path)
    await w.write(start + 1000n, data.subarray(1000, 2000));
    await w.flush(); // in line
    expect(w.flushedLsn).toBe(start + 2000n);
    expect(reopened).toBe(1);
    failNext = true;
    await w.write(start + 2000n, data.subarray(2000, 4000));
    await w.flush();
    // The failure fell back to a new file written from offset 0; everything reported is on disk.
    expect(reopened).toBe(2);
    expect(w.flushedLsn).toBe(start + 4000n);
    const padded = readFileSync(join(dir, 'blocking', ...walPartialPaddedKey('main', name).split('/')));
    expect(padded.subarray(0, 4000).equals(data)).toBe(true);
    await w.close();
    await fs.close();
  });
});
