/**
 * The data generator and checksums the restore tests rely on: same seed => same checksums on another
 * cluster, any change => a different checksum, the tablespace table lives in its tablespace,
 * documents are TOASTed, and writeLoad commits what it reports.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDataset, tableChecksums, writeLoad, TABLESPACE_NAME } from '../harness/datagen';
import { startCluster, type TestCluster } from '../harness/postgres';

describe('test harness: datagen', () => {
  let a: TestCluster;
  let b: TestCluster;
  beforeAll(async () => {
    a = await startCluster({ major: 17 });
    b = await startCluster({ major: 14 });
  });
  afterAll(async () => {
    await a?.destroy();
    await b?.destroy();
  });

  it('generates about the requested size, with a tablespace and TOAST', async () => {
    const t0 = Date.now();
    const ds = await generateDataset(a, { sizeMb: 16, tablespaceDir: join(a.rootDir, 'ts1') });
    const ms = Date.now() - t0;
    expect([...ds]).toEqual(['public.accounts', 'public.events', 'public.documents', 'public.ts_items']);
    expect(ds.bytes).toBeGreaterThan(16 * 1024 * 1024 * 0.6);
    expect(ds.bytes).toBeLessThan(16 * 1024 * 1024 * 1.6);
    const [ts] = await a.query(
      `SELECT t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE c.relname = 'ts_items'`,
    );
    expect(ts.spcname).toBe(TABLESPACE_NAME);
    const [toast] = await a.query(
      `SELECT pg_relation_size(reltoastrelid) AS bytes FROM pg_class WHERE relname = 'documents'`,
    );
    expect(Number(toast.bytes)).toBeGreaterThan(2 * 1024 * 1024);
    console.log(`datagen 16 MB on PG17: ${ms} ms, ${(ds.bytes / 1048576).toFixed(1)} MiB`);
  });

  it('checksums match for the same seed on another major and change with the data', async () => {
    const dsB = await generateDataset(b, { sizeMb: 16, tablespaceDir: join(b.rootDir, 'ts1') });
    const sumA = await tableChecksums((s, p) => a.query(s, p), dsB);
    const sumB = await tableChecksums((s, p) => b.query(s, p), dsB);
    expect(sumB).toEqual(sumA);
    await b.query(`UPDATE public.events SET kind = 'x' WHERE id = 17`);
    const sumB2 = await tableChecksums((s, p) => b.query(s, p), dsB);
    expect(sumB2['public.events']).not.toBe(sumA['public.events']);
    expect(sumB2['public.accounts']).toBe(sumA['public.accounts']);
  });

  it('writeLoad commits the rows it reports', async () => {
    const load = await writeLoad(a, { ms: 5 });
    // Wait for progress rather than a fixed time: commits are slow on a loaded 2-core machine.
    const deadline = Date.now() + 30_000;
    while (load.rows() < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const res = await load.stop();
    expect(res.rows).toBeGreaterThanOrEqual(10);
    expect(res.errors).toBe(0);
    const [r] = await a.query(`SELECT count(*)::int AS n FROM public.write_load`);
    expect(r.n).toBe(res.rows);
  });
});
