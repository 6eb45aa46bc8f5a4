/**
 * Faults of the local-directory driver that only a real file system can produce: permission
 * denied, a read-only file system, a full disk. Each must give its StorageError code, leave
 * nothing visible under the key and no temporary file behind.
 *
 * Root bypasses file permissions, and this machine runs the tests as root. So that the checks mean
 * something:
 * - EACCES: the put runs in a child process as the unprivileged user `nobody` (runuser), on a
 *   directory owned by root with mode 0755;
 * - EPERM: an immutable directory (chattr +i), which root cannot write either;
 * - EROFS: a tmpfs mounted read-only;
 * - ENOSPC: an 8 MiB tmpfs receiving 16 MiB.
 * mount, chattr and runuser need root: when not root this file FAILS with a message saying so (no
 * silent skip). Run it as root (the CI container does).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors';
import { createFsStorage } from '../../src/storage/fs-storage';

const MiB = 1024 * 1024;
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function requireRoot(): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(
      'test/faults/fs-faults.test.ts needs root (mount -t tmpfs, chattr +i, runuser): run it as root; ' +
        'as another user these fault checks cannot be made meaningful and are not skipped silently',
    );
  }
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

async function rejection(p: Promise<unknown>): Promise<StorageError> {
  try {
    await p;
  } catch (e) {
    return e as StorageError;
  }
  throw new Error('expected a rejection');
}

describe('fs driver faults', () => {
  let base: string;
  const mounts: string[] = [];
  const immutable: string[] = [];

  beforeAll(() => {
    requireRoot();
    base = mkdtempSync(join(tmpdir(), 'pgark-fsfaults-'));
    chmodSync(base, 0o755);
  });

  afterAll(() => {
    for (const dir of immutable) spawnSync('chattr', ['-i', dir]);
    for (const dir of mounts) spawnSync('umount', [dir]);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  function mountTmpfs(name: string, opts: string): string {
    const dir = join(base, name);
    mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir]);
    mounts.push(dir);
    return dir;
  }

  it('full disk: 16 MiB into an 8 MiB tmpfs → STORAGE_NO_SPACE, nothing visible, no temp file', async () => {
    const root = mountTmpfs('full', 'size=8m,mode=0755');
    const storage = createFsStorage({ root });
    const freeBefore = statfsSync(root).bfree;
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= 16 * MiB) return this.push(null);
        sent += MiB;
        this.push(randomBytes(MiB));
      },
    });
    const err = await rejection(storage.put('stanzas/main/wal/00000001/000000010000000000000001', body));
    expect(err).toBeInstanceOf(StorageError);
    expect(err.code).toBe('STORAGE_NO_SPACE');
    expect(err.key).toBe('stanzas/main/wal/00000001/000000010000000000000001');
    expect(await storage.head('stanzas/main/wal/00000001/000000010000000000000001')).toBeUndefined();
    expect(filesUnder(root)).toEqual([]);
    // The space is given back (the temporary file was removed, not just hidden).
    expect(statfsSync(root).bfree).toBe(freeBefore);
    // And the disk still takes a small object afterwards.
    const ok = await storage.put('after/small', Buffer.from('fits'));
    expect(ok.size).toBe(4);
  });

  it('read-only file system → STORAGE_ACCESS_DENIED, no temp file', async () => {
    const root = mountTmpfs('ro', 'size=1m,ro');
    const storage = createFsStorage({ root });
    for (const key of ['top', 'a/b/c']) {
      const err = await rejection(storage.put(key, Buffer.from('x')));
      expect(err).toBeInstanceOf(StorageError);
      expect(err.code, key).toBe('STORAGE_ACCESS_DENIED');
      expect(err.key).toBe(key);
    }
    expect(filesUnder(root)).toEqual([]);
    // Reads of an absent key still say "not found", not "denied".
    expect((await rejection(storage.get('top'))).code).toBe('STORAGE_NOT_FOUND');
  });

  it('immutable directory (EPERM, denied even to root) → STORAGE_ACCESS_DENIED', async () => {
    const root = join(base, 'immutable');
    mkdirSync(root);
    const storage = createFsStorage({ root });
    await storage.put('present', Buffer.from('kept'));
    execFileSync('chattr', ['+i', root]);
    immutable.push(root);
    for (const key of ['new', 'sub/new']) {
      const err = await rejection(storage.put(key, Buffer.from('x')));
      expect(err.code, key).toBe('STORAGE_ACCESS_DENIED');
    }
    const del = await rejection(storage.delete(['present']));
    expect(del.code).toBe('STORAGE_ACCESS_DENIED');
    expect((await storage.head('present'))?.size).toBe(4);
    execFileSync('chattr', ['-i', root]);
    expect(filesUnder(root)).toEqual([join(root, 'present')]);
  });

  it('a writer killed mid-put (SIGKILL) leaves nothing under the key; the stray temp file is never listed', async () => {
    const root = join(base, 'crash');
    mkdirSync(root);
    const script = join(base, 'crash-writer.mts');
    // Writes 1 MiB chunks slowly and never ends: the parent kills it once bytes are on disk.
    writeFileSync(
      script,
      `import { Readable } from 'node:stream';
import { createFsStorage } from ${JSON.stringify(join(REPO_ROOT, 'src/storage/fs-storage.ts'))};
const storage = createFsStorage({ root: ${JSON.stringify(root)} });
let n = 0;
const body = new Readable({ read() { setTimeout(() => { n++; this.push(Buffer.alloc(1024 * 1024, n)); if (n === 4) process.stdout.write('written\\n'); }, 20); } });
await storage.put('wal/000000010000000000000001', body);
`,
    );
    // node itself (tsx as a loader, not the tsx wrapper process) so that the kill hits the writer.
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolveWritten, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('written')) resolveWritten();
      });
      child.once('exit', (code) => reject(new Error(`writer exited early with ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    const storage = createFsStorage({ root });
    expect(await storage.head('wal/000000010000000000000001')).toBeUndefined();
    const listed: string[] = [];
    for await (const o of storage.list('')) listed.push(o.key);
    expect(listed).toEqual([]);
    const onDisk = filesUnder(root);
    expect(onDisk.length).toBe(1);
    expect(onDisk[0]).toMatch(/\/wal\/\.000000010000000000000001\.tmp-[0-9a-f]{16}$/);
    // A new put of the same key is not disturbed by the stray temporary file.
    await storage.put('wal/000000010000000000000001', Buffer.from('whole'));
    expect((await storage.head('wal/000000010000000000000001'))?.size).toBe(5);
  });

  it('a key that is also a prefix of another key is refused on a directory (STORAGE_IO), nothing changed', async () => {
    const root = join(base, 'prefix-clash');
    mkdirSync(root);
    const storage = createFsStorage({ root });
    await storage.put('a/b', Buffer.from('1'));
    expect((await rejection(storage.put('a', Buffer.from('2')))).code).toBe('STORAGE_IO');
    expect((await rejection(storage.put('a/b/c', Buffer.from('3')))).code).toBe('STORAGE_IO');
    expect(filesUnder(root)).toEqual([join(root, 'a', 'b')]);
  });

  it('permission denied for an unprivileged user (EACCES) → STORAGE_ACCESS_DENIED', () => {
    // A directory owned by root, mode 0755: nobody can read it but not write it.
    const root = join(base, 'denied');
    mkdirSync(root, { mode: 0o755 });
    chmodSync(root, 0o755);
    writeFileSync(join(root, 'readable'), 'r');
    chmodSync(join(root, 'readable'), 0o644);
    const script = join(base, 'as-nobody.mts');
    writeFileSync(
      script,
      `import { createFsStorage } from ${JSON.stringify(join(REPO_ROOT, 'src/storage/fs-storage.ts'))};
const storage = createFsStorage({ root: ${JSON.stringify(root)} });
const out = {};
for (const [name, op] of [
  ['put', () => storage.put('new-key', Buffer.from('x'))],
  ['putDeep', () => storage.put('a/b/new-key', Buffer.from('x'))],
  ['delete', () => storage.delete(['readable'])],
  ['get', async () => { for await (const _ of await storage.get('readable')) {} }],
]) {
  try { await op(); out[name] = 'ok'; } catch (e) { out[name] = e.code ?? String(e); }
}
process.stdout.write(JSON.stringify(out));
`,
    );
    chmodSync(base, 0o755);
    chmodSync(script, 0o644);
    const r = spawnSync('runuser', ['-u', 'nobody', '--', join(REPO_ROOT, 'node_modules/.bin/tsx'), script], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp', TMPDIR: '/tmp' },
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({
      put: 'STORAGE_ACCESS_DENIED',
      putDeep: 'STORAGE_ACCESS_DENIED',
      delete: 'STORAGE_ACCESS_DENIED',
      get: 'ok',
    });
    expect(readdirSync(root).sort()).toEqual(['readable']);
  });
});
