/**
 * archive-push / archive-fetch without a server: exit-code mapping, file-name handling, the
 * duplicate rule, the prefetch spool (served, cleaned, never trusted blindly) on the fs driver over
 * a temp directory. Segments are built here with valid page headers (1 MiB segments, PG16 magic);
 * the real-server path is test/integration/archive-command.test.ts.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  archiveFetch,
  archivePush,
  ConfigError,
  IntegrityError,
  walFileName,
  type ArchiveFetchResult,
} from '../../src/index';
import { walPartialKey, walSegmentKey } from '../../src/archive/repo-layout';
import { createFsStorage } from '../../src/storage/fs-storage';
import type { Storage } from '../../src/storage/storage';
import { fetchExitCode, FETCH_EXIT } from '../../src/cli/commands/archive-fetch';

const SEG = 1024 * 1024;
const PAGE = 8192;
const SYSID = 7311111111111111111n;

/** A WAL segment whose every page has a valid header (PG16 magic), body bytes from `fill`. */
function makeSegment(timeline: number, segno: bigint, opts: { sysid?: bigint; fill?: number } = {}): Buffer {
  const b = Buffer.alloc(SEG, opts.fill ?? 0);
  const start = segno * BigInt(SEG);
  for (let i = 0; i < SEG / PAGE; i++) {
    const o = i * PAGE;
    b.fill(0, o, o + 40);
    b.writeUInt16LE(0xd113, o);
    b.writeUInt16LE(i === 0 ? 0x0002 : 0, o + 2);
    b.writeUInt32LE(timeline, o + 4);
    b.writeBigUInt64LE(start + BigInt(o), o + 8);
    if (i === 0) {
      b.writeBigUInt64LE(opts.sysid ?? SYSID, o + 24);
      b.writeUInt32LE(SEG, o + 32);
      b.writeUInt32LE(PAGE, o + 36);
    }
  }
  return b;
}

let dir: string;
let storage: Storage;
let pgWal: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgark-archcmd-'));
  storage = createFsStorage({ root: join(dir, 'repo') });
  pgWal = join(dir, 'pg_wal');
  mkdirSync(pgWal);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function put(name: string, bytes: Buffer): string {
  const p = join(pgWal, name);
  writeFileSync(p, bytes);
  return p;
}

async function pushSegments(timeline: number, from: bigint, count: number): Promise<string[]> {
  const names: string[] = [];
  for (let s = from; s < from + BigInt(count); s++) {
    const name = walFileName(timeline, s, SEG);
    await archivePush({
      storage,
      stanza: 'main',
      walPath: put(name, makeSegment(timeline, s, { fill: Number(s % 200n) + 1 })),
    });
    names.push(name);
  }
  return names;
}

describe('restore_command exit codes', () => {
  const res = (found: boolean): { result: ArchiveFetchResult } => ({
    result: { found, walName: 'x', kind: 'segment', fromSpool: false, prefetched: 0 },
  });
  it('found 0, not found 1, error 2, error with --fatal-errors above 125', () => {
    expect(fetchExitCode(res(true))).toBe(0);
    expect(fetchExitCode(res(false))).toBe(1);
    expect(fetchExitCode({ error: new IntegrityError('INTEGRITY_WAL_INVALID', 'x') })).toBe(2);
    expect(fetchExitCode({ error: new IntegrityError('INTEGRITY_WAL_INVALID', 'x') }, true)).toBe(255);
    // PostgreSQL: a status above 125 is treated like a signal (FATAL); 1 and 2 must stay below.
    expect(FETCH_EXIT.notFound).toBeLessThanOrEqual(125);
    expect(FETCH_EXIT.error).toBeLessThanOrEqual(125);
    expect(FETCH_EXIT.fatalError).toBeGreaterThan(125);
  });
});

describe('archivePush', () => {
  it('creates the stanza from the first segment and is idempotent for the same bytes', async () => {
    const name = walFileName(1, 3n, SEG);
    const p = put(name, makeSegment(1, 3n));
    const r1 = await archivePush({ storage, stanza: 'main', walPath: p });
    expect(r1).toMatchObject({ kind: 'segment', alreadyArchived: false, size: SEG });
    const r2 = await archivePush({ storage, stanza: 'main', walPath: p });
    expect(r2).toMatchObject({ alreadyArchived: true, sha256: r1.sha256 });
  });

  it('refuses different bytes under an archived name', async () => {
    const name = walFileName(1, 3n, SEG);
    await archivePush({ storage, stanza: 'main', walPath: put(name, makeSegment(1, 3n, { fill: 1 })) });
    const e = await archivePush({
      storage,
      stanza: 'main',
      walPath: put(name, makeSegment(1, 3n, { fill: 2 })),
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as IntegrityError).code).toBe('INTEGRITY_WAL_CONFLICT');
  });

  it('refuses a segment of another cluster, a short file, a wrong address, a bad name', async () => {
    await pushSegments(1, 1n, 1);
    const other = walFileName(1, 2n, SEG);
    const e1 = await archivePush({
      storage,
      stanza: 'main',
      walPath: put(other, makeSegment(1, 2n, { sysid: 42n })),
    }).catch((x: unknown) => x);
    expect((e1 as IntegrityError).code).toBe('INTEGRITY_SYSTEM_ID_MISMATCH');
    const e2 = await archivePush({
      storage,
      stanza: 'main',
      walPath: put(other, makeSegment(1, 2n).subarray(0, SEG / 2)),
    }).catch((x: unknown) => x);
    expect((e2 as IntegrityError).code).toBe('INTEGRITY_WAL_INVALID');
    // the bytes of segment 5 under the name of segment 2
    const e3 = await archivePush({ storage, stanza: 'main', walPath: put(other, makeSegment(1, 5n)) }).catch(
      (x: unknown) => x,
    );
    expect((e3 as IntegrityError).code).toBe('INTEGRITY_WAL_INVALID');
    expect(await storage.head(`stanzas/main/wal/00000001/${other}`)).toBeUndefined();
    const e4 = await archivePush({
      storage,
      stanza: 'main',
      walPath: put('RECOVERYXLOG', makeSegment(1, 2n)),
    }).catch((x: unknown) => x);
    expect(e4).toBeInstanceOf(ConfigError);
    expect((e4 as ConfigError).code).toBe('CONFIG_INVALID_WAL_NAME');
  });

  it('archives .history and .backup files; a history file may come first (identity from pg_wal)', async () => {
    put(walFileName(2, 7n, SEG), makeSegment(2, 7n));
    const h = await archivePush({
      storage,
      stanza: 'main',
      walPath: put('00000002.history', Buffer.from('1\t0/7000000\tno recovery target specified\n')),
    });
    expect(h).toMatchObject({ kind: 'history', key: 'stanzas/main/wal/history/00000002.history' });
    const bname = `${walFileName(2, 7n, SEG)}.00000028.backup`;
    const b = await archivePush({
      storage,
      stanza: 'main',
      walPath: put(bname, Buffer.from('START WAL LOCATION: 0/7000028\n')),
    });
    expect(b.key).toBe(`stanzas/main/wal/00000002/${bname}`);
    const e = await archivePush({
      storage,
      stanza: 'main',
      walPath: put('00000003.history', Buffer.from('garbage')),
    }).catch((x: unknown) => x);
    expect((e as IntegrityError).code).toBe('INTEGRITY_WAL_INVALID');
  });
});

describe('archiveFetch', () => {
  it('not found is a result, not an error; a .partial is never served under the full name', async () => {
    await pushSegments(1, 1n, 1);
    const name = walFileName(1, 2n, SEG);
    await storage.put(walPartialKey('main', name), makeSegment(1, 2n));
    const r = await archiveFetch({
      storage,
      stanza: 'main',
      walName: name,
      destPath: join(pgWal, 'RECOVERYXLOG'),
    });
    expect(r.found).toBe(false);
    expect(existsSync(join(pgWal, 'RECOVERYXLOG'))).toBe(false);
    const h = await archiveFetch({
      storage,
      stanza: 'main',
      walName: '00000005.history',
      destPath: join(pgWal, 'RECOVERYHISTORY'),
    });
    expect(h.found).toBe(false);
    const p = await archiveFetch({
      storage,
      stanza: 'main',
      walName: `${name}.partial`,
      destPath: join(pgWal, 'P'),
    });
    expect(p.found).toBe(true);
    // The .partial PostgreSQL archives at promotion goes to the partial key, not the segment's.
    const name3 = walFileName(1, 3n, SEG);
    const pushed = await archivePush({
      storage,
      stanza: 'main',
      walPath: put(`${name3}.partial`, makeSegment(1, 3n)),
    });
    expect(pushed).toMatchObject({ kind: 'partial', key: walPartialKey('main', name3) });
    expect(
      (await archiveFetch({ storage, stanza: 'main', walName: name3, destPath: join(pgWal, 'Q') })).found,
    ).toBe(false);
  });

  it('a missing stanza or repository is an error, not "not found"', async () => {
    const e = await archiveFetch({
      storage,
      stanza: 'main',
      walName: walFileName(1, 1n, SEG),
      destPath: join(pgWal, 'X'),
    }).catch((x: unknown) => x);
    expect((e as IntegrityError).code).toBe('INTEGRITY_REPOSITORY_FORMAT');
    await pushSegments(1, 1n, 1);
    const e2 = await archiveFetch({
      storage,
      stanza: 'other',
      walName: walFileName(1, 1n, SEG),
      destPath: join(pgWal, 'X'),
    }).catch((x: unknown) => x);
    expect((e2 as { code: string }).code).toBe('STORAGE_NOT_FOUND');
  });

  it('prefetches in batches, serves from the spool, drops stale and damaged spool files', async () => {
    const names = await pushSegments(1, 1n, 10);
    const dest = join(pgWal, 'RECOVERYXLOG');
    const spool = join(pgWal, '.pgark-spool');
    const r1 = await archiveFetch({
      storage,
      stanza: 'main',
      walName: names[0]!,
      destPath: dest,
      prefetch: 4,
    });
    expect(r1).toMatchObject({ found: true, fromSpool: false, prefetched: 4 });
    expect(readFileSync(dest).equals(makeSegment(1, 1n, { fill: 2 }))).toBe(true);
    // Second call: from the spool; 3 of 4 still spooled, no refill yet.
    const r2 = await archiveFetch({
      storage,
      stanza: 'main',
      walName: names[1]!,
      destPath: dest,
      prefetch: 4,
    });
    expect(r2).toMatchObject({ found: true, fromSpool: true, prefetched: 0 });
    expect(readFileSync(dest).equals(makeSegment(1, 2n, { fill: 3 }))).toBe(true);
    // A damaged spooled file is not served: it is fetched again from the repository.
    const spooled = join(spool, names[2]!);
    const bytes = readFileSync(spooled);
    bytes[PAGE * 2 + 500] = bytes[PAGE * 2 + 500]! ^ 0xff;
    writeFileSync(spooled, bytes);
    const r3 = await archiveFetch({
      storage,
      stanza: 'main',
      walName: names[2]!,
      destPath: dest,
      prefetch: 4,
    });
    expect(r3).toMatchObject({ found: true, fromSpool: false });
    expect(readFileSync(dest).equals(makeSegment(1, 3n, { fill: 4 }))).toBe(true);
    // Another timeline's request clears the spool of timeline 1 files.
    const r4 = await archiveFetch({
      storage,
      stanza: 'main',
      walName: walFileName(2, 4n, SEG),
      destPath: dest,
      prefetch: 4,
    });
    expect(r4.found).toBe(false);
    expect(readdirSync(spool).filter((n) => n !== 'spool.json')).toEqual([]);
    expect(readdirSync(pgWal).filter((n) => n.includes('tmp'))).toEqual([]);
  });

  it('reads a segment another archiver stored compressed; a push of the same bytes is a duplicate', async () => {
    await pushSegments(1, 1n, 1); // creates the stanza
    const name = walFileName(1, 2n, SEG);
    const seg = makeSegment(1, 2n, { fill: 9 });
    await storage.put(walSegmentKey('main', name, 'gz'), gzipSync(seg));
    const r = await archiveFetch({
      storage,
      stanza: 'main',
      walName: name,
      destPath: join(pgWal, 'RECOVERYXLOG'),
      prefetch: 0,
    });
    expect(r).toMatchObject({ found: true, key: walSegmentKey('main', name, 'gz') });
    expect(readFileSync(join(pgWal, 'RECOVERYXLOG')).equals(seg)).toBe(true);
    const again = await archivePush({ storage, stanza: 'main', walPath: put(name, seg) });
    expect(again).toMatchObject({ alreadyArchived: true, key: walSegmentKey('main', name, 'gz') });
    const e = await archivePush({
      storage,
      stanza: 'main',
      walPath: put(name, makeSegment(1, 2n, { fill: 8 })),
    }).catch((x: unknown) => x);
    expect((e as IntegrityError).code).toBe('INTEGRITY_WAL_CONFLICT');
  });

  it('refuses a damaged archived segment and leaves no file behind', async () => {
    const names = await pushSegments(1, 1n, 1);
    const key = `stanzas/main/wal/00000001/${names[0]}`;
    const path = join(dir, 'repo', ...key.split('/'));
    const b = readFileSync(path);
    writeFileSync(path, b.subarray(0, SEG - PAGE));
    const e = await archiveFetch({
      storage,
      stanza: 'main',
      walName: names[0]!,
      destPath: join(pgWal, 'X'),
      prefetch: 0,
    }).catch((x: unknown) => x);
    expect((e as IntegrityError).code).toBe('INTEGRITY_WAL_INVALID');
    expect(readdirSync(pgWal).filter((n) => n !== names[0])).toEqual([]);
  });
});
