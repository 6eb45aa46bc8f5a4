/**
 * Base backup failures leave no visible backup: an abort mid-stream, a killed `pgark backup`
 * process, an S3 failure in the middle of an archive's multipart upload (the upload is aborted),
 * and a page checksum failure that the server reports only after all the data (SQLSTATE XX001).
 * Small data sets (PG18 for checksums: initdb enables them by default there).
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortError,
  ReplicationError,
  StorageError,
  listBackups,
  runBaseBackup,
  type PgarkEvent,
} from '../../src/index';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import { startCluster, type TestCluster } from '../harness/postgres';
import { createTestBucket, type TestBucket } from '../harness/s3';
import { startFaultProxy, isUploadPartNumber, type FaultProxy } from '../harness/fault-proxy';
import { generateDataset } from '../harness/datagen';
import { connectionOf, removeScratch, scratchDir } from '../integration/base-backup-helpers';

const CLI = resolve(import.meta.dirname, '../../src/cli/main.ts');
const TSX = resolve(import.meta.dirname, '../../node_modules/.bin/tsx');

async function allKeys(
  storage: { list(p: string): AsyncIterable<{ key: string }> },
  prefix: string,
): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix)) out.push(o.key);
  return out;
}

describe('base backup faults', () => {
  let cluster: TestCluster;
  const scratches: string[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ major: 18 });
    await generateDataset(cluster, { sizeMb: 40 });
  });
  afterAll(async () => {
    await cluster?.destroy();
    scratches.forEach(removeScratch);
  });

  it('an abort mid-stream leaves nothing under the backup prefix and no catalog entry', async () => {
    const repo = scratchDir('bb-fault');
    scratches.push(repo);
    const storage = createFsStorage({ root: join(repo, 'r') });
    const ac = new AbortController();
    let bytes = 0;
    const err = await runBaseBackup({
      connection: connectionOf(cluster),
      storage,
      checkpoint: 'fast',
      maxRateKbps: 8 * 1024, // slow enough to abort in the middle
      signal: ac.signal,
      onEvent: (e: PgarkEvent) => {
        if (e.type === 'backup.progress') {
          bytes = e.bytesDone;
          if (bytes > 4 * 1024 * 1024) ac.abort();
        }
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AbortError);
    expect(bytes).toBeGreaterThan(0);
    expect(await listBackups({ storage })).toEqual([]);
    expect(await allKeys(storage, 'stanzas/main/backups/')).toEqual([]);
  });

  it('a killed pgark backup leaves no visible backup', async () => {
    const repo = scratchDir('bb-kill');
    scratches.push(repo);
    const root = join(repo, 'r');
    const child = spawn(
      TSX,
      [
        CLI,
        'backup',
        '--repo',
        root,
        '--fast',
        '-r',
        '4M',
        '-d',
        `host=127.0.0.1 port=${cluster.port} user=${cluster.replicationUser.user} sslmode=disable`,
      ],
      {
        env: { ...process.env, PGPASSWORD: cluster.replicationUser.password },
        stdio: 'ignore',
      },
    );
    const storage = createFsStorage({ root });
    // Kill mid-stream: once the server reports some of the data files sent (4 MB/s of ~40 MB, so the
    // backup is seconds away from its end). Waiting for a visible key instead raced the completion.
    let streamed = 0;
    for (let i = 0; i < 600 && streamed < 2 * 1024 * 1024; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const rows = await cluster.query<{ phase: string; backup_streamed: string }>(
        'SELECT phase, backup_streamed FROM pg_stat_progress_basebackup',
      );
      if (rows[0]?.phase === 'streaming database files') streamed = Number(rows[0].backup_streamed);
    }
    expect(streamed).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    child.kill('SIGKILL');
    const exit = await new Promise<NodeJS.Signals | null>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r(child.signalCode);
      else child.once('exit', (_c, sig) => r(sig));
    });
    expect(exit).toBe('SIGKILL');
    expect(await listBackups({ storage })).toEqual([]);
  });

  describe('s3', () => {
    let bucket: TestBucket;
    let proxy: FaultProxy;
    beforeAll(async () => {
      const real = await createTestBucket();
      await real.cleanup();
      proxy = await startFaultProxy({ target: (await import('vitest')).inject('s3').endpoint });
      bucket = await createTestBucket({ endpoint: proxy.endpoint });
    });
    afterAll(async () => {
      await bucket?.cleanup();
      await proxy?.stop();
    });

    it('a storage failure mid-archive aborts the multipart upload and fails the backup', async () => {
      const storage = createS3Storage({
        ...bucket.storageOptions,
        partSizeBytes: 5 * 1024 * 1024,
        maxAttempts: 1,
      });
      try {
        proxy.failNext({ match: isUploadPartNumber(3), count: 10 });
        const err = await runBaseBackup({
          connection: connectionOf(cluster),
          storage,
          checkpoint: 'fast',
          wal: 'fetch',
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StorageError);
        expect(proxy.injectedCount()).toBeGreaterThan(0);
        expect(await bucket.openUploads()).toBe(0);
        expect(await listBackups({ storage })).toEqual([]);
        expect((await bucket.listKeys()).filter((k) => k.includes('/backups/'))).toEqual([]);
      } finally {
        await storage.close();
      }
    });
  });

  it('a page checksum failure reported after the data fails the backup (XX001), nothing visible', async () => {
    await cluster.query(
      'CREATE TABLE corrupt_me AS SELECT g AS id, repeat(md5(g::text), 10) AS t FROM generate_series(1, 20000) g',
    );
    await cluster.query('CHECKPOINT');
    const [{ path }] = (await cluster.query<{ path: string }>(
      `SELECT pg_relation_filepath('corrupt_me') AS path`,
    )) as [{ path: string }];
    // Scribble into the middle of block 2 (not its header): the page's checksum no longer matches.
    const file = join(cluster.dataDir, path);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(64, 0x5a), 0, 64, 2 * 8192 + 4000);
    closeSync(fd);
    expect(readFileSync(file).length).toBeGreaterThan(3 * 8192);
    const repo = scratchDir('bb-xx001');
    scratches.push(repo);
    const storage = createFsStorage({ root: join(repo, 'r') });
    const err = await runBaseBackup({
      connection: connectionOf(cluster),
      storage,
      checkpoint: 'fast',
      wal: 'none',
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ReplicationError);
    expect((err as ReplicationError).code).toBe('REPLICATION_BACKUP_FAILED');
    expect((err as ReplicationError).sqlstate).toBe('XX001');
    expect(await listBackups({ storage })).toEqual([]);
    expect(await allKeys(storage, 'stanzas/main/backups/')).toEqual([]);
    await cluster.query('DROP TABLE corrupt_me');
  });
});
