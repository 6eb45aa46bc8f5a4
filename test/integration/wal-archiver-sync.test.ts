/**
 * Synchronous mode: the archiver is named in synchronous_standby_names. With the archiver
 * SIGKILLed mid-load, every commit acknowledged to the client lies below the repository's durable
 * end (the LSN recorded inside each transaction precedes its commit record), the durable bytes are
 * the server's, and a restarted archiver releases the commit that was waiting.
 * Restoring from the repository only and counting rows: wal-archiver-sync-restore.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFsStorage } from '../../src/storage/fs-storage';
import { formatLsn, parseLsn } from '../../src/lsn';
import { startCluster, type TestCluster } from '../harness/postgres';
import { checkArchive } from '../harness/wal-archive-check';
import {
  makeSynchronousStandby,
  maxLsn,
  spawnArchiver,
  startAckedCommits,
} from '../harness/archiver-process';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('wal archiver synchronous mode (PG17, fs)', () => {
  let cluster: TestCluster;
  let dir: string;
  beforeAll(async () => {
    // synchronous_standby_names is set after start-up: the harness's own set-up commits would wait for it.
    cluster = await startCluster({ major: 17, settings: { wal_keep_size: '1GB' } });
    dir = mkdtempSync(join(tmpdir(), 'pgark-walsync-'));
  });
  afterAll(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await cluster?.destroy();
  });

  it('never acknowledges a commit that is not durable in the repository', async () => {
    const storage = createFsStorage({ root: dir });
    const config = {
      connection: { ...cluster.connectionConfig({ user: cluster.replicationUser }), ssl: 'disable' },
      slot: 'pgark_sync',
      fsRoot: dir,
      synchronous: true,
    };
    await cluster.query('CREATE TABLE sync_t (id bigserial PRIMARY KEY, v text)');
    let p = spawnArchiver(config);
    await makeSynchronousStandby(cluster, 'pgark_sync');

    const load = await startAckedCommits(cluster, 'sync_t');
    const { acked } = load;
    await sleep(1500 + Math.floor(Math.random() * 1500));
    p.kill('SIGKILL');
    expect(await p.exited).toBe('SIGKILL');
    const ackedAtKill = acked.length;
    await sleep(500);
    // No commit can be acknowledged while no synchronous standby is there.
    expect(acked.length).toBeLessThanOrEqual(ackedAtKill + 1);
    const check = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
    expect(ackedAtKill).toBeGreaterThan(10);
    const maxAcked = maxLsn(acked);
    expect(
      maxAcked,
      `newest acked ${formatLsn(maxAcked)} vs durable ${formatLsn(check.durableEnd)}`,
    ).toBeLessThan(check.durableEnd);
    expect(check.mismatches).toEqual([]);
    expect(check.gaps).toEqual([]);

    // A restarted archiver releases the waiting commit and the load goes on.
    p = spawnArchiver(config);
    const before = acked.length;
    for (let i = 0; acked.length <= before + 5; i++) {
      if (i > 300) throw new Error('commits were not released after the restart');
      await sleep(100);
    }
    await load.stop();
    await load.client.end();
    const [{ lsn }] = (await cluster.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    )) as [{ lsn: string }];
    const target = parseLsn(lsn);
    for (let i = 0; p.flushedLsn() < target; i++) {
      if (i > 300) throw new Error(`archiver did not reach ${formatLsn(target)}`);
      await sleep(100);
    }
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    const final = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
    expect(final.mismatches).toEqual([]);
    expect(final.gaps).toEqual([]);
    const last = maxLsn(acked);
    expect(last).toBeLessThan(final.durableEnd);
    await storage.close();
  });
});
