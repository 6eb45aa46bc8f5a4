/**
 * Full restore on every major 14-18, diagonally across both storage drivers: a backup, more writes
 * archived after it through `pgark archive-push`, restoreBackup with restore_command through
 * `pgark archive-fetch`; the restored cluster starts, promotes at the end of the archive, and its
 * data equals the source's (per-table checksums).
 *   14 fs, 15 s3, 16 fs, 17 s3, 18 fs
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreBackup } from '../../src/index';
import { resolveServerUser } from '../../src/local-server';
import { tableChecksums } from '../harness/datagen';
import type { Major } from '../harness/postgres';
import {
  archivingCluster,
  backup,
  bundleCli,
  makeRepo,
  restoredSlot,
  switchAndArchive,
  waitPromoted,
} from './restore-helpers';

const DIAGONAL: [Major, 'fs' | 's3'][] = [
  [14, 'fs'],
  [15, 's3'],
  [16, 'fs'],
  [17, 's3'],
  [18, 'fs'],
];

describe('full restore: backup + archived wal, every major', () => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  beforeAll(async () => {
    cli = await bundleCli('restore-matrix');
  });
  afterAll(() => cli?.cleanup());

  for (const [major, kind] of DIAGONAL) {
    it(`PG${major} on ${kind}`, async () => {
      const repo = await makeRepo(kind);
      const source = await archivingCluster(major, repo, cli.cli);
      const slot = restoredSlot(source.binaries, `full${major}`);
      try {
        await source.query(
          `CREATE TABLE items (id bigint PRIMARY KEY, v text, at timestamptz DEFAULT now())`,
        );
        await source.query(
          `INSERT INTO items (id, v) SELECT g, md5(g::text) FROM generate_series(1, 20000) g`,
        );
        await backup(source, repo);
        // After the backup: reach the restored copy only through the archive.
        await source.query(
          `INSERT INTO items (id, v) SELECT g, md5(g::text) FROM generate_series(20001, 30000) g`,
        );
        await source.query(`UPDATE items SET v = 'changed' WHERE id % 7 = 0`);
        await source.query(`DELETE FROM items WHERE id % 11 = 0`);
        await source.query(`CREATE TABLE later AS SELECT g AS id FROM generate_series(1, 500) g`);
        await switchAndArchive(source);
        const expected = await tableChecksums((sql) => source.query(sql), ['public.items', 'public.later']);
        await source.stop();

        const user = resolveServerUser();
        const r = await restoreBackup({
          storage: repo.storage,
          targetDir: slot.dataDir,
          archive: { ...repo.spec, cliPath: cli.cli },
          owner: { uid: user.uid, gid: user.gid },
        });
        expect(r.signalFile).toBe('recovery.signal');
        expect(existsSync(join(slot.dataDir, 'backup_manifest'))).toBe(true);
        expect(statSync(slot.dataDir).mode & 0o777).toBe(0o700);
        expect(statSync(join(slot.dataDir, 'PG_VERSION')).uid).toBe(user.uid);
        // No secret in the settings: credentials stay in the server's environment.
        expect(JSON.stringify(r.recoverySettings)).not.toContain(repo.env.AWS_SECRET_ACCESS_KEY ?? '\u0000');
        await slot.start(repo.env);
        const c = await slot.client();
        await waitPromoted(c);
        const got = await tableChecksums(
          async (sql) => (await c.query(sql)).rows,
          ['public.items', 'public.later'],
        );
        expect(got).toEqual(expected);
      } finally {
        await slot.destroy();
        await source.destroy();
        await repo.cleanup();
      }
    }, 300_000);
  }
});
