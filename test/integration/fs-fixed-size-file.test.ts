/**
 * The fs driver's optional openFixedSizeFile capability on a real directory: the key always shows a
 * file of the full size (initial bytes, zeros after), in-place writes, reopening, a size conflict,
 * create-only publish. The S3 driver does not offer it (callers fall back to put).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import { StorageError } from '../../src/errors';

const SIZE = 1024 * 1024;

describe('fs openFixedSizeFile', () => {
  const root = mkdtempSync(join(tmpdir(), 'pgark-fixed-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const storage = createFsStorage({ root });

  it('blocking writes (on the calling thread) land in place like the thread-pool ones', async () => {
    const key = 'blocking/seg.partial.padded';
    const f = await storage.openFixedSizeFile!(key, SIZE, { initial: Buffer.from('ab'), blocking: true });
    await f.writeDurably(Buffer.from('cd'), 2);
    // The promise-free form, offered only by blocking files, writes in place too.
    expect(f.writeDurablySync).toBeTypeOf('function');
    f.writeDurablySync!(Buffer.from('e'), 4);
    expect(() => f.writeDurablySync!(Buffer.from('xx'), SIZE - 1)).toThrow(
      expect.objectContaining({ code: 'STORAGE_INVALID_RANGE' }),
    );
    await expect(f.writeDurably(Buffer.from('xx'), SIZE - 1)).rejects.toMatchObject({
      code: 'STORAGE_INVALID_RANGE',
    });
    await f.close();
    await expect(f.writeDurably(Buffer.from('x'), 0)).rejects.toMatchObject({ code: 'STORAGE_IO' });
    expect(() => f.writeDurablySync!(Buffer.from('x'), 0)).toThrow(
      expect.objectContaining({ code: 'STORAGE_IO' }),
    );
    const bytes = readFileSync(join(root, key));
    expect(bytes.length).toBe(SIZE);
    expect(bytes.subarray(0, 6).toString('latin1')).toBe('abcde\0');

    const threadPool = await storage.openFixedSizeFile!('blocking/other', SIZE);
    expect(threadPool.writeDurablySync).toBeUndefined();
    await threadPool.close();
  });

  it('creates a zero-filled file of the full size with its initial bytes, written in place', async () => {
    const key = 'a/b/seg.partial.padded';
    const f = await storage.openFixedSizeFile!(key, SIZE, { initial: Buffer.from('hello') });
    expect(f.existed).toBe(false);
    expect((await storage.head(key))?.size).toBe(SIZE);
    await f.writeDurably(Buffer.from('world'), 5);
    await f.writeDurably(Buffer.from('!'), SIZE - 1);
    await expect(f.writeDurably(Buffer.from('xx'), SIZE - 1)).rejects.toMatchObject({
      code: 'STORAGE_INVALID_RANGE',
    });
    await f.close();
    const bytes = readFileSync(join(root, 'a/b/seg.partial.padded'));
    expect(bytes.length).toBe(SIZE);
    expect(bytes.subarray(0, 10).toString()).toBe('helloworld');
    expect(bytes.subarray(10, SIZE - 1).every((b) => b === 0)).toBe(true);
    expect(bytes[SIZE - 1]).toBe('!'.charCodeAt(0));
    // No temporary file is left or listed.
    expect(readdirSync(join(root, 'a/b'))).toEqual(['seg.partial.padded']);
    const listed = [];
    for await (const o of storage.list('a/')) listed.push(o.key);
    expect(listed).toEqual([key]);

    // Reopening finds it as it is (initial ignored); another size is a conflict.
    const g = await storage.openFixedSizeFile!(key, SIZE, { initial: Buffer.from('XXXXX') });
    expect(g.existed).toBe(true);
    await g.close();
    expect(readFileSync(join(root, 'a/b/seg.partial.padded')).subarray(0, 5).toString()).toBe('hello');
    const err = await storage.openFixedSizeFile!(key, SIZE * 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe('STORAGE_CONFLICT');
  });

  it('publishes create-only: an existing final key is STORAGE_CONFLICT and the file stays', async () => {
    const f = await storage.openFixedSizeFile!('w/one.padded', SIZE, { initial: Buffer.from([1, 2, 3]) });
    await f.publish('w/one');
    expect(await storage.head('w/one.padded')).toBeUndefined();
    expect(readFileSync(join(root, 'w/one')).subarray(0, 4)).toEqual(Buffer.from([1, 2, 3, 0]));

    await storage.put('w/two', Buffer.from('taken'));
    const g = await storage.openFixedSizeFile!('w/two.padded', SIZE);
    const err = await g.publish('w/two').catch((e: unknown) => e);
    expect((err as StorageError).code).toBe('STORAGE_CONFLICT');
    expect(readFileSync(join(root, 'w/two')).toString()).toBe('taken');
    expect((await storage.head('w/two.padded'))?.size).toBe(SIZE);
    // The handle is closed after a publish, whatever its outcome.
    await expect(g.writeDurably(Buffer.from('x'), 0)).rejects.toMatchObject({ code: 'STORAGE_IO' });
  });

  it('is not offered by the S3 driver', () => {
    const s3 = createS3Storage({
      bucket: 'b',
      endpoint: 'http://127.0.0.1:1',
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    } as Parameters<typeof createS3Storage>[0]);
    expect(s3.openFixedSizeFile).toBeUndefined();
  });
});
