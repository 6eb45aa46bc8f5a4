/**
 * PITR across a promotion, from the streaming archiver's repository only: a base backup of the
 * primary (runBaseBackup) and the WAL an archiver streamed from the standby (timeline 1, then
 * timeline 2 after the standby's promotion, in the same process) land in one stanza. The standby
 * is thrown away; restoreBackup with restore_command = `pgark archive-fetch` and
 * recovery_target_timeline 'latest' reaches timeline 2: every row written after the promotion is
 * there, including the last one, which lives only in timeline 2's partial tail (placed into
 * pg_wal by restoreBackup's walTail). Without walTail that row is missing (the oracle that the
 * tail was needed); with recovery_target_timeline 1 nothing is placed (an old timeline's partial
 * is never used).
 */
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  restoreBackup,
  startWalArchiver,
  type BaseBackupResult,
  type RestoreBackupOptions,
} from '../../src/index';
import { formatLsn, parseLsn } from '../../src/lsn';
import {
  chownTree,
  promote,
  resolveServerUser,
  runAsUser,
  startServer,
  stopServer,
} from '../../src/local-server';
import { defaultSettings, freePort, startCluster, TEST_ROOT, type TestCluster } from '../harness/postgres';
import {
  backup,
  bundleCli,
  makeRepo,
  restoredSlot,
  waitFor,
  waitPromoted,
  type TestRepo,
} from './restore-helpers';

const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';

describe('PITR across a promotion from the streaming archive (PG15, fs)', () => {
  let primary: TestCluster;
  let repo: TestRepo;
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let standbyRoot: string;
  let standbyData: string;
  let bb: BaseBackupResult;
  const slots: { destroy(): Promise<void> }[] = [];

  beforeAll(async () => {
    cli = await bundleCli('walpitr');
    repo = await makeRepo('fs');
    primary = await startCluster({ major: 15, settings: { wal_keep_size: '1GB' } });
    standbyRoot = join(TEST_ROOT, `standby15r-${process.pid}-${randomBytes(4).toString('hex')}`);
    standbyData = join(standbyRoot, 'data');
    mkdirSync(join(standbyRoot, 'sock'), { recursive: true });
    writeFileSync(join(standbyRoot, 'server.log'), '');
    chownTree(standbyRoot, primary.serverUser);
    const r = await runAsUser(
      PG_BASEBACKUP,
      [
        '-d',
        `host=127.0.0.1 port=${primary.port} user=${primary.replicationUser.user}`,
        '-D',
        standbyData,
        '-R',
        '-X',
        'stream',
        '-c',
        'fast',
      ],
      primary.serverUser,
      {
        env: { PGPASSWORD: primary.replicationUser.password, PATH: process.env.PATH ?? '' },
        timeoutMs: 120_000,
      },
    );
    if (r.code !== 0) throw new Error(`pg_basebackup failed: ${r.stderr}`);
  }, 180_000);

  afterAll(async () => {
    for (const s of slots) await s.destroy().catch(() => undefined);
    if (standbyData)
      await stopServer({
        binaries: primary.binaries,
        user: primary.serverUser,
        dataDir: standbyData,
        mode: 'immediate',
      }).catch(() => undefined);
    await primary?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  it('reaches timeline 2 with every row written after the promotion, the last one from the partial tail', async () => {
    const standbyPort = await freePort();
    const standbyLog = join(standbyRoot, 'server.log');
    await startServer({
      binaries: primary.binaries,
      user: primary.serverUser,
      dataDir: standbyData,
      port: standbyPort,
      socketDir: join(standbyRoot, 'sock'),
      logFile: standbyLog,
      settings: { ...defaultSettings(15), wal_keep_size: '1GB' },
    });
    const repl = {
      user: primary.replicationUser.user,
      password: primary.replicationUser.password,
      ssl: 'disable' as const,
      host: '127.0.0.1',
    };
    const archiver = startWalArchiver({
      connection: { ...repl, port: standbyPort },
      storage: repo.storage,
      stanza: 'main',
      slot: 'arch_standby',
      createSlot: true,
      flushIntervalMs: 300,
      statusIntervalMs: 300,
    });
    await waitFor('the archiver to stream', async () =>
      archiver.stats().state === 'streaming' ? true : undefined,
    );

    // The backup is taken after the archiver started: the archive covers it from its start.
    await primary.query('CREATE TABLE before_backup AS SELECT g FROM generate_series(1, 1000) g');
    bb = await backup(primary, repo);
    await primary.query(
      'CREATE TABLE before_promotion AS SELECT g, repeat(md5(g::text), 10) v FROM generate_series(1, 30000) g',
    );
    const [{ lsn }] = (await primary.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    )) as [{ lsn: string }];
    await waitFor(`the standby archiver to reach ${lsn}`, async () =>
      archiver.stats().flushedLsn >= parseLsn(lsn) ? true : undefined,
    );

    await promote({
      binaries: primary.binaries,
      user: primary.serverUser,
      dataDir: standbyData,
      logFile: standbyLog,
    });
    const sb = new pg.Client({
      host: '127.0.0.1',
      port: standbyPort,
      user: primary.superuser.user,
      password: primary.superuser.password,
      database: 'postgres',
    });
    await sb.connect();
    await sb.query(
      'CREATE TABLE after_promotion AS SELECT g, repeat(md5(g::text), 10) v FROM generate_series(1, 60000) g',
    );
    await sb.query('CREATE TABLE tail_row (id int)');
    await sb.query('INSERT INTO tail_row VALUES (42)');
    const end = parseLsn(
      (await sb.query<{ l: string }>('SELECT pg_current_wal_flush_lsn()::text AS l')).rows[0]!.l,
    );
    await sb.end();
    await waitFor(`the archiver to follow to timeline 2 / ${formatLsn(end)}`, async () =>
      archiver.stats().timeline === 2 && archiver.stats().flushedLsn >= end ? true : undefined,
    );
    await archiver.stop();
    expect((await archiver.done).timeline).toBe(2);
    // The standby is thrown away: only the repository is left.
    await stopServer({
      binaries: primary.binaries,
      user: primary.serverUser,
      dataDir: standbyData,
      mode: 'immediate',
    });
    expect(await repo.storage.head('stanzas/main/wal/history/00000002.history')).toBeDefined();
    chownTree(repo.spec.repo, resolveServerUser()); // restore_command runs as the server user

    const user = resolveServerUser();
    const restore = async (extra: Partial<RestoreBackupOptions>) => {
      const slot = restoredSlot(primary.binaries, 'walpitr');
      slots.push(slot);
      const r = await restoreBackup({
        storage: repo.storage,
        stanza: 'main',
        targetDir: slot.dataDir,
        archive: { ...repo.spec, cliPath: cli.cli },
        recovery: { timeline: 'latest' },
        owner: { uid: user.uid, gid: user.gid },
        ...extra,
      });
      expect(r.backupId).toBe(bb.backupId);
      return { slot, r };
    };

    // 1. latest, with the tail: timeline 2 reached, every row there.
    {
      const { slot, r } = await restore({});
      expect(r.walTail?.files.length).toBeGreaterThanOrEqual(1);
      expect(r.walTail!.files.every((f) => f.walName.startsWith('00000002'))).toBe(true);
      expect(r.walTail!.endLsn! >= end).toBe(true);
      await slot.start(repo.env);
      const c = await slot.client();
      await waitPromoted(c);
      const counts = (
        await c.query<{ a: number; b: number; t: number }>(
          'SELECT (SELECT count(*) FROM before_promotion)::int AS b, (SELECT count(*) FROM after_promotion)::int AS a, (SELECT count(*) FROM tail_row)::int AS t',
        )
      ).rows[0]!;
      expect(counts).toEqual({ a: 60000, b: 30000, t: 1 });
      // Recovery ended on timeline 2, so the promoted server is on a later one.
      const tli = parseInt(
        (
          await c.query<{ w: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS w')
        ).rows[0]!.w.substring(0, 8),
        16,
      );
      expect(tli).toBeGreaterThan(bb.entry.endTimeline);
      expect(tli).toBeGreaterThanOrEqual(3);
      await slot.destroy();
    }

    // 2. Without the tail, the last row (only in the partial) is lost: the tail was needed.
    {
      const { slot, r } = await restore({ walTail: false });
      expect(r.walTail).toBeUndefined();
      await slot.start(repo.env);
      const c = await slot.client();
      await waitPromoted(c);
      const t = (
        await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'tail_row'")
      ).rows[0]!.n;
      const rows = t
        ? (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM tail_row')).rows[0]!.n
        : 0;
      expect(rows).toBe(0);
      await slot.destroy();
    }

    // 3. Recovery that stays on timeline 1: the old timeline's partial is never placed.
    {
      const { slot, r } = await restore({ recovery: { timeline: 1 } });
      expect(r.walTail?.files).toEqual([]);
      expect(r.walTail?.skipped).toBe('other-timeline');
      await slot.destroy();
    }
  }, 400_000);
});
