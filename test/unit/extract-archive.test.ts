import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { extractArchive } from '../../src/restore/extract-archive';
import { createFsStorage } from '../../src/storage/fs-storage';
import type { CatalogObject } from '../../src/archive/backup-catalog';

const work = mkdtempSync(join(tmpdir(), 'pgark-extract-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const storage = createFsStorage({ root: join(work, 'repo') });

/** A tar of many files (some empty, some larger than one read/write batch) and its expected contents. */
async function makeArchive(): Promise<{ tar: Buffer; files: Map<string, Buffer> }> {
  const files = new Map<string, Buffer>();
  const p = pack();
  p.entry({ name: 'base', type: 'directory' });
  for (let i = 0; i < 200; i++) {
    const body = Buffer.alloc(i % 7 === 0 ? 0 : (i * 997) % 20_000, i);
    files.set(`base/1/${i}`, body);
    p.entry({ name: `base/1/${i}`, size: body.length }, body);
  }
  const big = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
  files.set('global/big', big);
  p.entry({ name: 'global/big', size: big.length }, big);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
  return { tar: Buffer.concat(chunks), files };
}

async function stored(name: string, data: Buffer): Promise<CatalogObject> {
  const key = `b/${name}`;
  await storage.put(key, data);
  return {
    kind: 'archive',
    name,
    key,
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
  };
}

describe('extractArchive', () => {
  it('writes every member with its content and mode 0600', async () => {
    const { tar, files } = await makeArchive();
    const obj = await stored('base.tar', tar);
    const root = join(work, 'out1');
    expect(await extractArchive(storage, obj, root)).toBe(files.size);
    for (const [name, body] of files) {
      expect(readFileSync(join(root, name)).equals(body)).toBe(true);
      expect(statSync(join(root, name)).mode & 0o777).toBe(0o600);
    }
    expect(readdirSync(join(root, 'base/1'))).toHaveLength(200);
  });

  it('extracts a gzip-compressed archive, its sha256 checked over the stored (compressed) bytes', async () => {
    const { tar, files } = await makeArchive();
    const obj = await stored('base.tar.gz', gzipSync(tar));
    const root = join(work, 'out-gz');
    expect(await extractArchive(storage, obj, root)).toBe(files.size);
    for (const [name, body] of files) expect(readFileSync(join(root, name)).equals(body)).toBe(true);
    await expect(
      extractArchive(storage, { ...obj, sha256: '0'.repeat(64) }, join(work, 'out-gz2')),
    ).rejects.toMatchObject({ code: 'INTEGRITY_CHECKSUM_MISMATCH' });
  });

  it('refuses an object that differs from its catalog entry (INTEGRITY_CHECKSUM_MISMATCH)', async () => {
    const { tar } = await makeArchive();
    const obj = await stored('base2.tar', tar);
    await expect(
      extractArchive(storage, { ...obj, sha256: '0'.repeat(64) }, join(work, 'out2')),
    ).rejects.toMatchObject({ code: 'INTEGRITY_CHECKSUM_MISMATCH' });
    await expect(
      extractArchive(storage, { ...obj, size: obj.size + 1 }, join(work, 'out3')),
    ).rejects.toMatchObject({
      code: 'INTEGRITY_CHECKSUM_MISMATCH',
    });
  });

  it('refuses a truncated archive and a member escaping the target (INTEGRITY_ARCHIVE_INVALID)', async () => {
    const { tar } = await makeArchive();
    const cut = tar.subarray(0, 512 * 40 + 7);
    const obj = await stored('cut.tar', cut);
    await expect(extractArchive(storage, obj, join(work, 'out4'))).rejects.toMatchObject({
      code: 'INTEGRITY_ARCHIVE_INVALID',
    });
    const p = pack();
    p.entry({ name: '../escape', size: 1 }, Buffer.from('x'));
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
    const evil = await stored('evil.tar', Buffer.concat(chunks));
    await expect(extractArchive(storage, evil, join(work, 'out5'))).rejects.toMatchObject({
      code: 'INTEGRITY_ARCHIVE_INVALID',
    });
  });

  it('stops with AbortError when aborted before or during the extraction', async () => {
    const { tar } = await makeArchive();
    const obj = await stored('base3.tar', tar);
    const before = new AbortController();
    before.abort();
    await expect(
      extractArchive(storage, obj, join(work, 'out6'), { signal: before.signal }),
    ).rejects.toMatchObject({
      code: 'ABORTED',
    });
    // Mid-way: the signal fires after a few chunks have been read.
    const during = new AbortController();
    let chunks = 0;
    const slow: typeof storage = Object.assign(Object.create(storage) as typeof storage, {
      get: async (key: string, o: Parameters<typeof storage.get>[1]) => {
        const src = await storage.get(key, { ...o, readChunkBytes: 16 * 1024 });
        const tap = new PassThrough({
          transform(c: Buffer, _e, cb) {
            if (++chunks === 3) during.abort();
            cb(null, c);
          },
        });
        src.on('error', (e) => tap.destroy(e)); // the fs stream ends with AbortError too
        return src.pipe(tap);
      },
    });
    await expect(
      extractArchive(slow, obj, join(work, 'out7'), { signal: during.signal }),
    ).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(chunks).toBeLessThan(tar.length / (16 * 1024));
  });
});
