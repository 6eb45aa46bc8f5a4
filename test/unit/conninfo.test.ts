import { describe, expect, it } from 'vitest';
import { parseConnectionString, toPgClientConfig } from '../../src/connection/conninfo';
import { describeTarget, parseServerVersion } from '../../src/connection/replication-connection';
import { mapConnectError } from '../../src/connection/connect-errors';

describe('parseConnectionString', () => {
  it('parses the key/value form with quoting', () => {
    expect(
      parseConnectionString(
        "host=db1 port=5433 user=rep password='a b\\'c' dbname=x sslmode=require connect_timeout=5 application_name=app",
      ),
    ).toEqual({
      host: 'db1',
      port: 5433,
      user: 'rep',
      password: "a b'c",
      database: 'x',
      ssl: 'require',
      connectTimeoutMs: 5000,
      applicationName: 'app',
    });
  });
  it('parses URLs with encoded parts', () => {
    expect(
      parseConnectionString(
        'postgresql://re%40p:p%2Fw@127.0.0.1:6000/postgres?sslmode=verify-full&replication=true',
      ),
    ).toEqual({
      host: '127.0.0.1',
      port: 6000,
      user: 're@p',
      password: 'p/w',
      database: 'postgres',
      ssl: 'verify-full',
    });
  });
  it('refuses bad input without echoing it (it may hold a password)', () => {
    for (const bad of [
      'host',
      "password='secretpw",
      'port=abc',
      'sslmode=maybe',
      'bogus=1',
      'postgresql://u:secretpw@[bad',
    ]) {
      let err: unknown;
      try {
        parseConnectionString(bad);
      } catch (e) {
        err = e;
      }
      expect((err as { code: string }).code).toBe('CONFIG_INVALID_CONNINFO');
      expect(JSON.stringify(err) + String(err) + (err as Error).stack).not.toContain('secretpw');
    }
  });
});

describe('connection helpers', () => {
  it('describes a target without a password', () => {
    expect(describeTarget({ host: 'h', port: 1, user: 'u' })).toBe('h:1 user=u db=replication');
  });
  it('parses server_version strings', () => {
    expect(parseServerVersion('17.10')).toBe(170010);
    expect(parseServerVersion('14.23 (Debian 14.23-1)')).toBe(140023);
    expect(parseServerVersion('18beta1')).toBe(180000);
    expect(parseServerVersion('9.6.24')).toBe(90624);
    expect(parseServerVersion('x')).toBeUndefined();
  });
  it('maps socket errors and masks the password in any message', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(mapConnectError(refused, 't', 'pw').code).toBe('CONNECTION_REFUSED');
    const leaky = new Error('something with hunter2 inside');
    const mapped = mapConnectError(leaky, 't', 'hunter2');
    expect(JSON.stringify(mapped) + String(mapped) + mapped.stack).not.toContain('hunter2');
  });
  it('maps a key=value conninfo to pg.Client options (database defaults to the user, sslmode as libpq)', () => {
    expect(
      toPgClientConfig(parseConnectionString("host=db port=6543 user=app password='p w' sslmode=require")),
    ).toEqual({
      host: 'db',
      port: 6543,
      user: 'app',
      database: 'app',
      password: 'p w',
      ssl: { rejectUnauthorized: false },
    });
    expect(toPgClientConfig(parseConnectionString('host=db dbname=shop sslmode=verify-full')).ssl).toBe(true);
    expect(toPgClientConfig(parseConnectionString('host=db sslmode=prefer')).ssl).toBeUndefined();
  });
});
