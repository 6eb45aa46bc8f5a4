/**
 * Test data: a few tables of known shape filled with deterministic, generate_series-based rows
 * (so that a few GB are possible without shipping data from Node), plus order-independent
 * per-table checksums computed in SQL to compare a restored cluster with its source, and a steady
 * write load for tests that need WAL to keep flowing.
 */
import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { chownTree } from '../../src/local-server';
import type { TestCluster } from './postgres';

export type QueryFn = (sql: string, params?: unknown[]) => Promise<any[]>;

export interface GenerateDatasetOptions {
  /** Approximate total size on disk (heap + TOAST + indexes) in MiB. */
  sizeMb: number;
  /** When given: a tablespace there (created and given to the server user) holding table `ts_items`. */
  tablespaceDir?: string;
  /** Changes every generated value; the same seed gives the same rows. @default 1 */
  seed?: number;
}

/**
 * The schema-qualified table names (`public.accounts`, …): an array, so it can be passed straight to
 * tableChecksums, with the total size (pg_total_relation_size, bytes) after loading attached.
 */
export type DatasetInfo = string[] & { tables: string[]; bytes: number };

/** The datagen tables in a fixed order (ts_items only exists when a tablespace was asked for). */
export const DATASET_TABLES = ['public.accounts', 'public.events', 'public.documents'] as const;
export const TABLESPACE_TABLE = 'public.ts_items';
export const TABLESPACE_NAME = 'datagen_ts';

// Approximate bytes per row including indexes, measured on PG 17 (see the report of the harness task).
const BYTES_PER_ROW = { accounts: 140, events: 260, documents: 2870, ts_items: 140 };
// Rows per INSERT … SELECT so that one statement stays short (seconds) even for multi-GB data sets.
const BATCH_ROWS = { accounts: 200_000, events: 100_000, documents: 10_000, ts_items: 200_000 };

function quoteIdent(name: string): string {
  return name
    .split('.')
    .map((p) => `"${p.replaceAll('"', '""')}"`)
    .join('.');
}

function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** Column expressions per table; `$1` is the first id of the batch, `$2` the last, `$3` the seed. */
const INSERTS: Record<keyof typeof BATCH_ROWS, string> = {
  accounts: `INSERT INTO public.accounts (id, name, balance, created_at)
    SELECT i, 'acct-' || substr(md5($3::text || ':a:' || i), 1, 12), ((i * 7919 + $3::bigint) % 1000000) / 100.0,
           timestamp '2024-01-01' + i * interval '1 second'
    FROM generate_series($1::bigint, $2::bigint) AS i`,
  events: `INSERT INTO public.events (id, account_id, kind, payload, at)
    SELECT i, 1 + (i * 31 + $3::bigint) % 100000, (ARRAY['login','logout','deposit','withdraw','transfer'])[1 + i % 5],
           jsonb_build_object('kind', (ARRAY['login','logout','deposit','withdraw','transfer'])[1 + i % 5],
                              'n', i, 'amount', (i % 977) * 1.25, 'tags', jsonb_build_array('t' || i % 7, 't' || i % 11),
                              'note', md5($3::text || ':e:' || i)),
           timestamp '2024-01-01' + i * interval '10 milliseconds'
    FROM generate_series($1::bigint, $2::bigint) AS i`,
  // body: 4 md5 strings repeated 20 times => 2560 bytes, stored out of line (STORAGE EXTERNAL: no
  // compression) so every row really has a TOAST pointer. (A string_agg over 80 md5s per row gave
  // more varied text but made this table 4-5x slower to fill.)
  documents: `INSERT INTO public.documents (id, title, body)
    SELECT i, 'doc ' || i, repeat(md5(s || 'a') || md5(s || 'b') || md5(s || 'c') || md5(s || 'd'), 20)
    FROM generate_series($1::bigint, $2::bigint) AS i, LATERAL (SELECT $3::text || ':d:' || i AS s) AS x`,
  ts_items: `INSERT INTO public.ts_items (id, label, qty)
    SELECT i, 'item-' || substr(md5($3::text || ':t:' || i), 1, 16), (i * 13 + $3::bigint) % 1000
    FROM generate_series($1::bigint, $2::bigint) AS i`,
};

/**
 * Creates (if needed) and fills the data-set tables so their total size is about `sizeMb`.
 * Calling it again appends more rows (ids continue after the current maximum).
 */
export async function generateDataset(
  cluster: TestCluster,
  opts: GenerateDatasetOptions,
): Promise<DatasetInfo> {
  const seed = opts.seed ?? 1;
  const q = (sql: string, params?: unknown[]) => cluster.query(sql, params);
  const budget = Math.max(opts.sizeMb, 1) * 1024 * 1024;

  await q(`CREATE TABLE IF NOT EXISTS public.accounts (
    id bigint PRIMARY KEY, name text NOT NULL, balance numeric(12,2) NOT NULL, created_at timestamp NOT NULL)`);
  await q(`CREATE TABLE IF NOT EXISTS public.events (
    id bigint PRIMARY KEY, account_id bigint NOT NULL, kind text NOT NULL, payload jsonb NOT NULL, at timestamp NOT NULL)`);
  await q(
    `CREATE TABLE IF NOT EXISTS public.documents (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL)`,
  );
  await q(`ALTER TABLE public.documents ALTER COLUMN body SET STORAGE EXTERNAL`);

  const shares: Array<[keyof typeof BATCH_ROWS, number]> = [
    ['accounts', 0.15],
    ['events', 0.4],
    ['documents', opts.tablespaceDir ? 0.35 : 0.45],
  ];
  const tables: string[] = [...DATASET_TABLES];

  if (opts.tablespaceDir) {
    // The directory must exist, be empty and belong to the server's OS user (CREATE TABLESPACE checks).
    mkdirSync(opts.tablespaceDir, { recursive: true });
    chownTree(opts.tablespaceDir, cluster.serverUser);
    const exists = await q(`SELECT 1 FROM pg_tablespace WHERE spcname = $1`, [TABLESPACE_NAME]);
    if (exists.length === 0) {
      await q(`CREATE TABLESPACE ${TABLESPACE_NAME} LOCATION ${quoteLiteral(opts.tablespaceDir)}`);
    }
    await q(`CREATE TABLE IF NOT EXISTS public.ts_items (id bigint PRIMARY KEY, label text NOT NULL, qty int NOT NULL)
             TABLESPACE ${TABLESPACE_NAME}`);
    shares.push(['ts_items', 0.1]);
    tables.push(TABLESPACE_TABLE);
  }

  for (const [table, share] of shares) {
    const rows = Math.max(1, Math.round((budget * share) / BYTES_PER_ROW[table]));
    const [{ max }] = (await q(`SELECT coalesce(max(id), 0)::bigint AS max FROM public.${table}`)) as [
      { max: string },
    ];
    let next = Number(max) + 1;
    const last = next + rows - 1;
    while (next <= last) {
      const end = Math.min(last, next + BATCH_ROWS[table] - 1);
      await q(INSERTS[table], [next, end, seed]);
      next = end + 1;
    }
  }

  // Secondary indexes after loading (faster than maintaining them row by row).
  await q(`CREATE INDEX IF NOT EXISTS accounts_name_idx ON public.accounts (name)`);
  await q(`CREATE INDEX IF NOT EXISTS events_account_idx ON public.events (account_id)`);
  await q(`CREATE INDEX IF NOT EXISTS events_kind_idx ON public.events ((payload ->> 'kind'))`);
  await q(`ANALYZE`);

  const [{ bytes }] = (await q(
    `SELECT sum(pg_total_relation_size(c))::bigint AS bytes FROM unnest($1::regclass[]) AS c`,
    [tables],
  )) as [{ bytes: string }];
  return Object.assign([...tables], { tables, bytes: Number(bytes) });
}

/**
 * One checksum per table, computed inside the server: `<rows>:<md5>` where the md5 is taken over the
 * sums of two 64-bit hashes of each row's text form (hashtextextended with seeds 0 and 1: the hash
 * behind hash partitioning, so stable across majors and platforms). Order-independent and
 * constant-memory (one sequential scan, no sort, no giant string), so it scales to multi-GB tables;
 * equal results mean equal multisets of rows.
 */
export async function tableChecksums(
  query: QueryFn,
  tables: readonly string[],
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of tables) {
    const rows = await query(
      `SELECT count(*)::text AS n,
              md5(coalesce(sum(hashtextextended(r, 0)), 0)::text || ':' ||
                  coalesce(sum(hashtextextended(r, 1)), 0)::text) AS h
       FROM (SELECT t::text AS r FROM ${quoteIdent(table)} AS t) AS s`,
    );
    const r = rows[0] as { n: string; h: string };
    out[table] = `${r.n}:${r.h}`;
  }
  return out;
}

export interface WriteLoadOptions {
  /** Pause between two inserts in milliseconds. @default 10 */
  ms?: number;
  /** Rows per insert. @default 1 */
  rowsPerInsert?: number;
  /** Table written to (created when missing). @default 'public.write_load' */
  table?: string;
}

export interface WriteLoadResult {
  /** Rows committed. */
  rows: number;
  /** Inserts that failed (e.g. the server was stopped underneath); the loop keeps trying. */
  errors: number;
  lastError?: Error;
}

export interface WriteLoad {
  /** Stops after the insert in flight and reports what was committed. */
  stop(): Promise<WriteLoadResult>;
  /** Rows committed so far. */
  rows(): number;
}

/** Inserts rows steadily on its own connection until stopped. */
export async function writeLoad(cluster: TestCluster, opts: WriteLoadOptions = {}): Promise<WriteLoad> {
  const table = quoteIdent(opts.table ?? 'public.write_load');
  const pauseMs = opts.ms ?? 10;
  const perInsert = opts.rowsPerInsert ?? 1;
  await cluster.query(
    `CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), v text NOT NULL)`,
  );

  let client: pg.Client | undefined;
  let stopping = false;
  const result: WriteLoadResult = { rows: 0, errors: 0 };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const connect = async (): Promise<pg.Client> => {
    const c = new pg.Client(cluster.connectionConfig());
    c.on('error', () => {
      if (client === c) client = undefined;
    });
    await c.connect();
    return c;
  };

  const loop = (async () => {
    while (!stopping) {
      try {
        client ??= await connect();
        await client.query(
          `INSERT INTO ${table} (v) SELECT md5(random()::text) FROM generate_series(1, $1::int)`,
          [perInsert],
        );
        result.rows += perInsert;
      } catch (e) {
        result.errors++;
        result.lastError = e as Error;
        const c = client;
        client = undefined;
        await c?.end().catch(() => undefined);
        await sleep(Math.max(pauseMs, 100));
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
  })();

  return {
    rows: () => result.rows,
    async stop() {
      stopping = true;
      await loop;
      await client?.end().catch(() => undefined);
      client = undefined;
      return { ...result };
    },
  };
}
