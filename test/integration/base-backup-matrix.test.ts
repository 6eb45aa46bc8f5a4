/**
 * The diagonal of the base-backup matrix on the embedded servers (one concern: back up while writes
 * continue, restore into an empty directory, start it with the same major, compare per-table
 * checksums). Every major 14-18 appears once in this file or in base-backup-pg15.test.ts:
 *   14 → fs, legacy protocol, client-side gzip, WAL fetched (base.tar)
 *   16 → fs, server-side gzip, WAL streamed, through the CLI (pgark backup / pgark restore)
 *   17 → s3, no compression, WAL streamed
 *   18 → fs, no compression, WAL streamed, a few hundred MB
 * Data sets stay small (30-40 MB) except PG18's, to keep the suite well under its CI budget on 2 cores.
 */
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import { startCluster, type Major, type TestCluster } from '../harness/postgres';
import { createTestBucket, type TestBucket } from '../harness/s3';
import {
  backupRestoreAndCompare,
  prepareSource,
  removeScratch,
  scratchDir,
  type Prepared,
} from './base-backup-helpers';

const run = promisify(execFile);
const CLI = resolve(import.meta.dirname, '../../src/cli/main.ts');
const TSX = resolve(import.meta.dirname, '../../node_modules/.bin/tsx');

function withCluster(
  major: Major,
  sizeMb: number,
  body: (ctx: () => { cluster: TestCluster; prepared: Prepared }) => void,
): void {
  describe(`PG${major}`, () => {
    let cluster: TestCluster;
    let prepared: Prepared;
    beforeAll(async () => {
      cluster = await startCluster({ major });
      prepared = await prepareSource(cluster, sizeMb);
    });
    afterAll(async () => cluster?.destroy());
    body(() => ({ cluster, prepared }));
  });
}

describe('base backup round trip', () => {
  const scratches: string[] = [];
  afterAll(() => scratches.forEach(removeScratch));

  withCluster(14, 40, (ctx) => {
    it('fs, legacy protocol, client gzip, wal fetch', async () => {
      const repo = scratchDir('bb-repo');
      scratches.push(repo);
      const storage = createFsStorage({ root: join(repo, 'r') });
      const r = await backupRestoreAndCompare(ctx().cluster, ctx().prepared, storage, {
        compression: { method: 'gzip', location: 'client', level: 1 },
        wal: 'fetch',
      });
      scratches.push(r.scratch);
      expect(r.backup.entry.objects.map((o) => o.name).sort()).toEqual(
        expect.arrayContaining(['backup_manifest', 'base.tar.gz']),
      );
      expect(r.backup.entry.objects.filter((o) => o.kind === 'archive')).toHaveLength(2);
    });
  });

  withCluster(16, 30, (ctx) => {
    it('fs, server gzip, wal stream, through the CLI', async () => {
      const { cluster, prepared } = ctx();
      const repo = scratchDir('bb-repo');
      scratches.push(repo);
      const env = { ...process.env, PGPASSWORD: cluster.replicationUser.password };
      const common = ['--repo', join(repo, 'r'), '--json'];
      const conn = [
        '-d',
        `host=127.0.0.1 port=${cluster.port} user=${cluster.replicationUser.user} sslmode=disable`,
      ];
      // The CLI's backup runs inside the shared round trip through a custom runner: call the CLI, then hand back its result.
      const storage = createFsStorage({ root: join(repo, 'r') });
      const out = await run(
        TSX,
        [
          CLI,
          'backup',
          ...conn,
          ...common,
          '--fast',
          '--compress',
          'server-gzip:1',
          '-X',
          'stream',
          '-l',
          'cli test',
        ],
        { env },
      );
      expect(out.stdout).not.toContain(cluster.replicationUser.password);
      const json = JSON.parse(out.stdout) as {
        backupId: string;
        startLsn: string;
        endLsn: string;
        sizes: { storedBytes: number };
      };
      expect(json.backupId).toMatch(/^\d{8}T\d{6}Z-F$/);
      expect(json.sizes.storedBytes).toBeGreaterThan(0);
      // And the library round trip on the same cluster (data equality after restore).
      const r = await backupRestoreAndCompare(cluster, prepared, storage, {
        compression: { method: 'gzip', location: 'server' },
        wal: 'stream',
      });
      scratches.push(r.scratch);
      // CLI restore of the first backup into an empty directory.
      const target = join(scratchDir('bb-cli-restore'), 'data');
      scratches.push(resolve(target, '..'));
      const [{ oid }] = (await cluster.query<{ oid: string }>(
        `SELECT oid::text AS oid FROM pg_tablespace WHERE spcname = 'datagen_ts'`,
      )) as [{ oid: string }];
      const res = await run(TSX, [
        CLI,
        'restore',
        ...common,
        '-D',
        target,
        '--backup',
        json.backupId,
        '-T',
        `${oid}=${join(target, '..', 'ts')}`,
      ]);
      expect(JSON.parse(res.stdout)).toMatchObject({ backupId: json.backupId, endLsn: json.endLsn });
      // A second restore into the same (now full) directory fails with exit code 1 and a stable code.
      const again = await run(TSX, [CLI, 'restore', ...common, '-D', target]).then(
        () => undefined,
        (e: { code: number; stdout: string }) => e,
      );
      expect(again?.code).toBe(1);
      expect(JSON.parse(again!.stdout).error.code).toBe('RESTORE_TARGET_NOT_EMPTY');
    });
  });

  describe('s3', () => {
    let bucket: TestBucket;
    beforeAll(async () => {
      bucket = await createTestBucket();
    });
    afterAll(async () => bucket?.cleanup());
    withCluster(17, 30, (ctx) => {
      it('s3, wal stream', async () => {
        const storage = createS3Storage({ ...bucket.storageOptions, partSizeBytes: 5 * 1024 * 1024 });
        try {
          const r = await backupRestoreAndCompare(ctx().cluster, ctx().prepared, storage, { wal: 'stream' });
          scratches.push(r.scratch);
          expect(await bucket.openUploads()).toBe(0);
        } finally {
          await storage.close();
        }
      });
    });
  });

  withCluster(18, 250, (ctx) => {
    it('fs, wal stream, a few hundred MB', async () => {
      const repo = scratchDir('bb-repo');
      scratches.push(repo);
      const storage = createFsStorage({ root: join(repo, 'r') });
      const r = await backupRestoreAndCompare(ctx().cluster, ctx().prepared, storage, {
        wal: 'stream',
        manifestChecksums: 'SHA256',
      });
      scratches.push(r.scratch);
      expect(r.backup.entry.sizes.dataBytes).toBeGreaterThan(200 * 1024 * 1024);
    });
  });
});
