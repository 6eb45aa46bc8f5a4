/**
 * The archiver process is SIGKILLed at random moments under a write load and restarted: no gap in
 * the archive, the bytes are the server's, and the slot's restart_lsn never passes what the
 * repository holds (read the slot first, then the repository, which only grows).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFsStorage } from '../../src/storage/fs-storage';
import { formatLsn, parseLsn } from '../../src/lsn';
import { startCluster, type TestCluster } from '../harness/postgres';
import { writeLoad } from '../harness/datagen';
import { checkArchive } from '../harness/wal-archive-check';
import { spawnArchiver } from '../harness/archiver-process';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('wal archiver killed with SIGKILL (PG15, fs)', () => {
  let cluster: TestCluster;
  let dir: string;
  beforeAll(async () => {
    cluster = await startCluster({ major: 15, settings: { wal_keep_size: '1GB' } });
    dir = mkdtempSync(join(tmpdir(), 'pgark-walkill-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await cluster?.destroy();
  });

  it('leaves no gap and never lets the slot pass the repository', async () => {
    const storage = createFsStorage({ root: dir });
    const config = {
      connection: { ...cluster.connectionConfig({ user: cluster.replicationUser }), ssl: 'disable' },
      slot: 'pgark_kill',
      fsRoot: dir,
      flushIntervalMs: 300,
      statusIntervalMs: 300,
    };
    const slotVsRepo = async (): Promise<void> => {
      const [slot] = await cluster.query<{ restart_lsn: string | null }>(
        "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'pgark_kill'",
      );
      if (!slot?.restart_lsn) return;
      const restart = parseLsn(slot.restart_lsn);
      const check = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
      if (check.durableEnd === 0n) return; // nothing archived yet: the slot holds what it reserved
      expect(
        restart,
        `restart_lsn ${formatLsn(restart)} vs repository ${formatLsn(check.durableEnd)}`,
      ).toBeLessThanOrEqual(check.durableEnd);
    };
    const load = await writeLoad(cluster, { ms: 1, rowsPerInsert: 100 });
    let kills = 0;
    try {
      for (let round = 0; round < 6; round++) {
        const p = spawnArchiver(config);
        const until = Date.now() + 1500 + Math.floor(Math.random() * 3000);
        while (Date.now() < until) {
          if (round % 2 === 0)
            await cluster.query(
              'INSERT INTO write_load (v) SELECT repeat(md5(g::text), 10) FROM generate_series(1, 5000) g',
            );
          await slotVsRepo();
          await sleep(200);
        }
        p.kill('SIGKILL');
        kills++;
        expect(await p.exited).toBe('SIGKILL');
        await slotVsRepo();
      }
    } finally {
      await load.stop();
    }
    const [{ lsn }] = (await cluster.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    )) as [{ lsn: string }];
    const target = parseLsn(lsn);
    const p = spawnArchiver(config);
    const deadline = Date.now() + 90_000;
    while (p.flushedLsn() < target) {
      if (Date.now() > deadline) {
        p.kill('SIGKILL');
        await p.exited;
        throw new Error(
          `archiver did not reach ${formatLsn(target)} (at ${formatLsn(p.flushedLsn())}); last events ${JSON.stringify(p.events.slice(-8))}`,
        );
      }
      await sleep(100);
    }
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    const check = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
    expect(kills).toBe(6);
    expect(check.gaps).toEqual([]);
    expect(check.mismatches).toEqual([]);
    expect(check.compared).toBe(check.segments.length + (check.partial ? 1 : 0));
    expect(check.durableEnd).toBeGreaterThanOrEqual(target);
    expect(check.segments.length).toBeGreaterThanOrEqual(2);
    await slotVsRepo();
    await storage.close();
  });
});
