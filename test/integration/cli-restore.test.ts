/**
 * The restore commands of the CLI end to end (PG15, directory repository): the bundled CLI is run
 * as a child process, as a user would, with credentials only in the environment.
 *
 * Source timeline: table t gets 100 'base' rows, `pgark backup`, then 10 'a1' rows (the LSN after
 * their commit is the target), then rows 1..50 are deleted and 5 'b' rows added; everything is
 * archived through `pgark archive-push`. Oracles: a `pgark restore --target-lsn … --target-action
 * promote` starts and holds the rows before the target only; `pgark restore-table --as t_restored`
 * brings back the deleted rows into the source; targets outside the window exit 1 with the typed
 * error in the `--json` document, and nothing is written.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveServerUser } from '../../src/local-server';
import type { TestCluster } from '../harness/postgres';
import {
  archivingCluster,
  bundleCli,
  makeRepo,
  restoredSlot,
  switchAndArchive,
  waitPromoted,
  type TestRepo,
} from './restore-helpers';

const execFileP = promisify(execFile);

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

describe('pgark restore and restore-table (CLI, PG15, fs)', () => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let source: TestCluster;
  let backupJson: Record<string, unknown>;
  let lsnAfterA: string;
  let xidBefore: string;
  const slots: { destroy(): Promise<void> }[] = [];

  /** Runs the bundled CLI with `--json`; never throws on a non-zero exit code. */
  async function pgark(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
    const out = await execFileP(process.execPath, [cli.cli, ...args, '--json'], {
      env: { ...process.env, ...repo.env, ...env },
      maxBuffer: 16 * 1024 * 1024,
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({
        code: typeof e.code === 'number' ? e.code : -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }),
    );
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(out.stdout) as Record<string, unknown>;
    } catch {
      // asserted by the caller (stdout must be one JSON document)
    }
    return { ...out, json };
  }

  const owner = (): string => {
    const u = resolveServerUser();
    return `${u.uid}:${u.gid}`;
  };

  beforeAll(async () => {
    cli = await bundleCli('cli-restore');
    repo = await makeRepo('fs');
    source = await archivingCluster(15, repo, cli.cli);
    await source.query(`CREATE TABLE t (id int PRIMARY KEY, phase text NOT NULL)`);
    await source.query(`INSERT INTO t SELECT g, 'base' FROM generate_series(1, 100) g`);
    await source.query('BEGIN');
    await source.query(`UPDATE t SET phase = 'base' WHERE id = 1`);
    xidBefore = (await source.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x'))[0]!.x;
    await source.query('COMMIT');

    const b = await pgark(
      ['backup', '--fast', '-h', '127.0.0.1', '-p', String(source.port), '-U', 'replicator', ...repo.cliArgs],
      { PGPASSWORD: source.replicationUser.password },
    );
    expect(b.code, b.stderr).toBe(0);
    backupJson = b.json;

    await source.query(`INSERT INTO t SELECT g, 'a1' FROM generate_series(101, 110) g`);
    lsnAfterA = (await source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
    await source.query(`DELETE FROM t WHERE id <= 50`);
    await source.query(`INSERT INTO t SELECT g, 'b' FROM generate_series(111, 115) g`);
    await switchAndArchive(source);
  }, 240_000);

  afterAll(async () => {
    for (const s of slots) await s.destroy().catch(() => undefined);
    await source?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  it('pgark backup --json describes the backup', () => {
    expect(backupJson).toMatchObject({
      stanza: 'main',
      startTimeline: 1,
      endTimeline: 1,
      walMethod: 'stream',
    });
    expect(backupJson.backupId).toMatch(/^\d{8}T\d{6}Z-F$/);
    expect(backupJson.endLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  });

  it('restore --target-lsn … --target-action promote: the cluster starts with the rows before the target only', async () => {
    const slot = restoredSlot(source.binaries, 'cli-pitr');
    slots.push(slot);
    const r = await pgark([
      'restore',
      '-D',
      slot.dataDir,
      '--target-lsn',
      lsnAfterA,
      '--target-action',
      'promote',
      '--owner',
      owner(),
      ...repo.cliArgs,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({
      backupId: backupJson.backupId,
      targetDir: slot.dataDir,
      endLsn: backupJson.endLsn,
      signalFile: 'recovery.signal',
      recoverySettings: { recovery_target_lsn: lsnAfterA, recovery_target_action: 'promote' },
    });
    expect(typeof r.json.bytes).toBe('number');
    expect((r.json.windowEnd as { lsn: string }).lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(String((r.json.recoverySettings as Record<string, string>).restore_command)).toContain(
      'archive-fetch',
    );

    await slot.start(repo.env);
    const c = await slot.client();
    await waitPromoted(c);
    const rows = (
      await c.query<{ phase: string; n: number; lo: number }>(
        'SELECT phase, count(*)::int AS n, min(id) AS lo FROM t GROUP BY phase ORDER BY phase',
      )
    ).rows;
    // base rows 1..100 (the delete came after the target), a1 rows; no b rows.
    expect(rows).toEqual([
      { phase: 'a1', n: 10, lo: 101 },
      { phase: 'base', n: 100, lo: 1 },
    ]);
    await slot.destroy();
  });

  it('a target before the backup exits 1 with RESTORE_TARGET_OUT_OF_RANGE in --json, writing nothing', async () => {
    const slot = restoredSlot(source.binaries, 'cli-refused');
    slots.push(slot);
    const before = new Date(Date.now() - 24 * 3600_000).toISOString();
    const r = await pgark(['restore', '-D', slot.dataDir, '--target-time', before, ...repo.cliArgs]);
    expect(r.code).toBe(1);
    const err = r.json.error as Record<string, unknown>;
    expect(err).toMatchObject({ name: 'RecoveryTargetError', code: 'RESTORE_TARGET_OUT_OF_RANGE' });
    expect((err.backups as { backupId: string }[]).map((x) => x.backupId)).toEqual([backupJson.backupId]);
    expect((err.walRanges as unknown[]).length).toBeGreaterThan(0);
    expect(err.walRanges as unknown[]).toContainEqual(
      expect.objectContaining({ timeline: 1, startLsn: expect.any(String), endLsn: expect.any(String) }),
    );
    expect(r.stderr).toContain('RESTORE_TARGET_OUT_OF_RANGE');
    expect(existsSync(slot.dataDir)).toBe(false);
  });

  it("an xid that ended before the backup's checkpoint is refused before writing", async () => {
    const slot = restoredSlot(source.binaries, 'cli-refused-xid');
    slots.push(slot);
    const r = await pgark(['restore', '-D', slot.dataDir, '--target-xid', xidBefore, ...repo.cliArgs]);
    expect(r.code, r.stderr).toBe(1);
    const err = r.json.error as Record<string, unknown>;
    expect(err).toMatchObject({ code: 'RESTORE_TARGET_OUT_OF_RANGE' });
    expect((err.backups as { backupId: string }[]).map((x) => x.backupId)).toEqual([backupJson.backupId]);
    expect(existsSync(slot.dataDir)).toBe(false);
  });

  it('a restore point target with no wal archived after the backup is refused before writing', async () => {
    // A second stanza of the same cluster holds a backup and no archived wal at all.
    const b = await pgark(
      [
        'backup',
        '--fast',
        '-h',
        '127.0.0.1',
        '-p',
        String(source.port),
        '-U',
        'replicator',
        '--repo',
        repo.spec.repo,
        '--stanza',
        'noarchive',
      ],
      { PGPASSWORD: source.replicationUser.password },
    );
    expect(b.code, b.stderr).toBe(0);
    const slot = restoredSlot(source.binaries, 'cli-refused-name');
    slots.push(slot);
    const r = await pgark([
      'restore',
      '-D',
      slot.dataDir,
      '--target-name',
      'never_made',
      '--repo',
      repo.spec.repo,
      '--stanza',
      'noarchive',
    ]);
    expect(r.code).toBe(1);
    const err = r.json.error as Record<string, unknown>;
    expect(err).toMatchObject({ code: 'RESTORE_TARGET_OUT_OF_RANGE', walRanges: [] });
    expect((err.backups as { backupId: string }[]).map((x) => x.backupId)).toEqual([b.json.backupId]);
    expect(existsSync(slot.dataDir)).toBe(false);
  });

  it('restore-table --as t_restored brings back rows deleted after the target', async () => {
    const r = await pgark(
      [
        'restore-table',
        '--table',
        'public.t',
        '--as',
        't_restored',
        '-d',
        `host=127.0.0.1 port=${source.port} user=postgres dbname=postgres`,
        '--target-lsn',
        lsnAfterA,
        ...repo.cliArgs,
      ],
      { PGPASSWORD: source.superuser.password },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ backupId: backupJson.backupId, rows: 110, created: true });
    const [got] = await source.query<{ n: number; deleted: number; b: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE id <= 50)::int AS deleted,
              count(*) FILTER (WHERE phase = 'b')::int AS b FROM t_restored`,
    );
    expect(got).toEqual({ n: 110, deleted: 50, b: 0 });
    // The live table is untouched.
    const [live] = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM t');
    expect(live!.n).toBe(65);
  });

  it('usage errors exit non-zero with a typed code', async () => {
    const r = await pgark([
      'restore',
      '--target-lsn',
      '0/1',
      '--target-name',
      'x',
      '-D',
      '/nonexistent/x',
      ...repo.cliArgs,
    ]);
    expect(r.code).toBe(1);
    expect((r.json.error as { code: string }).code).toBe('CONFIG_INVALID_OPTION');
  });
});
