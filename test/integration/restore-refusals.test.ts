/**
 * What a restore refuses (PG15, fs): a non-empty target (and `clean`), the directory of a running
 * server (even with `clean`), binaries of another major for a table restore, a corrupted object
 * (caught by its sha256 during the restore, typed error, the partial directory left marked
 * incomplete and refused until cleaned).
 */
import {
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  writeSync,
  closeSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IntegrityError,
  RESTORE_INCOMPLETE_MARKER,
  RestoreError,
  restoreBackup,
  restoreTable,
  type BaseBackupResult,
} from '../../src/index';
import { backupArchiveKey, backupManifestKey } from '../../src/archive/repo-layout';
import type { TestCluster } from '../harness/postgres';
import { archivingCluster, backup, bundleCli, makeRepo, scratch, type TestRepo } from './restore-helpers';
import { resolve } from 'node:path';

const code = async (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe('restore refusals (PG15)', () => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let source: TestCluster;
  let bb: BaseBackupResult;
  beforeAll(async () => {
    cli = await bundleCli('restore-refusals');
    repo = await makeRepo('fs');
    source = await archivingCluster(15, repo, cli.cli);
    await source.query(`CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g`);
    bb = await backup(source, repo);
  }, 240_000);
  afterAll(async () => {
    await source?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  it('a non-empty target directory, unless asked to clean it', async () => {
    const dir = join(scratch('refuse-nonempty'), 'data');
    mkdirSync(dir);
    writeFileSync(join(dir, 'something'), 'x');
    const e = await code(restoreBackup({ storage: repo.storage, targetDir: dir }));
    expect(e).toBeInstanceOf(RestoreError);
    expect((e as RestoreError).code).toBe('RESTORE_TARGET_NOT_EMPTY');
    expect(existsSync(join(dir, 'something'))).toBe(true);
    const r = await restoreBackup({ storage: repo.storage, targetDir: dir, clean: true });
    expect(r.backupId).toBe(bb.backupId);
    expect(existsSync(join(dir, 'something'))).toBe(false);
    expect(existsSync(join(dir, 'PG_VERSION'))).toBe(true);
  });

  it('the directory of a running server, even with clean', async () => {
    const e = await code(restoreBackup({ storage: repo.storage, targetDir: source.dataDir, clean: true }));
    expect((e as RestoreError).code).toBe('RESTORE_TARGET_IN_USE');
    expect((await source.query<{ n: number }>('SELECT count(*)::int AS n FROM t'))[0]!.n).toBe(100);
  });

  it('server binaries of another major than the backup', async () => {
    const pg16 = resolve(import.meta.dirname, '../../node_modules/pg16/native/bin');
    const e = await code(
      restoreTable({
        storage: repo.storage,
        archive: { ...repo.spec, cliPath: cli.cli },
        table: 't',
        target: source.connectionConfig(),
        binDir: pg16,
      }),
    );
    expect(e).toBeInstanceOf(RestoreError);
    expect((e as RestoreError).code).toBe('RESTORE_VERSION_MISMATCH');
  });

  it('a corrupted object: typed error during the restore, the partial directory marked incomplete', async () => {
    const root = repo.spec.repo;
    const flip = (key: string, at: (size: number) => number): void => {
      const p = join(root, key);
      const fd = openSync(p, 'r+');
      const pos = at(statSync(p).size);
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, pos);
      b[0] = b[0]! ^ 0xff;
      writeSync(fd, b, 0, 1, pos);
      closeSync(fd);
    };
    flip(backupManifestKey('main', bb.backupId), (n) => Math.floor(n / 2));
    const dir = join(scratch('refuse-corrupt'), 'data');
    const e = await code(restoreBackup({ storage: repo.storage, targetDir: dir }));
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as IntegrityError).code).toBe('INTEGRITY_CHECKSUM_MISMATCH');
    expect(existsSync(join(dir, RESTORE_INCOMPLETE_MARKER))).toBe(true);
    const again = await code(restoreBackup({ storage: repo.storage, targetDir: dir }));
    expect((again as RestoreError).code).toBe('RESTORE_INCOMPLETE');
    flip(backupManifestKey('main', bb.backupId), (n) => Math.floor(n / 2)); // undo

    // A damaged archive (a byte in the middle of base.tar): caught while streaming, still typed and marked.
    const base = bb.entry.objects.find((o) => o.kind === 'archive' && o.spcOid === undefined)!;
    flip(backupArchiveKey('main', bb.backupId, base.name), (n) => Math.floor(n / 2));
    const e2 = await code(restoreBackup({ storage: repo.storage, targetDir: dir, clean: true }));
    expect(e2).toBeInstanceOf(IntegrityError);
    expect(['INTEGRITY_CHECKSUM_MISMATCH', 'INTEGRITY_ARCHIVE_INVALID']).toContain(
      (e2 as IntegrityError).code,
    );
    expect(existsSync(join(dir, RESTORE_INCOMPLETE_MARKER))).toBe(true);
  });
});
