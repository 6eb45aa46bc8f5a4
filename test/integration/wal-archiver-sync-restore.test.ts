/**
 * Synchronous mode, judged by a restore (fs and S3 repositories): the archiver (its own process) is the source's only
 * synchronous standby. Clients commit one row per transaction and record every commit the server
 * acknowledged. The source is then stopped at once (immediate: no shutdown checkpoint, no more
 * WAL sent) and its data directory deleted; the archiver is SIGKILLed (its tail stays as chunk
 * objects). A restore from the repository only (base backup by runBaseBackup, WAL by
 * restore_command = `pgark archive-fetch`, the partial tail by restoreBackup's walTail) must hold
 * every acknowledged row.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreBackup } from '../../src/index';
import { chownTree, resolveServerUser, stopServer } from '../../src/local-server';
import { startCluster, type TestCluster } from '../harness/postgres';
import { spawnArchiver } from '../harness/archiver-process';
import {
  backup,
  bundleCli,
  makeRepo,
  restoredSlot,
  waitFor,
  waitPromoted,
  type TestRepo,
} from './restore-helpers';

/** The repository plus how the archiver child reaches it. */
async function makeArchiverRepo(
  kind: 'fs' | 's3',
): Promise<{ repo: TestRepo; childStorage: Record<string, unknown> }> {
  const repo = await makeRepo(kind);
  return { repo, childStorage: kind === 'fs' ? { fsRoot: repo.spec.repo } : { s3: repo.s3StorageOptions } };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(['fs', 's3'] as const)(
  'synchronous archiver: every acknowledged commit survives the loss of the source (PG17, %s)',
  (kind) => {
    let cluster: TestCluster;
    let repo: TestRepo;
    let childStorage: Record<string, unknown>;
    let cli: Awaited<ReturnType<typeof bundleCli>>;
    const slots: { destroy(): Promise<void> }[] = [];

    beforeAll(async () => {
      cli = await bundleCli('walsyncr');
      ({ repo, childStorage } = await makeArchiverRepo(kind));
      cluster = await startCluster({ major: 17, settings: { wal_keep_size: '1GB' } });
    }, 120_000);
    afterAll(async () => {
      for (const s of slots) await s.destroy().catch(() => undefined);
      await cluster?.destroy();
      await repo?.cleanup();
      cli?.cleanup();
    });

    it('restores every row whose commit was acknowledged', async () => {
      const p = spawnArchiver({
        connection: { ...cluster.connectionConfig({ user: cluster.replicationUser }), ssl: 'disable' },
        slot: 'pgark_sync',
        ...childStorage,
        synchronous: true,
      });
      await waitFor('the archiver to flush', async () => (p.flushedLsn() > 0n ? true : undefined));
      await cluster.query('CREATE TABLE acked (id bigint PRIMARY KEY, client int, v text)');
      const bb = await backup(cluster, repo);
      await cluster.query("ALTER SYSTEM SET synchronous_standby_names = 'pgark_sync'");
      await cluster.query('SELECT pg_reload_conf()');
      await waitFor('the archiver to be the synchronous standby', async () => {
        const rows = await cluster.query<{ sync_state: string }>(
          "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgark_sync'",
        );
        return rows[0]?.sync_state === 'sync' ? true : undefined;
      });

      const acked: number[] = [];
      let stopping = false;
      let serverStopping = false;
      const clients = await Promise.all(
        [0, 1, 2].map(async (n) => {
          const c = new pg.Client(cluster.connectionConfig());
          c.on('error', () => undefined);
          await c.connect();
          return { n, c };
        }),
      );
      const loops = clients.map(async ({ n, c }) => {
        for (let i = 0; !stopping; i++) {
          const id = n * 10_000_000 + i;
          try {
            // One transaction per row; some bigger, so segments fill and complete while commits wait.
            await c.query(
              'INSERT INTO acked SELECT $1::bigint, $2::int, repeat(md5($1::bigint::text), $3::int)',
              [id, n, i % 10 === 0 ? 2000 : 4],
            );
          } catch (e) {
            if (!serverStopping) throw e;
            return; // the server went away: this commit was not acknowledged
          }
          acked.push(id);
        }
      });
      await sleep(3000 + Math.floor(Math.random() * 2000));
      // The source is lost at once: immediate stop (SIGQUIT to the postmaster, backends die, no checkpoint).
      serverStopping = true;
      const pid = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      await stopServer({
        binaries: cluster.binaries,
        user: cluster.serverUser,
        dataDir: cluster.dataDir,
        mode: 'immediate',
      });
      stopping = true;
      await Promise.all(loops);
      for (const { c } of clients) await c.end().catch(() => undefined);
      // Every acknowledgement the clients received (one sent just before the stop may arrive after it).
      const ackedAtStop = [...acked];
      expect(pid).toBeGreaterThan(0);
      expect(ackedAtStop.length).toBeGreaterThan(20);
      p.kill('SIGKILL');
      expect(await p.exited).toBe('SIGKILL');
      await cluster.destroy(); // the source's data directory is gone

      if (kind === 'fs') chownTree(repo.spec.repo, resolveServerUser()); // restore_command runs as the server user
      const user = resolveServerUser();
      const slot = restoredSlot(cluster.binaries, `walsyncr-${kind}`);
      slots.push(slot);
      const r = await restoreBackup({
        storage: repo.storage,
        stanza: 'main',
        targetDir: slot.dataDir,
        archive: { ...repo.spec, cliPath: cli.cli },
        recovery: { timeline: 'latest' },
        owner: { uid: user.uid, gid: user.gid },
      });
      expect(r.backupId).toBe(bb.backupId);
      expect(r.walTail?.files.length).toBeGreaterThanOrEqual(1);
      await slot.start(repo.env);
      const c = await slot.client();
      await waitPromoted(c);
      const restored = new Set(
        (await c.query<{ id: string }>('SELECT id::text AS id FROM acked')).rows.map((x) => Number(x.id)),
      );
      const missing = ackedAtStop.filter((id) => !restored.has(id));
      expect(missing, `${missing.length} of ${ackedAtStop.length} acknowledged rows missing`).toEqual([]);
      expect(restored.size).toBeGreaterThanOrEqual(ackedAtStop.length);
      await slot.destroy();
    }, 300_000);
  },
);
