/**
 * Restore-point lookup through every kind of WAL object a restore replays (PG14, fs): whole
 * segments stored compressed (gzip, as another archiver may store them; read back through
 * archive-wal-object), then the streaming archiver's durable partial tail (`.partial` objects that
 * restore places into pg_wal). A restore point in a compressed segment and one in the partial tail
 * are found and reached; a name that is nowhere is refused before anything is written after the
 * scan read all of it.
 */
import { existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreBackup, RecoveryTargetError, type PgarkEvent } from '../../src/index';
import { parseRepositoryKey, walPrefix, walSegmentKey } from '../../src/archive/repo-layout';
import { chownTree, resolveServerUser } from '../../src/local-server';
import type { ArchiverProcess } from '../harness/archiver-process';
import type { TestCluster } from '../harness/postgres';
import {
  bundleCli,
  makeRepo,
  restoredSlot,
  STANZA,
  stopArchiverAtCurrentLsn,
  streamArchivedCluster,
  waitPromoted,
  type TestRepo,
} from './restore-helpers';

describe('restore point lookup in compressed segments and the partial tail (PG14, fs)', () => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let cluster: TestCluster;
  let compressed = 0;
  let p: ArchiverProcess;
  const slots: { destroy(): Promise<void> }[] = [];

  beforeAll(async () => {
    cli = await bundleCli('target-tail');
    repo = await makeRepo('fs');
    ({ cluster, archiver: p } = await streamArchivedCluster(14, repo, 'pgark_target_tail'));
    await cluster.query(`INSERT INTO t (phase) SELECT 'a' FROM generate_series(1, 10)`);
    await cluster.query(`SELECT pg_create_restore_point('in_segment')`);
    await cluster.query(`SELECT pg_switch_wal()`); // 'in_segment' ends up in a whole archived segment
    await cluster.query(`INSERT INTO t (phase) SELECT 'b' FROM generate_series(1, 5)`);
    await cluster.query(`SELECT pg_create_restore_point('in_tail')`);
    await cluster.query(`INSERT INTO t (phase) SELECT 'c' FROM generate_series(1, 3)`);
    await stopArchiverAtCurrentLsn(cluster, p);
    // Every whole segment stored gzip-compressed instead.
    const keys: string[] = [];
    for await (const o of repo.storage.list(walPrefix(STANZA))) keys.push(o.key);
    for (const key of keys) {
      const k = parseRepositoryKey(key);
      if (k?.kind !== 'wal-segment' || k.compression) continue;
      const chunks: Buffer[] = [];
      for await (const c of await repo.storage.get(key)) chunks.push(c as Buffer);
      await repo.storage.put(walSegmentKey(STANZA, k.walName, 'gz'), gzipSync(Buffer.concat(chunks)));
      await repo.storage.delete([key]);
      compressed++;
    }
    chownTree(repo.spec.repo, resolveServerUser()); // restore_command runs as the server user
  }, 240_000);

  afterAll(async () => {
    for (const s of slots) await s.destroy().catch(() => undefined);
    await cluster?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  async function restoreTo(name: string) {
    const slot = restoredSlot(cluster.binaries, 'target-tail');
    slots.push(slot);
    const user = resolveServerUser();
    const events: PgarkEvent[] = [];
    const result = await restoreBackup({
      storage: repo.storage,
      targetDir: slot.dataDir,
      archive: { ...repo.spec, cliPath: cli.cli },
      recovery: { target: { name }, action: 'promote' },
      owner: { uid: user.uid, gid: user.gid },
      onEvent: (e) => events.push(e),
    }).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    const scan = events.find((e) => e.type === 'restore.target-scan') as
      Extract<PgarkEvent, { type: 'restore.target-scan' }> | undefined;
    return { slot, result, scan };
  }

  async function phases(slot: ReturnType<typeof restoredSlot>): Promise<Record<string, number>> {
    await slot.start(repo.env);
    const c = await slot.client();
    await waitPromoted(c);
    const rows = (
      await c.query<{ phase: string; n: number }>('SELECT phase, count(*)::int AS n FROM t GROUP BY phase')
    ).rows;
    return Object.fromEntries(rows.map((x) => [x.phase, x.n]));
  }

  it('the archive holds compressed whole segments', () => {
    expect(compressed).toBeGreaterThanOrEqual(2);
  });

  it('a restore point in a compressed segment is found and reached', async () => {
    const { slot, result, scan } = await restoreTo('in_segment');
    expect(result.ok).toBe(true);
    expect(scan?.verdict).toBe('found');
    expect(await phases(slot)).toEqual({ base: 100, a: 10 });
    await slot.destroy();
  });

  it('a restore point in the partial tail is found and reached', async () => {
    const { slot, result, scan } = await restoreTo('in_tail');
    expect(result.ok && result.r.walTail?.files.length).toBeGreaterThanOrEqual(1);
    expect(scan?.verdict).toBe('found');
    expect(await phases(slot)).toEqual({ base: 100, a: 10, b: 5 });
    await slot.destroy();
  });

  it('a name that is nowhere is refused after reading all of it', async () => {
    const { slot, result, scan } = await restoreTo('nowhere');
    expect(result.ok).toBe(false);
    expect((result as { e: unknown }).e).toBeInstanceOf(RecoveryTargetError);
    expect((result as { e: RecoveryTargetError }).e.code).toBe('RESTORE_TARGET_OUT_OF_RANGE');
    expect(scan?.verdict).toBe('not-found');
    expect(scan!.segmentsScanned).toBeGreaterThanOrEqual(3); // backup's segment, the compressed one, the tail
    expect(existsSync(slot.dataDir)).toBe(false);
  });
});
