/**
 * startWalArchiver under a steady write load, stopped and restarted several times: every segment
 * from the start to the end is in the repository, contiguous and byte-identical to the server's
 * pg_wal; the slot never passes the repository's durable end. PG14 and PG17, fs and s3.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWalArchiver, type WalArchiverHandle } from '../../src/archive/wal-archiver';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import type { Storage } from '../../src/storage/storage';
import type { PgarkEvent } from '../../src/observe';
import { formatLsn, parseLsn } from '../../src/lsn';
import { startCluster, type TestCluster } from '../harness/postgres';
import { writeLoad } from '../harness/datagen';
import { createTestBucket, type TestBucket } from '../harness/s3';
import { checkArchive } from '../harness/wal-archive-check';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe.each(
  [
    { major: 14 as const, driver: 'fs' as const },
    { major: 17 as const, driver: 's3' as const },
    { major: 14 as const, driver: 's3' as const },
    { major: 17 as const, driver: 'fs' as const },
  ].filter((c) => !process.env.PGARK_WAL_CASE || process.env.PGARK_WAL_CASE === `${c.major}-${c.driver}`),
)('wal archiver PG$major → $driver', ({ major, driver }) => {
  let cluster: TestCluster;
  let storage: Storage;
  let bucket: TestBucket | undefined;
  let dir: string | undefined;

  beforeAll(async () => {
    cluster = await startCluster({ major, settings: { wal_keep_size: '1GB' } });
    if (driver === 'fs') {
      dir = mkdtempSync(join(tmpdir(), 'pgark-walarch-'));
      storage = createFsStorage({ root: dir });
    } else {
      bucket = await createTestBucket();
      storage = createS3Storage(bucket.storageOptions);
    }
  });
  afterAll(async () => {
    await storage?.close();
    await bucket?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    await cluster?.destroy();
  });

  it('archives contiguously across stop/restart under load', async () => {
    const events: PgarkEvent[] = [];
    const opts = {
      connection: { ...cluster.connectionConfig({ user: cluster.replicationUser }), ssl: 'disable' as const },
      storage,
      slot: 'pgark_arch',
      createSlot: true,
      flushIntervalMs: 500,
      statusIntervalMs: 500,
      onEvent: (e: PgarkEvent) => events.push(e),
    };
    const load = await writeLoad(cluster, { ms: 2, rowsPerInsert: 50 });
    const burst = () =>
      cluster.query(
        'INSERT INTO write_load (v) SELECT repeat(md5(g::text), 20) FROM generate_series(1, 20000) g',
      );
    try {
      for (let round = 0; round < 3; round++) {
        const a: WalArchiverHandle = startWalArchiver(opts);
        await burst();
        // A segment switch per round: at least three complete segments whatever the machine's load.
        await cluster.query('SELECT pg_switch_wal()');
        await sleep(1500);
        await a.stop();
        const r = await a.done;
        expect(r.flushedLsn).toBeGreaterThan(0n);
        const [slot] = await cluster.query<{ restart_lsn: string }>(
          "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'pgark_arch'",
        );
        const check = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
        // The slot never runs ahead of the repository.
        expect(parseLsn(slot!.restart_lsn)).toBeLessThanOrEqual(check.durableEnd);
        expect(check.durableEnd).toBeGreaterThanOrEqual(r.flushedLsn);
      }
    } finally {
      await load.stop();
    }
    // Catch up to the server's flush position, then stop.
    const [{ lsn }] = (await cluster.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    )) as [{ lsn: string }];
    const target = parseLsn(lsn);
    const a = startWalArchiver(opts);
    await waitFor(() => a.stats().flushedLsn >= target, 60_000, `flush to ${formatLsn(target)}`);
    await a.stop();
    const final = await a.done;
    expect(final.flushedLsn).toBeGreaterThanOrEqual(target);

    const check = await checkArchive(storage, 'main', join(cluster.dataDir, 'pg_wal'), 1);
    expect(check.gaps).toEqual([]);
    expect(check.mismatches).toEqual([]);
    expect(check.segments.length).toBeGreaterThanOrEqual(3);
    expect(check.compared).toBe(check.segments.length + (check.partial ? 1 : 0));
    expect(check.durableEnd).toBeGreaterThanOrEqual(target);
    expect(events.some((e) => e.type === 'wal.segment.durable')).toBe(true);
  });
});
