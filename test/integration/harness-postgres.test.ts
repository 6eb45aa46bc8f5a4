/**
 * The harness itself: every major (embedded 14-18 and Debian 15) starts, reports its version, lets
 * the replication role in with replication=true (IDENTIFY_SYSTEM over plain `pg`), and refuses a wrong
 * password. Clusters run one after the other and are destroyed at once to keep the file light.
 */
import { existsSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ALL_MAJORS, startCluster, type Major } from '../harness/postgres';

const cases: Array<{ major: Major; flavor: 'embedded' | 'debian' }> = [
  ...ALL_MAJORS.map((major) => ({ major, flavor: 'embedded' as const })),
  { major: 15, flavor: 'debian' },
];

describe('test harness: startCluster', () => {
  for (const { major, flavor } of cases) {
    it(`${flavor} ${major}: starts, replication login works, wrong password is refused`, async () => {
      const c = await startCluster({ major, flavor });
      try {
        const [v] = await c.query<{ server_version_num: string }>('SHOW server_version_num');
        expect(Math.floor(Number(v!.server_version_num) / 10000)).toBe(major);
        expect(c.flavor).toBe(flavor);
        expect(c.dataDir.startsWith('/tmp/pgark-test/')).toBe(true);
        expect(c.dataDir.startsWith(c.socketDir)).toBe(false);

        const [wal] = await c.query<{ wal_level: string }>('SHOW wal_level');
        expect(wal!.wal_level).toBe('replica');
        const [sum] = await c.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_settings WHERE name = 'summarize_wal' AND setting = 'on'`,
        );
        expect(Number(sum!.n)).toBe(major >= 17 ? 1 : 0);

        // Physical replication connection as the replicator role, with plain pg (simple query protocol).
        const repl = new pg.Client(c.connectionConfig({ user: c.replicationUser, replication: true }));
        await repl.connect();
        try {
          const res = await repl.query('IDENTIFY_SYSTEM');
          expect(res.rows).toHaveLength(1);
          expect(String(res.rows[0].systemid)).toMatch(/^\d+$/);
          expect(Number(res.rows[0].timeline)).toBe(1);
        } finally {
          await repl.end();
        }

        // The connection string form works too.
        const viaUrl = new pg.Client({ connectionString: c.connectionString() });
        await viaUrl.connect();
        await viaUrl.end();

        const bad = new pg.Client({ ...c.connectionConfig(), password: 'wrong-password' });
        bad.on('error', () => undefined);
        const err = await bad.connect().then(
          () => undefined,
          (e: { code?: string }) => e,
        );
        await bad.end().catch(() => undefined);
        expect(err?.code).toBe('28P01'); // invalid_password
      } finally {
        await c.destroy();
      }
      expect(existsSync(c.rootDir)).toBe(false);
      await c.destroy(); // idempotent
    });
  }

  it('stop/start/restart keep the data and the port', async () => {
    const c = await startCluster({ major: 16, settings: { work_mem: '8MB' } });
    try {
      await c.query('CREATE TABLE t (x int)');
      await c.query('INSERT INTO t VALUES (1), (2)');
      const port = c.port;
      await c.stop('immediate');
      await c.start();
      expect(c.port).toBe(port);
      await c.restart();
      const [r] = await c.query<{ n: string }>('SELECT count(*) AS n FROM t');
      expect(Number(r!.n)).toBe(2);
      const [wm] = await c.query<{ work_mem: string }>('SHOW work_mem');
      expect(wm!.work_mem).toBe('8MB');
    } finally {
      await c.destroy();
    }
  });
});
