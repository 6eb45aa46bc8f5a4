/**
 * The WAL stream under the archiver (src/replication/wal-stream.ts) against a real server: the
 * bytes it yields are the server's own pg_wal bytes, status updates move the slot only as far as
 * the reported flush, and stop() leaves the connection usable.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicationConnection } from '../../src/connection/replication-connection';
import { identifySystem } from '../../src/replication/identify-system';
import { createReplicationSlot } from '../../src/replication/replication-slots';
import { getWalSegmentSize } from '../../src/replication/show-setting';
import { WalStream } from '../../src/replication/wal-stream';
import { formatLsn, parseLsn, segmentStartOf, walFileNameForLsn } from '../../src/lsn';
import { startCluster, type TestCluster } from '../harness/postgres';

describe.each([14, 17] as const)('wal stream on PG%i', (major) => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster({ major });
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it('yields the server bytes, reports only the given flush and stops cleanly', async () => {
    const conn = await ReplicationConnection.connect({
      ...cluster.connectionConfig({ user: cluster.replicationUser }),
      ssl: 'disable',
    });
    try {
      await createReplicationSlot(conn, { name: 'ws_test', reserveWal: true });
      const id = await identifySystem(conn);
      const segSize = await getWalSegmentSize(conn);
      const start = segmentStartOf(id.xlogPos, segSize);
      await cluster.query('CREATE TABLE t AS SELECT g, md5(g::text) m FROM generate_series(1, 20000) g');
      const [{ lsn }] = (await cluster.query<{ lsn: string }>(
        'SELECT pg_current_wal_flush_lsn()::text AS lsn',
      )) as [{ lsn: string }];
      const target = parseLsn(lsn);

      const stream = await WalStream.start({
        connection: conn,
        startLsn: start,
        timeline: id.timeline,
        slot: 'ws_test',
        statusIntervalMs: 200,
      });
      stream.setEndLsn(target);
      const chunks: Buffer[] = [];
      let expected = start;
      for await (const ev of stream) {
        if (ev.type !== 'xlogdata') continue;
        expect(ev.startLsn).toBe(expected);
        expected = ev.endLsn;
        chunks.push(Buffer.from(ev.data));
        // Report flush up to the middle of the received data only.
        stream.reportFlushed(start + (ev.endLsn - start) / 2n);
      }
      expect(stream.end?.reason).toBe('stopped');
      const got = Buffer.concat(chunks);
      expect(BigInt(got.length)).toBeGreaterThanOrEqual(target - start);

      // The bytes are what the server wrote to its own pg_wal (same segment, same offsets).
      const first = walFileNameForLsn(id.timeline, start, segSize);
      const onDisk = readFileSync(join(cluster.dataDir, 'pg_wal', first));
      const n = Math.min(got.length, segSize);
      expect(got.subarray(0, n).equals(onDisk.subarray(0, n))).toBe(true);

      // The connection is usable again, and the slot did not pass the reported flush.
      const again = await identifySystem(conn);
      expect(again.systemIdentifier).toBe(id.systemIdentifier);
      const [slot] = await cluster.query<{ restart_lsn: string }>(
        "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'ws_test'",
      );
      const restart = parseLsn(slot!.restart_lsn);
      expect(restart).toBeLessThanOrEqual(stream.positions().flushedLsn);
      expect(formatLsn(stream.positions().flushedLsn)).not.toBe('0/0');
    } catch (e) {
      console.log(readFileSync(cluster.logFile, 'utf8').slice(-3000));
      throw e;
    } finally {
      await conn.close();
    }
  });
});
