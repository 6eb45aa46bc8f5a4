/**
 * Restore-point and xid targets are looked up in the WAL the restore would replay (issue 7): a
 * target no backup can reach is refused before anything is written, with RecoveryTargetError
 * (RESTORE_TARGET_OUT_OF_RANGE) listing the backups and WAL ranges; a target that exists picks the
 * newest backup that reaches it, and the restore reaches it. PG15 and PG18, fs repository.
 *
 * Source timeline: 'base' rows, restore point rp_before_backup, backup 1, transaction 'a1' (its xid
 * kept), restore point after_first, 'b' rows, backup 2, restore point after_second, 'c' rows.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RecoveryTargetError,
  restoreBackup,
  runBaseBackup,
  type BaseBackupResult,
  type PgarkEvent,
  type RecoveryOptions,
} from '../../src/index';
import { resolveServerUser, shellQuote } from '../../src/local-server';
import type { TestCluster } from '../harness/postgres';
import {
  archivingCluster,
  backup,
  bundleCli,
  makeRepo,
  restoredSlot,
  switchAndArchive,
  waitFor,
  waitPromoted,
  type TestRepo,
} from './restore-helpers';

describe.each([15, 18] as const)('recovery target lookup in the wal, PG%i', (major) => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let source: TestCluster;
  let bb1: BaseBackupResult;
  let bb2: BaseBackupResult;
  let xid = '';
  const slots: { destroy(): Promise<void> }[] = [];

  beforeAll(async () => {
    cli = await bundleCli(`target-exists${major}`);
    repo = await makeRepo('fs');
    source = await archivingCluster(major, repo, cli.cli);
    await source.query(`CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL)`);
    await source.query(`INSERT INTO t (phase) SELECT 'base' FROM generate_series(1, 50)`);
    await source.query(`SELECT pg_create_restore_point('rp_before_backup')`);
    bb1 = await backup(source, repo);
    const pg = (await import('pg')).default;
    const c = new pg.Client(source.connectionConfig());
    await c.connect();
    await c.query('BEGIN');
    await c.query(`INSERT INTO t (phase) SELECT 'a1' FROM generate_series(1, 10)`);
    xid = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
    await c.query('COMMIT');
    await c.end();
    await source.query(`SELECT pg_create_restore_point('after_first')`);
    await source.query(`INSERT INTO t (phase) SELECT 'b' FROM generate_series(1, 5)`);
    bb2 = await backup(source, repo);
    await source.query(`SELECT pg_create_restore_point('after_second')`);
    await source.query(`INSERT INTO t (phase) SELECT 'c' FROM generate_series(1, 3)`);
    await switchAndArchive(source);
  }, 240_000);

  afterAll(async () => {
    for (const s of slots) await s.destroy().catch(() => undefined);
    await source?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  async function restoreTo(
    recovery: RecoveryOptions,
    extra: { checkTargetExists?: boolean; settings?: Record<string, string>; backupId?: string } = {},
  ) {
    const slot = restoredSlot(source.binaries, `target-exists${major}`);
    slots.push(slot);
    const user = resolveServerUser();
    const events: PgarkEvent[] = [];
    const result = await restoreBackup({
      storage: repo.storage,
      stanza: 'main',
      targetDir: slot.dataDir,
      archive: { ...repo.spec, cliPath: cli.cli },
      recovery,
      owner: { uid: user.uid, gid: user.gid },
      onEvent: (e) => events.push(e),
      ...extra,
    }).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    return { slot, result, events };
  }

  async function phases(slot: ReturnType<typeof restoredSlot>): Promise<Record<string, number>> {
    if (!slot.running()) await slot.start(repo.env);
    const c = await slot.client();
    await waitPromoted(c);
    const rows = (
      await c.query<{ phase: string; n: number }>('SELECT phase, count(*)::int AS n FROM t GROUP BY phase')
    ).rows;
    return Object.fromEntries(rows.map((x) => [x.phase, x.n]));
  }

  function expectRefused(result: { ok: boolean; e?: unknown }, dataDir: string): void {
    expect(result.ok).toBe(false);
    const e = result.e as RecoveryTargetError;
    expect(e).toBeInstanceOf(RecoveryTargetError);
    expect(e.code).toBe('RESTORE_TARGET_OUT_OF_RANGE');
    expect(e.backups.map((b) => b.backupId)).toEqual(expect.arrayContaining([bb1.backupId, bb2.backupId]));
    expect(e.walRanges.length).toBeGreaterThan(0);
    expect(existsSync(dataDir)).toBe(false); // nothing written
  }

  it('a restore point after the newest backup: that backup, found by reading its wal; the restore stops there', async () => {
    const { slot, result, events } = await restoreTo({ target: { name: 'after_second' }, action: 'promote' });
    expect(result.ok && result.r.backupId).toBe(bb2.backupId);
    const scans = events.filter((e) => e.type === 'restore.target-scan');
    expect(scans).toHaveLength(1);
    expect(scans[0]).toMatchObject({ backupId: bb2.backupId, verdict: 'found' });
    expect((scans[0] as { bytesScanned: number }).bytesScanned).toBeGreaterThan(0);
    expect(await phases(slot)).toEqual({ base: 50, a1: 10, b: 5 });
    await slot.destroy();
  });

  it('a restore point between the backups: the older backup is chosen, and the restore stops there', async () => {
    const { slot, result, events } = await restoreTo({ target: { name: 'after_first' }, action: 'promote' });
    expect(result.ok && result.r.backupId).toBe(bb1.backupId);
    const scans = events.filter((e) => e.type === 'restore.target-scan');
    expect(scans.map((s) => (s as { verdict: string }).verdict)).toEqual(['not-found', 'found']);
    expect(await phases(slot)).toEqual({ base: 50, a1: 10 });
    await slot.destroy();
  });

  it('a restore point never created is refused before anything is written', async () => {
    const { slot, result } = await restoreTo({ target: { name: 'never_created' } });
    expectRefused(result, slot.dataDir);
  });

  it('a restore point created before the oldest backup is refused', async () => {
    const { slot, result } = await restoreTo({ target: { name: 'rp_before_backup' } });
    expectRefused(result, slot.dataDir);
  });

  it('an xid that has not ended yet is refused', async () => {
    const future = (await source.query<{ x: string }>('SELECT (txid_current() + 1000)::text AS x'))[0]!.x;
    const { slot, result } = await restoreTo({ target: { xid: future } });
    expectRefused(result, slot.dataDir);
  });

  it('an xid that committed after a backup is accepted (the backup before it), and the restore stops after it', async () => {
    const { slot, result } = await restoreTo({ target: { xid }, action: 'promote' });
    expect(result.ok && result.r.backupId).toBe(bb1.backupId);
    expect(await phases(slot)).toEqual({ base: 50, a1: 10 });
    await slot.destroy();
  });

  it('checkTargetExists: false skips the lookup', async () => {
    const { slot, result, events } = await restoreTo(
      { target: { name: 'never_created' } },
      { checkTargetExists: false },
    );
    expect(result.ok && result.r.backupId).toBe(bb2.backupId);
    expect(events.some((e) => e.type === 'restore.target-scan')).toBe(false);
    expect(existsSync(slot.dataDir)).toBe(true);
    await slot.destroy();
  });

  it('a restore point written while a backup ran lies before its end: that backup is refused, the older one chosen', async () => {
    const size = Number(
      (await source.query<{ s: string }>('SELECT sum(pg_database_size(oid))::text AS s FROM pg_database'))[0]!
        .s,
    );
    const running = runBaseBackup({
      connection: {
        host: source.host,
        port: source.port,
        user: source.replicationUser.user,
        password: source.replicationUser.password,
        ssl: 'disable',
      },
      storage: repo.storage,
      stanza: 'main',
      checkpoint: 'fast',
      maxRateKbps: Math.max(32, Math.floor(size / 1024 / 4)), // about 4 s of streaming
    });
    await waitFor('the backup to stream files', async () =>
      (await source.query<{ p: string }>('SELECT phase AS p FROM pg_stat_progress_basebackup'))[0]?.p ===
      'streaming database files'
        ? true
        : undefined,
    );
    await source.query(`SELECT pg_create_restore_point('during_backup')`);
    const bb3 = await running;
    await switchAndArchive(source);

    const exact = await restoreTo({ target: { name: 'during_backup' } }, { backupId: bb3.backupId });
    expectRefused(exact.result, exact.slot.dataDir);
    expect(exact.events.find((e) => e.type === 'restore.target-scan')).toMatchObject({ verdict: 'before' });

    const { slot, result, events } = await restoreTo({ target: { name: 'during_backup' } });
    expect(result.ok && result.r.backupId).toBe(bb2.backupId);
    expect(
      events.filter((e) => e.type === 'restore.target-scan').map((e) => (e as { verdict: string }).verdict),
    ).toEqual(['before', 'found']);
    await slot.destroy();
  });

  // Last: it archives a timeline 2 into the repository, which the tests above do not expect.
  it('a restore point on a later timeline is found along the timeline history', async () => {
    const archiveCommand = `${shellQuote(process.execPath)} ${shellQuote(cli.cli)} archive-push %p ${repo.cliArgs.map(shellQuote).join(' ')}`;
    const first = await restoreTo(
      { target: { name: 'after_second' }, action: 'promote' },
      { settings: { archive_mode: 'on', archive_command: archiveCommand, archive_timeout: '0' } },
    );
    expect(first.result.ok).toBe(true);
    expect(await phases(first.slot)).toEqual({ base: 50, a1: 10, b: 5 }); // promoted: timeline 2
    const c = await first.slot.client();
    expect(
      (await c.query<{ t: number }>('SELECT timeline_id AS t FROM pg_control_checkpoint()')).rows[0]!.t,
    ).toBe(2);
    await c.query(`INSERT INTO t (phase) SELECT 'tl2' FROM generate_series(1, 4)`);
    await c.query(`SELECT pg_create_restore_point('on_tl2')`);
    await c.query(`INSERT INTO t (phase) SELECT 'tl2_after' FROM generate_series(1, 2)`);
    const walfile = (await c.query<{ w: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS w')).rows[0]!.w;
    await waitFor(`archiving of ${walfile}`, async () => {
      const s = (
        await c.query<{ last: string | null }>('SELECT last_archived_wal AS last FROM pg_stat_archiver')
      ).rows[0];
      return s?.last && s.last >= walfile ? true : undefined;
    });
    await first.slot.destroy();

    const { slot, result, events } = await restoreTo({ target: { name: 'on_tl2' }, action: 'promote' });
    expect(result.ok && result.r.backupId).toBe(bb2.backupId);
    // The backup taken on timeline 1 after the fork cannot follow timeline 2 (nothing read); bb2 can.
    expect(events.filter((e) => e.type === 'restore.target-scan').at(-1)).toMatchObject({
      backupId: bb2.backupId,
      verdict: 'found',
    });
    expect(await phases(slot)).toEqual({ base: 50, a1: 10, b: 5, tl2: 4 });
    await slot.destroy();
    // On timeline 1 alone it does not exist.
    const tl1 = await restoreTo({ target: { name: 'on_tl2' }, timeline: 1 });
    expectRefused(tl1.result, tl1.slot.dataDir);
  });
});
