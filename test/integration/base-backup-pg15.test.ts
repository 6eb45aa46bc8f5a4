/**
 * Base backup on Debian's PostgreSQL 15 server (built with lz4 and zstd), the diagonal's S3 and
 * verification corner: a few hundred MB to S3 with server-side lz4 and WAL streamed into the backup,
 * restored IN PLACE (same tablespace path, after the source is stopped) so that Debian's
 * pg_verifybackup checks the restored directory as it would a pg_basebackup plain-format one; and a
 * small fs backup with server-side zstd. (Sizes are kept small elsewhere in the matrix; CI has 2 cores.)
 */
import { execFileSync } from 'node:child_process';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listBackups } from '../../src/index';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import { startCluster, type TestCluster } from '../harness/postgres';
import { createTestBucket, type TestBucket } from '../harness/s3';
import {
  backupRestoreAndCompare,
  prepareSource,
  removeScratch,
  scratchDir,
  type Prepared,
} from './base-backup-helpers';

const PG_VERIFYBACKUP = '/usr/lib/postgresql/15/bin/pg_verifybackup';

describe('base backup, debian PG15', () => {
  const scratches: string[] = [];
  afterAll(() => scratches.forEach(removeScratch));

  describe('fs, server-side zstd, small', () => {
    let cluster: TestCluster;
    let prepared: Prepared;
    beforeAll(async () => {
      cluster = await startCluster({ major: 15, flavor: 'debian' });
      prepared = await prepareSource(cluster, 30);
    });
    afterAll(async () => cluster?.destroy());

    it('backs up with server zstd (level 3, 2 workers) and restores', async () => {
      const repo = scratchDir('bb-repo');
      scratches.push(repo);
      const storage = createFsStorage({ root: join(repo, 'r') });
      const r = await backupRestoreAndCompare(cluster, prepared, storage, {
        compression: { method: 'zstd', location: 'server', level: 3, workers: 2 },
        wal: 'fetch',
      });
      scratches.push(r.scratch);
      expect(r.backup.entry.objects.map((o) => o.name)).toEqual(
        expect.arrayContaining(['base.tar.zst', 'backup_manifest']),
      );
    });
  });

  describe('s3, server-side lz4, WAL streamed, pg_verifybackup', () => {
    let cluster: TestCluster;
    let prepared: Prepared;
    let bucket: TestBucket;
    beforeAll(async () => {
      cluster = await startCluster({ major: 15, flavor: 'debian' });
      prepared = await prepareSource(cluster, 250);
      bucket = await createTestBucket();
    });
    afterAll(async () => {
      await cluster?.destroy();
      await bucket?.cleanup();
    });

    it('restores in place and pg_verifybackup accepts the directory', async () => {
      const storage = createS3Storage({ ...bucket.storageOptions, partSizeBytes: 8 * 1024 * 1024 });
      let verifyOutput = '';
      try {
        const r = await backupRestoreAndCompare(
          cluster,
          prepared,
          storage,
          { compression: { method: 'lz4', location: 'server' }, wal: 'stream' },
          {
            remapTablespace: false,
            // The source's tablespace directory must make room for the in-place restore.
            beforeRestore: async () => {
              await cluster.stop('fast');
              renameSync(prepared.tablespaceDir, `${prepared.tablespaceDir}.source`);
            },
            keepRestored: async (dir) => {
              verifyOutput = execFileSync(PG_VERIFYBACKUP, [dir], { encoding: 'utf8' });
            },
          },
        );
        scratches.push(r.scratch);
        expect(verifyOutput).toContain('backup successfully verified');
        expect(r.backup.entry.objects.some((o) => o.kind === 'wal')).toBe(true);
        expect((await listBackups({ storage })).map((b) => b.backupId)).toEqual([r.backup.backupId]);
        expect(await bucket.openUploads()).toBe(0);
      } finally {
        await storage.close();
      }
    });
  });
});
