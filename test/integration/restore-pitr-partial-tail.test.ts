/**
 * A recovery target inside the archive's durable partial tail (PG15, fs): the streaming archiver
 * holds the newest, incomplete segment as `.partial` objects only (no segment is complete after
 * the rows of interest). The planner counts that tail in the window because restore places it
 * into pg_wal (src/archive/wal-tail.ts), so an LSN target in it is accepted and reached; with the
 * tail turned off (walTail: false) the same target lies after the window and is refused before
 * anything is written. Oracle: the promoted copy holds the rows before the target only.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn, restoreBackup, RecoveryTargetError } from '../../src/index';
import { chownTree, resolveServerUser } from '../../src/local-server';
import type { TestCluster } from '../harness/postgres';
import {
  bundleCli,
  makeRepo,
  restoredSlot,
  stopArchiverAtCurrentLsn,
  streamArchivedCluster,
  waitPromoted,
  type TestRepo,
} from './restore-helpers';

describe('a recovery target inside the partial tail of the archive (PG15, fs)', () => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let cluster: TestCluster;
  let target: string;
  const slots: { destroy(): Promise<void> }[] = [];

  beforeAll(async () => {
    cli = await bundleCli('pitr-tail');
    repo = await makeRepo('fs');
    const { cluster: c, archiver: p } = await streamArchivedCluster(15, repo, 'pgark_tail');
    cluster = c;
    await cluster.query(`INSERT INTO t (phase) SELECT 'a' FROM generate_series(1, 10)`);
    target = (await cluster.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
    await cluster.query(`INSERT INTO t (phase) SELECT 'b' FROM generate_series(1, 5)`);
    await stopArchiverAtCurrentLsn(cluster, p);
    chownTree(repo.spec.repo, resolveServerUser()); // restore_command runs as the server user
  }, 240_000);

  afterAll(async () => {
    for (const s of slots) await s.destroy().catch(() => undefined);
    await cluster?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  it('without the tail the target lies after the window and is refused before writing', async () => {
    const slot = restoredSlot(cluster.binaries, 'pitr-tail-refused');
    slots.push(slot);
    const e = await restoreBackup({
      storage: repo.storage,
      targetDir: slot.dataDir,
      archive: { ...repo.spec, cliPath: cli.cli },
      recovery: { target: { lsn: target } },
      walTail: false,
    }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(RecoveryTargetError);
    expect((e as RecoveryTargetError).code).toBe('RESTORE_TARGET_OUT_OF_RANGE');
    expect(existsSync(slot.dataDir)).toBe(false);
  });

  it('with the tail the target is accepted and reached', async () => {
    const slot = restoredSlot(cluster.binaries, 'pitr-tail');
    slots.push(slot);
    const user = resolveServerUser();
    const r = await restoreBackup({
      storage: repo.storage,
      targetDir: slot.dataDir,
      archive: { ...repo.spec, cliPath: cli.cli },
      recovery: { target: { lsn: target }, action: 'promote' },
      owner: { uid: user.uid, gid: user.gid },
    });
    expect(r.walTail?.files.length).toBeGreaterThanOrEqual(1);
    expect(parseLsn(r.plan!.windowEnd.lsn)).toBeGreaterThanOrEqual(parseLsn(target));
    await slot.start(repo.env);
    const c = await slot.client();
    await waitPromoted(c);
    const rows = (
      await c.query<{ phase: string; n: number }>(
        'SELECT phase, count(*)::int AS n FROM t GROUP BY phase ORDER BY phase',
      )
    ).rows;
    expect(rows).toEqual([
      { phase: 'a', n: 10 },
      { phase: 'base', n: 100 },
    ]);
    await slot.destroy();
  });
});
