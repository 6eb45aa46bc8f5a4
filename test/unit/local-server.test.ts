import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { RestoreError } from '../../src/errors';
import {
  buildServerOptions,
  distributionBinDirs,
  embeddedPackageNames,
  findServerBinaries,
  initdbArgs,
  isServerRunning,
  parsePasswdLine,
  parsePostgresVersion,
  readLogTail,
  readPostmasterPid,
  serverEnv,
  shellQuote,
} from '../../src/local-server';

describe('parsePostgresVersion', () => {
  it('reads embedded, distribution and development version lines', () => {
    expect(parsePostgresVersion('postgres (PostgreSQL) 17.10\n')).toEqual({ major: 17, version: '17.10' });
    expect(parsePostgresVersion('postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)')).toEqual({
      major: 15,
      version: '15.18 (Debian 15.18-0+deb12u1)',
    });
    expect(parsePostgresVersion('postgres (PostgreSQL) 18devel')).toEqual({ major: 18, version: '18devel' });
    expect(parsePostgresVersion('bash: postgres: not found')).toBeUndefined();
  });
});

describe('shellQuote / buildServerOptions', () => {
  // pg_ctl hands -o to /bin/sh: check the quoting with a real shell.
  const echoArgs = (s: string): string[] => {
    const r = spawnSync('/bin/sh', ['-c', `for a in ${s}; do printf '%s\\n' "$a"; done`], {
      encoding: 'utf8',
    });
    return r.stdout.split('\n').slice(0, -1);
  };

  it('survives the shell for quotes, spaces, $ and backslashes', () => {
    for (const v of [`it's`, 'a b', '$HOME', '\\x', '"q"', '`id`', '']) {
      expect(echoArgs(shellQuote(v))).toEqual([v]);
    }
  });

  it('builds -c name=value pairs, booleans as on/off', () => {
    const o = buildServerOptions({
      port: 5433,
      wal_level: 'replica',
      hot_standby: true,
      restore_command: "cp '%p' x",
    });
    expect(echoArgs(o)).toEqual([
      '-c',
      'port=5433',
      '-c',
      'wal_level=replica',
      '-c',
      'hot_standby=on',
      '-c',
      "restore_command=cp '%p' x",
    ]);
  });

  it('rejects bad names and control characters', () => {
    expect(() => buildServerOptions({ 'x; rm -rf /': '1' })).toThrow(RestoreError);
    expect(() => buildServerOptions({ a: 'x\ny' })).toThrow(RestoreError);
    try {
      buildServerOptions({ 'bad name': '1' });
    } catch (e) {
      expect((e as RestoreError).code).toBe('RESTORE_SERVER_FAILED');
    }
  });
});

describe('initdbArgs', () => {
  it('defaults to UTF8, locale C, superuser postgres', () => {
    expect(initdbArgs({ dataDir: '/d' }, 16)).toEqual([
      '-D',
      '/d',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--locale=C',
    ]);
  });
  it('adds --no-sync, --pwfile, --auth and checksum flags', () => {
    const a = initdbArgs(
      { dataDir: '/d', noSync: true, passwordFile: '/p', authMethod: 'scram-sha-256', dataChecksums: false },
      18,
    );
    expect(a).toContain('--no-sync');
    expect(a).toContain('--pwfile=/p');
    expect(a).toContain('--auth=scram-sha-256');
    expect(a).toContain('--no-data-checksums');
    expect(initdbArgs({ dataDir: '/d', dataChecksums: false }, 17)).not.toContain('--no-data-checksums');
    expect(initdbArgs({ dataDir: '/d', dataChecksums: true }, 14)).toContain('--data-checksums');
  });
});

describe('search locations', () => {
  it('lists distribution directories and embedded package names for the major', () => {
    expect(distributionBinDirs(16)).toContain('/usr/lib/postgresql/16/bin');
    expect(distributionBinDirs(16)).toContain('/usr/pgsql-16/bin');
    expect(embeddedPackageNames(14)[0]).toBe('pg14');
  });

  it('finds an embedded package (npm alias pgNN) when PATH and the distribution dirs have none', () => {
    const repo = join(import.meta.dirname, '..', '..');
    const b = findServerBinaries({ major: 16, pathEnv: '', searchRoots: [repo] });
    expect(b.major).toBe(16);
    expect(b.flavor).toBe('embedded');
    expect(b.binDir).toBe(join(repo, 'node_modules', 'pg16', 'native', 'bin'));
    expect(b.pgCtl).toBe(join(b.binDir, 'pg_ctl'));
  });

  it('skips a directory whose postgres has another major', () => {
    const repo = join(import.meta.dirname, '..', '..');
    const b = findServerBinaries({
      major: 18,
      binDir: join(repo, 'node_modules', 'pg14', 'native', 'bin'),
      pathEnv: '',
      searchRoots: [repo],
    });
    expect(b.major).toBe(18);
    expect(b.binDir).toContain('pg18');
  });

  it('throws RESTORE_BINARIES_NOT_FOUND when nothing matches', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgark-bins-'));
    try {
      let err: unknown;
      try {
        findServerBinaries({ major: 13, binDir: dir, strict: true });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RestoreError);
      expect((err as RestoreError).code).toBe('RESTORE_BINARIES_NOT_FOUND');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('postmaster.pid, log tail, passwd, env', () => {
  it('reads the pid and tells a live pid from a dead one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgark-pid-'));
    try {
      expect(isServerRunning(dir)).toBe(false);
      writeFileSync(join(dir, 'postmaster.pid'), `${process.pid}\n/data\n`);
      expect(readPostmasterPid(dir)).toBe(process.pid);
      expect(isServerRunning(dir)).toBe(true);
      writeFileSync(join(dir, 'postmaster.pid'), `2147483646\n`);
      expect(isServerRunning(dir)).toBe(false);
      writeFileSync(join(dir, 'postmaster.pid'), `garbage\n`);
      expect(readPostmasterPid(dir)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('returns the last whole lines of a log', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgark-log-'));
    try {
      const f = join(dir, 'log');
      writeFileSync(f, Array.from({ length: 1000 }, (_, i) => `line ${i}`).join('\n') + '\n');
      const tail = readLogTail(f, 100);
      expect(tail.endsWith('line 999\n')).toBe(true);
      expect(tail.split('\n')[0]).toMatch(/^line \d+$/);
      expect(readLogTail(join(dir, 'missing'))).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses passwd lines', () => {
    expect(parsePasswdLine('pgark:x:999:995::/nonexistent:/usr/sbin/nologin\n')).toEqual({
      name: 'pgark',
      uid: 999,
      gid: 995,
    });
    expect(parsePasswdLine('broken')).toBeUndefined();
  });

  it('drops PG* variables from the server environment', () => {
    const env = serverEnv({ PATH: '/bin', PGDATA: '/x', PGPORT: '1', HOME: '/root' });
    expect(env.PGDATA).toBeUndefined();
    expect(env.PGPORT).toBeUndefined();
    expect(env.PATH).toBe('/bin');
  });
});
