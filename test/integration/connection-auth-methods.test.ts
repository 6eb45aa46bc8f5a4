/**
 * A replication connection authenticates like any pg client: cleartext `password`, `md5` and
 * `scram-sha-256` (the harness default, covered elsewhere) against a real server whose pg_hba.conf
 * asks for each method per role. A wrong password fails with CONNECTION_AUTH_FAILED under every
 * method, and no error carries the password.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../harness/postgres';
import { ConnectionError, ReplicationConnection, identifySystem } from '../../src/index';

const PASSWORDS = { pw_user: 'cleartext-Secret-1', md5_user: 'md5-Secret-2' } as const;

describe('authentication methods (PG16)', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster({
      major: 16,
      hba: ['host replication pw_user 127.0.0.1/32 password', 'host replication md5_user 127.0.0.1/32 md5'],
    });
    // md5 authentication needs an md5-hashed password (with a SCRAM verifier the server upgrades to SCRAM).
    await cluster.query(`SET password_encryption = 'md5'`);
    await cluster.query(`CREATE ROLE md5_user LOGIN REPLICATION PASSWORD '${PASSWORDS.md5_user}'`);
    await cluster.query(`SET password_encryption = 'scram-sha-256'`);
    await cluster.query(`CREATE ROLE pw_user LOGIN REPLICATION PASSWORD '${PASSWORDS.pw_user}'`);
    const [row] = await cluster.query<{ rolpassword: string }>(
      `SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'`,
    );
    expect(row!.rolpassword.startsWith('md5')).toBe(true);
  });

  afterAll(async () => {
    await cluster?.destroy();
  });

  for (const user of Object.keys(PASSWORDS) as (keyof typeof PASSWORDS)[]) {
    it(`${user} connects and runs IDENTIFY_SYSTEM`, async () => {
      const conn = await ReplicationConnection.connect({
        host: cluster.host,
        port: cluster.port,
        user,
        password: PASSWORDS[user],
        ssl: 'disable',
      });
      try {
        const sys = await identifySystem(conn);
        expect(sys.systemIdentifier).toMatch(/^\d+$/);
        expect(sys.dbName).toBeNull();
      } finally {
        await conn.close();
      }
    });

    it(`${user} with a wrong password fails with CONNECTION_AUTH_FAILED and no secret`, async () => {
      const wrong = `${PASSWORDS[user]}-wrong`;
      const err = await ReplicationConnection.connect({
        host: cluster.host,
        port: cluster.port,
        user,
        password: wrong,
        ssl: 'disable',
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as ConnectionError).code).toBe('CONNECTION_AUTH_FAILED');
      expect((err as ConnectionError).sqlstate).toBe('28P01');
      const text = JSON.stringify(err) + String(err) + ((err as Error).stack ?? '');
      expect(text).not.toContain(wrong);
      expect(text).not.toContain(PASSWORDS[user]);
    });
  }
});
