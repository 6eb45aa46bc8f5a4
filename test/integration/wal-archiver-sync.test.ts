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
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFsStorage } from '../../src/storage/fs-storage';
import { formatLsn, parseLsn, type Lsn } from '../../src/lsn';
import { startCluster, type TestCluster } from '../harness/postgres';
import { checkArchive } from '../harness/wal-archive-check';
import { makeSynchronousStandby, spawnArchiver } from '../harness/archiver-process';

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

    const client = new pg.Client(cluster.connectionConfig());
    client.on('error', () => undefined);
    await client.connect();
    const acked: Lsn[] = [];
    let stopping = false;
    const loop = (async () => {
      while (!stopping) {
        await client.query('BEGIN');
        await client.query("INSERT INTO sync_t (v) SELECT repeat('x', 200) FROM generate_series(1, 20)");
        const r = await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l');
        await client.query('COMMIT'); // returns only once the archiver reported the commit flushed
        acked.push(parseLsn(r.rows[0]!.l));
      }
    })();
    await sleep(1500 + Math.floor(Math.random() * 1500));
    p.kill('SIGKILL');
    expect(await p.exited).toBe('SIGKILL');
    const ackedAtKill = acked.length;
    await sleep(500);
    // No commit can be acknowledged while no synchronous standby is there.
    expect(acked.length).toBeLessThanOrEqual(ackedAtKill + 1);
    const check = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
    expect(ackedAtKill).toBeGreaterThan(10);
    const maxAcked = acked.reduce((m, l) => (l > m ? l : m), 0n);
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
    stopping = true;
    await loop;
    await client.end();
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
    const last = acked.reduce((m, l) => (l > m ? l : m), 0n);
    expect(last).toBeLessThan(final.durableEnd);
    await storage.close();
  });
});
