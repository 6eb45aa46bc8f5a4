/**
 * PG15 (Debian's server, built with lz4 and zstd) into the fs repository... (temporary smoke form)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { listBackups } from '../../src/index';
import { createFsStorage } from '../../src/storage/fs-storage';
import { startCluster, type TestCluster } from '../harness/postgres';
import { backupRestoreAndCompare, prepareSource, removeScratch, scratchDir, type Prepared } from './base-backup-helpers';

describe('base backup PG15 smoke', () => {
  let cluster: TestCluster;
  let prepared: Prepared;
  const scratches: string[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ major: 15 });
    prepared = await prepareSource(cluster, 30);
  });
  afterAll(async () => {
    await cluster?.destroy();
    scratches.forEach(removeScratch);
  });

  for (const wal of ['fetch', 'stream'] as const) {
    it(`fs, wal ${wal}`, async () => {
      const repo = scratchDir('bb-repo');
      scratches.push(repo);
      const storage = createFsStorage({ root: join(repo, 'r') });
      const r = await backupRestoreAndCompare(cluster, prepared, storage, { wal });
      scratches.push(r.scratch);
      const list = await listBackups({ storage });
      expect(list.map((b) => b.backupId)).toContain(r.backup.backupId);
    });
  }
});
