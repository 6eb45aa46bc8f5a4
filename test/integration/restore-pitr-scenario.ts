/**
 * Point-in-time recovery on one source cluster (one backup, one WAL archive with several marked
 * points), restored several times to different targets: time, lsn, xid, restore point name,
 * immediate; inclusive/exclusive; the three actions; and the refusals before anything is written.
 *
 * Timeline of the source: table t gets phase 'base' (before the backup), then after the backup
 * 'a1' (its own transaction: its xid and the lsn after its commit are recorded), a restore point
 * 'before_b', a pause (the target time lies in it), then 'b'. Oracle per target: which phases exist.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  RecoveryTargetError,
  restoreBackup,
  type BaseBackupResult,
  type RecoveryOptions,
} from '../../src/index';
import { resolveServerUser } from '../../src/local-server';
import type { Major, TestCluster } from '../harness/postgres';
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

export function pitrScenario(major: Major, storageKind: 'fs' | 's3'): void {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let source: TestCluster;
  let bb: BaseBackupResult;
  const marks = {} as { xid: string; lsnAfterA: string; time: string; lsnBeforeA: string };
  const slots: { destroy(): Promise<void> }[] = [];

  beforeAll(async () => {
    cli = await bundleCli(`pitr${major}`);
    repo = await makeRepo(storageKind);
    source = await archivingCluster(major, repo, cli.cli);
    await source.query(`CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL)`);
    await source.query(`INSERT INTO t (phase) SELECT 'base' FROM generate_series(1, 100)`);
    bb = await backup(source, repo);
    await new Promise((r) => setTimeout(r, 1100)); // the target time must lie after the backup's finishedAt
    marks.lsnBeforeA = (await source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
    await source.query('BEGIN');
    await source.query(`INSERT INTO t (phase) SELECT 'a1' FROM generate_series(1, 10)`);
    marks.xid = (await source.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x'))[0]!.x;
    await source.query('COMMIT');
    marks.lsnAfterA = (await source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
    await source.query(`SELECT pg_create_restore_point('before_b')`);
    await new Promise((r) => setTimeout(r, 600));
    marks.time = (
      await source.query<{ t: string }>(
        `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS t`,
      )
    )[0]!.t;
    await new Promise((r) => setTimeout(r, 600));
    await source.query(`INSERT INTO t (phase) SELECT 'b' FROM generate_series(1, 5)`);
    await switchAndArchive(source);
  }, 240_000);

  afterAll(async () => {
    for (const s of slots) await s.destroy().catch(() => undefined);
    await source?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  async function restoreTo(recovery: RecoveryOptions) {
    const slot = restoredSlot(source.binaries, `pitr${major}`);
    slots.push(slot);
    const user = resolveServerUser();
    const r = await restoreBackup({
      storage: repo.storage,
      stanza: 'main',
      targetDir: slot.dataDir,
      archive: { ...repo.spec, cliPath: cli.cli },
      recovery,
      owner: { uid: user.uid, gid: user.gid },
    });
    expect(r.backupId).toBe(bb.backupId);
    return { slot, r };
  }

  async function phases(slot: ReturnType<typeof restoredSlot>): Promise<Record<string, number>> {
    const c = await slot.client();
    const rows = (
      await c.query<{ phase: string; n: number }>('SELECT phase, count(*)::int AS n FROM t GROUP BY phase')
    ).rows;
    return Object.fromEntries(rows.map((x) => [x.phase, x.n]));
  }

  async function promoted(recovery: RecoveryOptions): Promise<Record<string, number>> {
    const { slot } = await restoreTo({ ...recovery, action: 'promote' });
    await slot.start(repo.env);
    const c = await slot.client();
    await waitPromoted(c);
    expect((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
    const p = await phases(slot);
    await slot.destroy();
    return p;
  }

  it('time target (inclusive): rows before exist, rows after do not; promoted', async () => {
    expect(await promoted({ target: { time: marks.time } })).toEqual({ base: 100, a1: 10 });
  });

  it('lsn target, inclusive and exclusive', async () => {
    expect(await promoted({ target: { lsn: marks.lsnAfterA } })).toEqual({ base: 100, a1: 10 });
    expect(await promoted({ target: { lsn: marks.lsnBeforeA }, inclusive: false })).toEqual({ base: 100 });
  });

  it('xid target: inclusive keeps the transaction, exclusive drops it', async () => {
    expect(await promoted({ target: { xid: marks.xid } })).toEqual({ base: 100, a1: 10 });
    expect(await promoted({ target: { xid: marks.xid }, inclusive: false })).toEqual({ base: 100 });
  });

  it('restore point name; action pause leaves the server in recovery, paused', async () => {
    const { slot } = await restoreTo({ target: { name: 'before_b' }, action: 'pause' });
    await slot.start(repo.env);
    const c = await slot.client();
    await waitFor('recovery to pause at the target', async () =>
      (await c.query<{ s: string }>('SELECT pg_get_wal_replay_pause_state() AS s')).rows[0]!.s === 'paused'
        ? true
        : undefined,
    );
    expect((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true);
    expect(await phases(slot)).toEqual({ base: 100, a1: 10 });
    await slot.destroy();
  });

  it('immediate target with action shutdown: the server stops at consistency, recovery.signal kept', async () => {
    const { slot, r } = await restoreTo({ target: { immediate: true }, action: 'shutdown' });
    expect(r.recoverySettings).toMatchObject({
      recovery_target: 'immediate',
      recovery_target_action: 'shutdown',
    });
    // pg_ctl -w may see the server go away before it accepts connections: either outcome is fine here.
    await slot.start(repo.env).catch(() => undefined);
    await waitFor('the server to shut down at the target', async () => (slot.running() ? undefined : true));
    expect(existsSync(join(slot.dataDir, 'recovery.signal'))).toBe(true);
    await slot.destroy();
  });

  it('no target: everything archived is replayed', async () => {
    expect(await promoted({})).toEqual({ base: 100, a1: 10, b: 5 });
  });

  it('refuses targets outside the window before writing anything', async () => {
    for (const recovery of [
      { target: { time: new Date(Date.parse(bb.entry.startedAt) - 3600_000) } },
      { target: { lsn: '7F/0' } },
      { target: { time: new Date(Date.now() + 3600_000) } },
    ] as RecoveryOptions[]) {
      const slot = restoredSlot(source.binaries, `pitr${major}-refused`);
      slots.push(slot);
      const e = await restoreBackup({
        storage: repo.storage,
        targetDir: slot.dataDir,
        archive: { ...repo.spec, cliPath: cli.cli },
        recovery,
      }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(RecoveryTargetError);
      expect((e as RecoveryTargetError).code).toBe('RESTORE_TARGET_OUT_OF_RANGE');
      expect((e as RecoveryTargetError).backups.map((b) => b.backupId)).toContain(bb.backupId);
      expect((e as RecoveryTargetError).walRanges.length).toBeGreaterThan(0);
      expect(existsSync(slot.dataDir)).toBe(false);
    }
  });
}
