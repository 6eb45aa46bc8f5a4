/**
 * Harness promises of issue 3 that harness-postgres.test.ts does not check: servers of different
 * majors run side by side; each runs as an unprivileged OS user (never root), listens on 127.0.0.1
 * only on its own port, has max_wal_senders / max_replication_slots, stores scram-sha-256 passwords
 * and asks for them in pg_hba.conf, and has a REPLICATION role. Missing S3 infrastructure fails
 * loudly with the install command.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../harness/postgres';
import { checkS3Prerequisites } from '../harness/s3-server';

/** Real, effective, saved and filesystem uid of a process, from /proc. */
function uidsOf(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'));
  return line!.split(/\s+/).slice(1).filter(Boolean).map(Number);
}

describe('test harness: clusters side by side, unprivileged, local only', () => {
  let a: TestCluster;
  let b: TestCluster;
  beforeAll(async () => {
    // Started concurrently: two majors at the same time, each in its own directory and port.
    [a, b] = await Promise.all([startCluster({ major: 14 }), startCluster({ major: 18 })]);
  });
  afterAll(async () => {
    await Promise.all([a?.destroy(), b?.destroy()]);
  });

  it('both majors run at once on different ports and directories', async () => {
    expect(a.port).not.toBe(b.port);
    expect(a.dataDir).not.toBe(b.dataDir);
    const version = async (c: TestCluster): Promise<number> =>
      Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v"))[0]!.v);
    // Both answer while both are up: neither start stopped the other.
    const [va, vb] = await Promise.all([version(a), version(b)]);
    expect(Math.floor(va / 10000)).toBe(14);
    expect(Math.floor(vb / 10000)).toBe(18);
  });

  it('the postmaster runs as the unprivileged server user, who owns the data directory', () => {
    for (const c of [a, b]) {
      const pid = Number(readFileSync(join(c.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const uids = uidsOf(pid);
      expect(uids).toHaveLength(4);
      for (const uid of uids) expect(uid).not.toBe(0);
      expect(uids[0]).toBe(c.serverUser.uid);
      expect(statSync(c.dataDir).uid).toBe(c.serverUser.uid);
    }
  });

  it('listens on 127.0.0.1 only, with the replication settings and scram-sha-256', async () => {
    for (const c of [a, b]) {
      const get = async (name: string): Promise<string> =>
        (await c.query<{ setting: string }>('SELECT setting FROM pg_settings WHERE name = $1', [name]))[0]!
          .setting;
      expect(await get('listen_addresses')).toBe('127.0.0.1');
      expect(Number(await get('port'))).toBe(c.port);
      expect(await get('wal_level')).toBe('replica');
      expect(Number(await get('max_wal_senders'))).toBeGreaterThanOrEqual(2);
      expect(Number(await get('max_replication_slots'))).toBeGreaterThanOrEqual(2);
      expect(await get('password_encryption')).toBe('scram-sha-256');
      const roles = await c.query<{ rolname: string; rolreplication: boolean; scram: boolean }>(
        `SELECT rolname, rolreplication, rolpassword LIKE 'SCRAM-SHA-256$%' AS scram
           FROM pg_authid WHERE rolname IN ('postgres', 'replicator') ORDER BY rolname`,
      );
      expect(roles).toEqual([
        { rolname: 'postgres', rolreplication: true, scram: true },
        { rolname: 'replicator', rolreplication: true, scram: true },
      ]);
      // Over TCP, every hba line asks for scram-sha-256 (trust is on the Unix socket only).
      const hba = await c.query<{ type: string; database: string[]; auth_method: string }>(
        `SELECT type, database, auth_method FROM pg_hba_file_rules WHERE type = 'host'`,
      );
      expect(hba.length).toBeGreaterThanOrEqual(2);
      expect(hba.some((r) => r.database.includes('replication'))).toBe(true);
      for (const r of hba) expect(r.auth_method).toBe('scram-sha-256');
    }
  });
});

describe('test harness: missing infrastructure fails loudly', () => {
  it('the S3 server check names what to install when its tools are not on PATH', () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent-pgark-path';
    let err: unknown;
    try {
      checkS3Prerequisites();
    } catch (e) {
      err = e;
    } finally {
      process.env.PATH = saved;
    }
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('apt-get install');
    expect((err as Error).message).toContain('memcached');
    // With the real PATH the same check passes on this machine (the run's S3 server is up).
    expect(() => checkS3Prerequisites()).not.toThrow();
  });
});
