/**
 * Table restore (PG17, fs): on the source, a table is dropped and, separately, half of another
 * table's rows are deleted; restoreTable brings them back as of a time before, through a scratch
 * cluster started with the PG17 binaries as the unprivileged user. Oracles: the restored rows equal
 * the earlier ones (checksums), other tables are untouched, the scratch directory is gone.
 */
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestoreError, restoreTable } from '../../src/index';
import { tableChecksums } from '../harness/datagen';
import type { TestCluster } from '../harness/postgres';
import {
  archivingCluster,
  backup,
  bundleCli,
  makeRepo,
  scratch,
  switchAndArchive,
  type TestRepo,
} from './restore-helpers';

describe('table restore (PG17)', () => {
  let cli: Awaited<ReturnType<typeof bundleCli>>;
  let repo: TestRepo;
  let source: TestCluster;
  let before: Record<string, string>;
  let targetTime: string;
  let scratchParent: string;

  beforeAll(async () => {
    cli = await bundleCli('restore-table');
    repo = await makeRepo('fs');
    source = await archivingCluster(17, repo, cli.cli);
    await source.query(`CREATE TABLE keep (id int PRIMARY KEY, v text)`);
    await source.query(`INSERT INTO keep SELECT g, md5(g::text) FROM generate_series(1, 1000) g`);
    await source.query(
      `CREATE TABLE victim (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'n/a', qty int CHECK (qty >= 0), at timestamptz DEFAULT now())`,
    );
    await source.query(`CREATE INDEX victim_name_idx ON victim (name)`);
    await source.query(`INSERT INTO victim (name, qty) SELECT 'v' || g, g FROM generate_series(1, 2000) g`);
    await source.query(
      `CREATE TABLE halved (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text UNIQUE)`,
    );
    await source.query(`INSERT INTO halved (v) SELECT 'h' || g FROM generate_series(1, 3000) g`);
    await backup(source, repo);
    before = await tableChecksums(
      (sql) => source.query(sql),
      ['public.keep', 'public.victim', 'public.halved'],
    );
    await new Promise((r) => setTimeout(r, 1100));
    targetTime = (
      await source.query<{ t: string }>(
        `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS t`,
      )
    )[0]!.t;
    await new Promise((r) => setTimeout(r, 600));
    await source.query(`DROP TABLE victim`);
    await source.query(`DELETE FROM halved WHERE id % 2 = 0`);
    await switchAndArchive(source);
    scratchParent = scratch('table-scratch');
  }, 240_000);

  afterAll(async () => {
    await source?.destroy();
    await repo?.cleanup();
    cli?.cleanup();
  });

  const common = () => ({
    storage: repo.storage,
    archive: { ...repo.spec, cliPath: cli.cli },
    target: source.connectionConfig(),
    recovery: { target: { time: targetTime } },
    scratchDir: scratchParent,
  });

  it('a dropped table comes back with its rows, constraints and indexes; the scratch cluster is gone', async () => {
    const keepBefore = await tableChecksums((sql) => source.query(sql), ['public.keep']);
    const r = await restoreTable({ ...common(), table: 'public.victim' });
    expect(r).toMatchObject({ created: true, rows: 2000 });
    const after = await tableChecksums((sql) => source.query(sql), ['public.victim', 'public.keep']);
    expect(after['public.victim']).toBe(before['public.victim']);
    expect(after['public.keep']).toBe(keepBefore['public.keep']);
    // The definition came along: primary key, check, index, default, and a sequence that continues.
    const idx = await source.query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE tablename = 'victim' ORDER BY 1`,
    );
    expect(idx.map((i) => i.indexname)).toEqual(['victim_name_idx', 'victim_pkey']);
    await expect(source.query(`INSERT INTO victim (name, qty) VALUES ('x', -1)`)).rejects.toMatchObject({
      code: '23514',
    });
    const [row] = await source.query<{ id: number; name: string }>(
      `INSERT INTO victim (qty) VALUES (1) RETURNING id, name`,
    );
    // 2001 went to the refused insert above (nextval is not rolled back).
    expect(row).toEqual({ id: 2002, name: 'n/a' });
    expect(readdirSync(scratchParent)).toEqual([]);
  }, 300_000);

  it('half-deleted rows: into the existing table after truncate, and as a new table', async () => {
    const r = await restoreTable({ ...common(), table: 'halved', truncate: true });
    expect(r).toMatchObject({ created: false, truncated: true, rows: 3000 });
    expect((await tableChecksums((sql) => source.query(sql), ['public.halved']))['public.halved']).toBe(
      before['public.halved'],
    );
    await source.query(`DELETE FROM halved WHERE id % 2 = 0`);
    const r2 = await restoreTable({ ...common(), table: 'public.halved', as: 'halved_restored' });
    expect(r2).toMatchObject({ created: true, rows: 3000 });
    const sums = await tableChecksums((sql) => source.query(sql), ['public.halved_restored']);
    expect(sums['public.halved_restored']).toBe(before['public.halved']);
    expect((await source.query<{ n: number }>(`SELECT count(*)::int AS n FROM halved`))[0]!.n).toBe(1500);
    // The new name exists now: a second restore as it is refused.
    const e = await restoreTable({ ...common(), table: 'public.halved', as: 'halved_restored' }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(RestoreError);
    expect((e as RestoreError).code).toBe('RESTORE_TABLE_EXISTS');
    // A table that does not exist at the target time.
    const e2 = await restoreTable({ ...common(), table: 'public.nope' }).catch((x: unknown) => x);
    expect((e2 as RestoreError).code).toBe('RESTORE_TABLE_NOT_FOUND');
    expect(readdirSync(scratchParent)).toEqual([]);
  }, 600_000);
});
