/**
 * The repository on both storage drivers: the format object (created, checked, refused when
 * unknown), several stanzas in one repository, the system-identifier guard, catalog entries as the
 * only way a backup becomes visible, and the WAL listing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupArchiveKey,
  backupManifestKey,
  walHistoryKey,
  walPartialKey,
  walSegmentKey,
} from '../../src/archive/repo-layout';
import { openRepository, PGARK_VERSION } from '../../src/archive/repository';
import { ConfigError, IntegrityError, StorageError } from '../../src/errors';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import type { Storage } from '../../src/storage/storage';
import { createTestBucket } from '../harness/s3';

interface Driver {
  name: string;
  /** Whether concurrent conditional creates are atomic on this store (Swift's s3api: no; see storage-contract). */
  atomicIfAbsent: boolean;
  /** A fresh, empty storage and its cleanup. */
  create(): Promise<{ storage: Storage; cleanup(): Promise<void> }>;
}

const DRIVERS: Driver[] = [
  {
    name: 'fs',
    atomicIfAbsent: true,
    async create() {
      const root = await mkdtemp(join(tmpdir(), 'pgark-repo-'));
      const storage = createFsStorage({ root });
      return { storage, cleanup: () => rm(root, { recursive: true, force: true }) };
    },
  },
  {
    name: 's3',
    atomicIfAbsent: false,
    async create() {
      const bucket = await createTestBucket({ prefix: 'repo', name: 'pgark-repo' });
      const storage = createS3Storage(bucket.storageOptions);
      return {
        storage,
        async cleanup() {
          await storage.close();
          await bucket.cleanup();
        },
      };
    },
  },
];

const SYSID_A = '7312345678901234567';
const SYSID_B = '7399999999999999999';
const SEG = 16 * 1024 * 1024;

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe.each(DRIVERS)('repository on $name', (driver) => {
  let storage: Storage;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ storage, cleanup } = await driver.create());
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it('refuses to open an empty location without create', async () => {
    const err = await rejection(openRepository(storage));
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.code).toBe('INTEGRITY_REPOSITORY_FORMAT');
    expect(await storage.head('pgark.json')).toBeUndefined();
  });

  it('creates the format object once (concurrent creators agree) and checks it on open', async () => {
    const [a, b] = await Promise.all([
      openRepository(storage, { create: true }),
      openRepository(storage, { create: true }),
    ]);
    // On an atomic store both see the one object created; on Swift the later writer may win after
    // the first one read back its own (both objects are valid format 1 either way).
    if (driver.atomicIfAbsent) expect(a.format).toEqual(b.format);
    expect(a.format.format).toBe(1);
    expect(a.format.createdBy).toBe(`pgark ${PGARK_VERSION}`);
    const again = await openRepository(storage);
    expect([a.format, b.format]).toContainEqual(again.format);
    const stored = await again.getJson<Record<string, unknown>>('pgark.json');
    expect(stored).toEqual({
      format: 1,
      createdAt: again.format.createdAt,
      createdBy: `pgark ${PGARK_VERSION}`,
    });
  });

  it('refuses an unknown, newer or broken format object', async () => {
    const repo = await openRepository(storage);
    const original = await repo.getJson('pgark.json');
    try {
      for (const body of [
        JSON.stringify({ format: 2, createdAt: 'x', createdBy: 'pgark 9.0.0' }),
        JSON.stringify({ format: 0 }),
        JSON.stringify({ createdBy: 'someone' }),
        'not json at all',
      ]) {
        await storage.put('pgark.json', Buffer.from(body));
        for (const create of [false, true]) {
          const err = await rejection(openRepository(storage, { create }));
          expect(err, body).toBeInstanceOf(IntegrityError);
          expect(err.code, body).toBe('INTEGRITY_REPOSITORY_FORMAT');
        }
      }
    } finally {
      await repo.putJson('pgark.json', original);
    }
    await openRepository(storage);
  });

  it('holds two stanzas and keeps each cluster to its own', async () => {
    const repo = await openRepository(storage);
    const a = await repo.openStanza('alpha', {
      systemIdentifier: SYSID_A,
      pgMajor: 17,
      walSegmentSize: SEG,
      create: true,
    });
    const b = await repo.openStanza('beta', {
      systemIdentifier: SYSID_B,
      pgMajor: 15,
      walSegmentSize: SEG,
      create: true,
    });
    expect(a.info).toMatchObject({
      stanza: 'alpha',
      systemIdentifier: SYSID_A,
      pgMajor: 17,
      walSegmentSize: SEG,
    });
    expect(b.info.systemIdentifier).toBe(SYSID_B);
    expect(await repo.listStanzas()).toEqual(['alpha', 'beta']);

    // Re-opening: with the same identity, with none (readers), and create on an existing one.
    expect((await repo.openStanza('alpha', { systemIdentifier: SYSID_A })).info).toEqual(a.info);
    expect((await repo.openStanza('beta')).info).toEqual(b.info);
    expect(
      (
        await repo.openStanza('alpha', {
          systemIdentifier: SYSID_A,
          pgMajor: 17,
          walSegmentSize: SEG,
          create: true,
        })
      ).info,
    ).toEqual(a.info);

    // Another cluster may not use a stanza: not by open, not by create.
    for (const opts of [
      { systemIdentifier: SYSID_B },
      { systemIdentifier: SYSID_B, pgMajor: 17, walSegmentSize: SEG, create: true },
      { systemIdentifier: SYSID_A, pgMajor: 18 },
      { systemIdentifier: SYSID_A, walSegmentSize: 64 * 1024 * 1024 },
    ]) {
      const err = await rejection(repo.openStanza('alpha', opts));
      expect(err, JSON.stringify(opts)).toBeInstanceOf(IntegrityError);
      expect(err.code).toBe('INTEGRITY_SYSTEM_ID_MISMATCH');
    }
    expect((await repo.openStanza('alpha')).info.systemIdentifier).toBe(SYSID_A);
  });

  it('refuses absent stanzas, bad names and incomplete identities', async () => {
    const repo = await openRepository(storage);
    const absent = await rejection(repo.openStanza('gamma', { systemIdentifier: SYSID_A }));
    expect(absent).toBeInstanceOf(StorageError);
    expect(absent.code).toBe('STORAGE_NOT_FOUND');
    for (const name of ['', '../x', 'a/b', 'x'.repeat(65)]) {
      const err = await rejection(
        repo.openStanza(name, { create: true, systemIdentifier: SYSID_A, pgMajor: 17, walSegmentSize: SEG }),
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.code).toBe('CONFIG_INVALID_IDENTIFIER');
    }
    const noId = await rejection(
      repo.openStanza('gamma', { create: true, pgMajor: 17, walSegmentSize: SEG }),
    );
    expect(noId.code).toBe('CONFIG_INVALID_OPTION');
    expect(await repo.listStanzas()).toEqual(['alpha', 'beta']);
  });

  it('lists only backups with a catalog entry; catalog entries are create-only and checkable', async () => {
    const repo = await openRepository(storage);
    const stanza = await repo.openStanza('alpha', { systemIdentifier: SYSID_A });
    const done = '20261124T231500Z-F';
    const running = '20261125T010000Z-I';
    for (const id of [done, running]) {
      await storage.put(backupArchiveKey('alpha', id, 'base.tar'), Buffer.from('tar bytes'));
      await storage.put(backupManifestKey('alpha', id), Buffer.from('{}'));
    }
    expect(await stanza.listBackupIds()).toEqual([]);
    expect(await stanza.isBackupIdInUse(running)).toBe(true);
    expect(await stanza.isBackupIdInUse('20261126T000000Z-F')).toBe(false);

    const put = await stanza.writeCatalogEntry(done, { backupId: done, bytes: 9 });
    expect(await stanza.listBackupIds()).toEqual([done]);
    expect(await stanza.readCatalogEntry(done, { expectedSha256: put.sha256 })).toEqual({
      backupId: done,
      bytes: 9,
    });
    const wrong = await rejection(stanza.readCatalogEntry(done, { expectedSha256: '0'.repeat(64) }));
    expect(wrong.code).toBe('INTEGRITY_CHECKSUM_MISMATCH');
    const twice = await rejection(stanza.writeCatalogEntry(done, { backupId: done, bytes: 1 }));
    expect(twice.code).toBe('STORAGE_CONFLICT');
    expect(((await rejection(stanza.readCatalogEntry(running))) as StorageError).code).toBe(
      'STORAGE_NOT_FOUND',
    );

    // The other stanza sees none of it.
    const beta = await repo.openStanza('beta');
    expect(await beta.listBackupIds()).toEqual([]);
  });

  it('lists the WAL of a stanza, by timeline, with what each key is', async () => {
    const repo = await openRepository(storage);
    const stanza = await repo.openStanza('beta');
    const keys = [
      walSegmentKey('beta', '000000010000000000000001'),
      walSegmentKey('beta', '000000010000000000000002', 'zst'),
      walPartialKey('beta', '000000010000000000000003'),
      walSegmentKey('beta', '000000020000000000000003'),
      walHistoryKey('beta', 2),
    ];
    for (const k of keys) await storage.put(k, Buffer.from(k));
    // Foreign keys and another stanza's WAL are not listed.
    await storage.put('stanzas/beta/wal/00000001/README', Buffer.from('x'));
    await storage.put(walSegmentKey('alpha', '000000010000000000000001'), Buffer.from('x'));

    const all = [];
    for await (const o of stanza.listWal()) all.push([o.parsed.kind, o.key]);
    expect(all).toEqual([
      ['wal-segment', keys[0]],
      ['wal-segment', keys[1]],
      ['wal-partial', keys[2]],
      ['wal-segment', keys[3]],
      ['wal-history', keys[4]],
    ]);
    const tl2 = [];
    for await (const o of stanza.listWal({ timeline: 2 })) tl2.push(o.parsed);
    expect(tl2).toEqual([
      { kind: 'wal-segment', stanza: 'beta', timeline: 2, walName: '000000020000000000000003' },
    ]);
  });
});
