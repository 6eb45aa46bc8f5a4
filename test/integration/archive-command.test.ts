/**
 * archive_command / restore_command on real servers: `pgark archive-push %p` archives a PG15
 * cluster's WAL (segments, the .backup file of a base backup, and after a promotion the .history
 * file), and `pgark archive-fetch %f %p` drives a real archive recovery of a base backup taken with
 * Debian's pg_basebackup -X none (so every WAL byte recovery needs comes through restore_command).
 * Oracle: the recovered server has the rows written after the backup. Run against an fs repository
 * and against S3 (credentials only in the server's environment).
 *
 * The CLI is bundled for this file alone (esbuild, into .tmp/) so that a concurrent `npm run build`
 * (tsup cleans dist/) cannot pull the command from under a running server.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { archiveFetch, archivePush, IntegrityError } from '../../src/index';
import { openRepository } from '../../src/archive/repository';
import { walBackupHistoryKey, walHistoryKey, walSegmentKey } from '../../src/archive/repo-layout';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage } from '../../src/storage/s3-storage';
import type { Storage } from '../../src/storage/storage';
import { chownTree, resolveServerUser, shellQuote, startServer, stopServer } from '../../src/local-server';
import { freePort, startCluster, TEST_ROOT, type TestCluster } from '../harness/postgres';
import { createTestBucket, type TestBucket } from '../harness/s3';
import { bundleCli } from './restore-helpers';

const run = promisify(execFile);
const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';
const STANZA = 'main';

let cli: string;
let cleanupCli: (() => void) | undefined;

beforeAll(async () => {
  if (!existsSync(PG_BASEBACKUP))
    throw new Error(`${PG_BASEBACKUP} missing: apt-get install postgresql-client-15`);
  ({ cli, cleanup: cleanupCli } = await bundleCli('archive-command'));
});

afterAll(() => {
  cleanupCli?.();
});

interface Repo {
  storage: Storage;
  /** `--repo … [--s3-endpoint …]` */
  args: string;
  /** The server's extra environment (S3 credentials). */
  env: Record<string, string>;
  /** Local directory of an fs repository. */
  dir?: string;
  cleanup(): Promise<void>;
}

function fsRepo(): Repo {
  const dir = join(TEST_ROOT, `archrepo-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  chownTree(dir, resolveServerUser());
  return {
    storage: createFsStorage({ root: dir }),
    args: `--repo ${shellQuote(dir)} --stanza ${STANZA}`,
    env: {},
    dir,
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function s3Repo(): Promise<Repo> {
  const bucket: TestBucket = await createTestBucket({ prefix: 'pg', name: 'archcmd' });
  const s3 = inject('s3');
  const storage = createS3Storage(bucket.storageOptions);
  return {
    storage,
    args: `--repo s3://${bucket.bucket}/pg --s3-endpoint ${s3.endpoint} --stanza ${STANZA}`,
    // Only in the server's environment: never in postgresql.conf or on the command line.
    env: {
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_REGION: s3.region,
    },
    async cleanup() {
      await storage.close();
      await bucket.cleanup();
    },
  };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stderr: string }> {
  try {
    const r = await run(process.execPath, [cli, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stderr: err.stderr ?? '' };
  }
}

async function scenario(repo: Repo): Promise<void> {
  const node = shellQuote(process.execPath);
  const archiveCommand = `${node} ${shellQuote(cli)} archive-push %p ${repo.args}`;
  const restoreCommand = `${node} ${shellQuote(cli)} archive-fetch %f %p ${repo.args}`;
  const user = resolveServerUser();
  let source: TestCluster | undefined;
  const restoreRoot = join(TEST_ROOT, `archrestore-${process.pid}-${randomBytes(4).toString('hex')}`);
  const dataDir = join(restoreRoot, 'data');
  const socketDir = join(restoreRoot, 'sock');
  const logFile = join(restoreRoot, 'server.log');
  let restoredStarted = false;
  let binaries: TestCluster['binaries'] | undefined;
  try {
    source = await startCluster({
      major: 15,
      settings: { archive_mode: 'on', archive_command: archiveCommand },
      env: repo.env,
    });
    binaries = source.binaries;
    await source.query('CREATE TABLE t (id int primary key, phase text)');
    await source.query(`INSERT INTO t SELECT g, 'before' FROM generate_series(1, 1000) g`);

    // A base backup without WAL: pg_basebackup -X none waits until the server archived the WAL the
    // backup needs (BASE_BACKUP's default WAIT), i.e. until our archive_command succeeded.
    mkdirSync(restoreRoot, { recursive: true });
    mkdirSync(socketDir);
    await run(
      PG_BASEBACKUP,
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(source.port),
        '-U',
        source.replicationUser.user,
        '-D',
        dataDir,
        '-X',
        'none',
        '-c',
        'fast',
        '-Fp',
      ],
      { env: { ...process.env, PGPASSWORD: source.replicationUser.password } },
    );

    await source.query(`INSERT INTO t SELECT g, 'after' FROM generate_series(1001, 1500) g`);
    const walfile = (
      await source.query<{ walfile: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS walfile')
    )[0]!.walfile;
    await waitFor('the switched segment to be archived', async () => {
      const [s] = await source!.query<{ last: string | null; failed: string }>(
        'SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver',
      );
      return s && s.last !== null && s.last >= walfile ? true : undefined;
    });
    const archiver = await source.query<{ failed: string }>(
      'SELECT failed_count::text AS failed FROM pg_stat_archiver',
    );
    expect(archiver[0]!.failed).toBe('0');

    // What arrived: segments up to the switched one, and the .backup file of the base backup.
    const stanza = await (await openRepository(repo.storage)).openStanza(STANZA);
    expect(stanza.info.pgMajor).toBe(15);
    const control = await source.query<{ sysid: string }>(
      'SELECT system_identifier::text AS sysid FROM pg_control_system()',
    );
    expect(stanza.info.systemIdentifier).toBe(control[0]!.sysid);
    const kinds = new Map<string, string[]>();
    for await (const o of stanza.listWal()) {
      const k = o.parsed.kind;
      kinds.set(k, [
        ...(kinds.get(k) ?? []),
        'walName' in o.parsed
          ? o.parsed.walName
          : 'fileName' in o.parsed
            ? o.parsed.fileName
            : String(o.parsed.timeline),
      ]);
    }
    expect(kinds.get('wal-segment')).toContain(walfile);
    expect(kinds.get('wal-backup-history')?.length).toBe(1);
    expect(
      await repo.storage.head(walBackupHistoryKey(STANZA, kinds.get('wal-backup-history')![0]!)),
    ).toBeDefined();
    await source.stop('fast');

    // Recovery of the backup through restore_command only.
    chownTree(restoreRoot, user);
    chmodSync(dataDir, 0o700);
    writeFileSync(join(dataDir, 'recovery.signal'), '');
    writeFileSync(logFile, '');
    chownTree(restoreRoot, user);
    const port = await freePort();
    restoredStarted = true;
    await startServer({
      binaries: source.binaries,
      user,
      dataDir,
      port,
      socketDir,
      logFile,
      settings: { restore_command: restoreCommand, archive_mode: 'on', archive_command: archiveCommand },
      env: repo.env,
    });
    const client = new pg.Client({ host: socketDir, port, user: 'postgres', database: 'postgres' });
    client.on('error', () => undefined);
    await client.connect();
    try {
      await waitFor('the end of recovery', async () => {
        const r = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        return r.rows[0]!.r ? undefined : true;
      });
      const rows = await client.query<{ phase: string; n: string }>(
        'SELECT phase, count(*)::text AS n FROM t GROUP BY phase ORDER BY phase',
      );
      expect(rows.rows).toEqual([
        { phase: 'after', n: '500' },
        { phase: 'before', n: '1000' },
      ]);
      const tli = await client.query<{ tli: number }>(
        'SELECT timeline_id AS tli FROM pg_control_checkpoint()',
      );
      expect(tli.rows[0]!.tli).toBe(2);
    } finally {
      await client.end().catch(() => undefined);
    }
    // The promoted copy archives its new timeline's history file through archive-push.
    await waitFor('00000002.history in the repository', async () =>
      (await repo.storage.head(walHistoryKey(STANZA, 2))) ? true : undefined,
    );
    const log = readFileSync(logFile, 'utf8');
    expect(log).not.toMatch(/pgark: error/);
    expect(log).not.toMatch(/INTEGRITY_|STORAGE_/);
  } finally {
    if (restoredStarted && binaries)
      await stopServer({ binaries, user, dataDir, mode: 'immediate' }).catch(() => undefined);
    rmSync(restoreRoot, { recursive: true, force: true });
    await source?.destroy();
  }
}

describe('archive_command and restore_command through the CLI (PG15)', () => {
  it('fs repository: segments, .backup and .history arrive; a recovery replays through archive-fetch', async () => {
    const repo = fsRepo();
    try {
      await scenario(repo);
      await duplicatesAndFetchChecks(repo);
    } finally {
      await repo.cleanup();
    }
  });

  it('s3 repository (credentials in the server environment only)', async () => {
    const repo = await s3Repo();
    try {
      await scenario(repo);
    } finally {
      await repo.cleanup();
    }
  });
});

/** Library and CLI checks on the repository the fs scenario filled. */
async function duplicatesAndFetchChecks(repo: Repo): Promise<void> {
  const work = join(TEST_ROOT, `archwork-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(work, { recursive: true });
  try {
    const stanza = await (await openRepository(repo.storage)).openStanza(STANZA);
    const segments: string[] = [];
    for await (const o of stanza.listWal({ timeline: 1 }))
      if (o.parsed.kind === 'wal-segment') segments.push(o.parsed.walName);
    segments.sort();
    expect(segments.length).toBeGreaterThanOrEqual(3);
    const first = segments[0]!;
    const stored = join(repo.dir!, ...walSegmentKey(STANZA, first).split('/'));

    // The same bytes again (PostgreSQL re-running archive_command): success, exit 0.
    const same = join(work, 'same');
    mkdirSync(same);
    copyFileSync(stored, join(same, first));
    const again = await archivePush({ storage: repo.storage, stanza: STANZA, walPath: join(same, first) });
    expect(again.alreadyArchived).toBe(true);
    expect(
      (await runCli(['archive-push', join(same, first), '--repo', repo.dir!, '--stanza', STANZA])).code,
    ).toBe(0);

    // Different bytes under the same name: refused, typed error, exit non-zero.
    const other = join(work, 'other');
    mkdirSync(other);
    const bytes = readFileSync(stored);
    bytes[8192 * 3 + 100] = bytes[8192 * 3 + 100]! ^ 0xff; // inside a page body: headers stay valid
    writeFileSync(join(other, first), bytes);
    const err = await archivePush({
      storage: repo.storage,
      stanza: STANZA,
      walPath: join(other, first),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).code).toBe('INTEGRITY_WAL_CONFLICT');
    expect(
      (await runCli(['archive-push', join(other, first), '--repo', repo.dir!, '--stanza', STANZA])).code,
    ).toBe(1);
    // The archived copy is untouched.
    expect(readFileSync(stored).equals(bytes)).toBe(false);

    // Prefetch: the first fetch spools the next segments, the second is served from the spool.
    const dest = join(work, 'pg_wal');
    mkdirSync(dest);
    const f1 = await archiveFetch({
      storage: repo.storage,
      stanza: STANZA,
      walName: segments[0]!,
      destPath: join(dest, 'RECOVERYXLOG'),
      prefetch: 4,
    });
    expect(f1).toMatchObject({ found: true, fromSpool: false });
    expect(f1.prefetched).toBe(Math.min(4, segments.length - 1));
    expect(readFileSync(join(dest, 'RECOVERYXLOG')).equals(readFileSync(stored))).toBe(true);
    const f2 = await archiveFetch({
      storage: repo.storage,
      stanza: STANZA,
      walName: segments[1]!,
      destPath: join(dest, 'RECOVERYXLOG'),
      prefetch: 4,
    });
    expect(f2).toMatchObject({ found: true, fromSpool: true });
    const stored2 = join(repo.dir!, ...walSegmentKey(STANZA, segments[1]!).split('/'));
    expect(readFileSync(join(dest, 'RECOVERYXLOG')).equals(readFileSync(stored2))).toBe(true);
    expect(readdirSync(dest).filter((n) => n.includes('pgark-tmp'))).toEqual([]);

    // Not found: exit 1; a timeline history that does not exist: exit 1.
    expect(
      (await runCli(['archive-fetch', '0000000100000000000000FE', join(dest, 'X'), '--repo', repo.dir!]))
        .code,
    ).toBe(1);
    expect(
      (await runCli(['archive-fetch', '00000009.history', join(dest, 'X'), '--repo', repo.dir!])).code,
    ).toBe(1);
    // Errors: exit 2 (or 255 with --fatal-errors): a repository that does not exist, a damaged segment.
    expect(
      (await runCli(['archive-fetch', segments[0]!, join(dest, 'X'), '--repo', join(work, 'nothing')])).code,
    ).toBe(2);
    const damaged = readFileSync(stored2);
    damaged.writeBigUInt64LE(0x1234000n, 8192 * 2 + 8); // page 2's xlp_pageaddr
    writeFileSync(stored2, damaged);
    const bad = await archiveFetch({
      storage: repo.storage,
      stanza: STANZA,
      walName: segments[1]!,
      destPath: join(dest, 'Y'),
      prefetch: 0,
    }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(IntegrityError);
    expect((bad as IntegrityError).code).toBe('INTEGRITY_WAL_INVALID');
    expect(existsSync(join(dest, 'Y'))).toBe(false);
    expect(
      (await runCli(['archive-fetch', segments[1]!, join(dest, 'Y'), '--repo', repo.dir!, '--prefetch', '0']))
        .code,
    ).toBe(2);
    expect(
      (
        await runCli([
          'archive-fetch',
          segments[1]!,
          join(dest, 'Y'),
          '--repo',
          repo.dir!,
          '--prefetch',
          '0',
          '--fatal-errors',
        ])
      ).code,
    ).toBe(255);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
