/**
 * A table's definition read from a (scratch) cluster's catalog, and the DDL that re-creates it in
 * another database: columns (types, collations, defaults, NOT NULL, identity, generated columns),
 * primary key, unique, check and exclusion constraints, other indexes, and the sequences the table
 * owns (serial and identity columns) with their current values. Foreign keys are not re-created
 * (they name other tables, whose rows may differ): they are reported as skipped.
 *
 * The catalog is read with `search_path = ''`, so format_type, pg_get_expr, pg_get_constraintdef and
 * pg_get_indexdef qualify every name (ruleutils.c prints a name qualified when it is not visible on
 * the search path); the DDL then names things exactly. readTableDefinition does I/O; buildTableDdl
 * is pure.
 */
import { RestoreError } from '../errors';

/** Runs one query (a pg.Client's query fits). */
export type CatalogQuery = (sql: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

export interface ColumnDefinition {
  name: string;
  /** format_type(): e.g. `integer`, `character varying(20)`, `public.mood`. */
  type: string;
  notNull: boolean;
  /** pg_get_expr of the default (not for identity or generated columns). */
  default?: string;
  /** `a` GENERATED ALWAYS, `d` BY DEFAULT. */
  identity?: 'a' | 'd';
  /** Generated column: `s` stored, `v` virtual (18+), with its expression. */
  generated?: { kind: 's' | 'v'; expression: string };
  /** A qualified collation when it differs from the type's default. */
  collation?: string;
}

export interface OwnedSequence {
  /** Qualified name as regclass prints it (`public.accounts_id_seq`). */
  name: string;
  column: string;
  /** `a` serial (owned by the column), `i` identity. */
  kind: 'a' | 'i';
  /** CREATE SEQUENCE options text (AS … INCREMENT … MINVALUE … MAXVALUE … START … CACHE … [NO] CYCLE). */
  options: string;
  lastValue: string;
  isCalled: boolean;
}

export interface TableDefinition {
  schema: string;
  name: string;
  /** `quote_ident(schema).quote_ident(name)` */
  qualified: string;
  unlogged: boolean;
  columns: ColumnDefinition[];
  constraints: { name: string; type: 'p' | 'u' | 'c' | 'x'; definition: string }[];
  /** Indexes that back no constraint: name (unqualified, quoted) and pg_get_indexdef text. */
  indexes: { name: string; definition: string }[];
  sequences: OwnedSequence[];
  /** What is not re-created (foreign keys). */
  skipped: string[];
}

/** Double-quotes an identifier as quote_ident would for anything unusual (always quoting is valid SQL). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** Splits `schema.name` (or `name`, in `defaultSchema`) — plain or double-quoted parts. */
export function parseTableName(text: string, defaultSchema = 'public'): { schema: string; name: string } {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"]|"")+)"|([^."\s]+))\s*(\.|$)/y;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) break;
    parts.push(m[1] !== undefined ? m[1].replaceAll('""', '"') : m[2]!);
    pos = re.lastIndex;
    if (m[3] === '') break;
  }
  if (pos !== text.length || parts.length < 1 || parts.length > 2) {
    throw new RestoreError('RESTORE_TABLE_NOT_FOUND', `invalid table name ${JSON.stringify(text)}`, {
      hint: 'use schema.name or name',
    });
  }
  return parts.length === 2
    ? { schema: parts[0]!, name: parts[1]! }
    : { schema: defaultSchema, name: parts[0]! };
}

/**
 * Reads a table's definition. The connection's search_path is set to '' for the session.
 * @throws RestoreError RESTORE_TABLE_NOT_FOUND when no ordinary table of that name exists.
 */
export async function readTableDefinition(
  query: CatalogQuery,
  schema: string,
  name: string,
): Promise<TableDefinition> {
  await query(`SET search_path = ''`);
  const rel = (
    await query(
      `SELECT c.oid::int8::text AS oid, c.relkind::text AS relkind, c.relpersistence::text AS persistence,
              quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2`,
      [schema, name],
    )
  ).rows[0] as { oid: string; relkind: string; persistence: string; qualified: string } | undefined;
  if (!rel) {
    throw new RestoreError(
      'RESTORE_TABLE_NOT_FOUND',
      `table ${schema}.${name} does not exist in the restored cluster at the recovery target`,
      {
        hint: 'check the name, the database and the recovery target',
      },
    );
  }
  if (rel.relkind !== 'r') {
    throw new RestoreError(
      'RESTORE_TABLE_NOT_FOUND',
      `${schema}.${name} is not an ordinary table (relkind ${rel.relkind})`,
      {
        hint: 'table restore handles ordinary tables; restore each partition by its own name',
      },
    );
  }
  const oid = rel.oid;
  const cols = (
    await query(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
              pg_get_expr(d.adbin, d.adrelid) AS expr, a.attidentity::text AS identity, a.attgenerated::text AS generated,
              CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                   THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                           FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation)
              END AS collation
         FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [oid],
    )
  ).rows as {
    name: string;
    type: string;
    notnull: boolean;
    expr: string | null;
    identity: string;
    generated: string;
    collation: string | null;
  }[];
  const columns: ColumnDefinition[] = cols.map((c) => {
    const col: ColumnDefinition = { name: c.name, type: c.type, notNull: c.notnull };
    if (c.identity === 'a' || c.identity === 'd') col.identity = c.identity;
    if ((c.generated === 's' || c.generated === 'v') && c.expr !== null)
      col.generated = { kind: c.generated, expression: c.expr };
    else if (c.expr !== null && !col.identity) col.default = c.expr;
    if (c.collation) col.collation = c.collation;
    return col;
  });
  // contype 'n' (NOT NULL constraints, 18+) is covered by attnotnull; 't' (constraint triggers) is not table DDL.
  const cons = (
    await query(
      `SELECT quote_ident(conname) AS name, contype::text AS type, pg_get_constraintdef(oid) AS def
         FROM pg_constraint WHERE conrelid = $1::oid AND contype IN ('p', 'u', 'c', 'x', 'f')
        ORDER BY CASE contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 WHEN 'c' THEN 3 ELSE 4 END, conname`,
      [oid],
    )
  ).rows as { name: string; type: string; def: string }[];
  const indexes = (
    await query(
      `SELECT quote_ident(ic.relname) AS name, pg_get_indexdef(i.indexrelid) AS def
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1::oid
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
        ORDER BY ic.relname`,
      [oid],
    )
  ).rows as { name: string; def: string }[];
  const seqs = (
    await query(
      `SELECT sc.oid::regclass::text AS name, a.attname AS column, d.deptype::text AS kind,
              format_type(s.seqtypid, NULL) AS type, s.seqincrement::text AS inc, s.seqmin::text AS min, s.seqmax::text AS max,
              s.seqstart::text AS start, s.seqcache::text AS cache, s.seqcycle AS cycle
         FROM pg_depend d
         JOIN pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
         JOIN pg_sequence s ON s.seqrelid = sc.oid
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
          AND d.refobjid = $1::oid AND d.deptype IN ('a', 'i')
        ORDER BY a.attnum`,
      [oid],
    )
  ).rows as {
    name: string;
    column: string;
    kind: string;
    type: string;
    inc: string;
    min: string;
    max: string;
    start: string;
    cache: string;
    cycle: boolean;
  }[];
  const sequences: OwnedSequence[] = [];
  for (const s of seqs) {
    const v = (await query(`SELECT last_value::text AS v, is_called AS c FROM ${s.name}`)).rows[0] as {
      v: string;
      c: boolean;
    };
    sequences.push({
      name: s.name,
      column: s.column,
      kind: s.kind === 'i' ? 'i' : 'a',
      options: `AS ${s.type} INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache} ${s.cycle ? 'CYCLE' : 'NO CYCLE'}`,
      lastValue: v.v,
      isCalled: v.c,
    });
  }
  return {
    schema,
    name,
    qualified: rel.qualified,
    unlogged: rel.persistence === 'u',
    columns,
    constraints: cons
      .filter((c) => c.type !== 'f')
      .map((c) => ({ name: c.name, type: c.type as 'p' | 'u' | 'c' | 'x', definition: c.def })),
    indexes: indexes.map((i) => ({ name: i.name, definition: i.def })),
    sequences,
    skipped: cons.filter((c) => c.type === 'f').map((c) => `foreign key ${c.name}: ${c.def}`),
  };
}

export interface TableDdl {
  /** Statements to run in order, before the rows are copied. */
  create: string[];
  /** Statements to run after the copy (sequence values). */
  after: string[];
  /** The columns COPY writes (generated columns excluded), quoted. */
  copyColumns: string[];
}

/**
 * The DDL that re-creates `def` as `target` (`{ schema, name }`). When the name changes, index and
 * constraint names are left to PostgreSQL (so they cannot clash with the original's), and owned
 * sequences get new names `<table>_<column>_seq` (a renamed copy must not share the original's sequence).
 */
export function buildTableDdl(def: TableDefinition, target: { schema: string; name: string }): TableDdl {
  const qTarget = `${quoteIdent(target.schema)}.${quoteIdent(target.name)}`;
  const renamed = target.schema !== def.schema || target.name !== def.name;
  const create: string[] = [];
  const after: string[] = [];
  const seqRename = new Map<string, string>();
  for (const s of def.sequences) {
    const newName = renamed
      ? `${quoteIdent(target.schema)}.${quoteIdent(`${target.name}_${s.column}_seq`.substring(0, 63))}`
      : s.name;
    if (s.kind === 'a') {
      seqRename.set(s.name, newName);
      create.push(`CREATE SEQUENCE IF NOT EXISTS ${newName} ${s.options}`);
    }
  }
  const colSql = def.columns.map((c) => {
    let sql = `${quoteIdent(c.name)} ${c.type}`;
    if (c.collation) sql += ` COLLATE ${c.collation}`;
    if (c.generated)
      sql += ` GENERATED ALWAYS AS (${c.generated.expression}) ${c.generated.kind === 's' ? 'STORED' : 'VIRTUAL'}`;
    if (c.identity) {
      const s = def.sequences.find((x) => x.kind === 'i' && x.column === c.name);
      // The sequence type follows the column's; the other options are kept.
      sql += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${s ? ` (${s.options.replace(/^AS \S+ /, '')})` : ''}`;
    }
    if (c.default !== undefined) {
      let d = c.default;
      for (const [from, to] of seqRename)
        d = d
          .split(`nextval(${quoteLiteral(from)}::regclass)`)
          .join(`nextval(${quoteLiteral(to)}::regclass)`);
      sql += ` DEFAULT ${d}`;
    }
    if (c.notNull && !c.identity) sql += ' NOT NULL';
    return sql;
  });
  const conSql = def.constraints.map((c) =>
    renamed ? c.definition : `CONSTRAINT ${c.name} ${c.definition}`,
  );
  create.push(
    `CREATE ${def.unlogged ? 'UNLOGGED ' : ''}TABLE ${qTarget} (\n  ${[...colSql, ...conSql].join(',\n  ')}\n)`,
  );
  for (const i of def.indexes) {
    let sql = i.definition.replace(` ON ${def.qualified} USING `, ` ON ${qTarget} USING `);
    if (renamed)
      sql = sql.replace(/^CREATE (UNIQUE )?INDEX (?:"(?:[^"]|"")+"|\S+) ON /, 'CREATE $1INDEX ON ');
    create.push(sql);
  }
  for (const s of def.sequences) {
    const name = s.kind === 'a' ? seqRename.get(s.name)! : null;
    if (name) {
      create.push(`ALTER SEQUENCE ${name} OWNED BY ${qTarget}.${quoteIdent(s.column)}`);
      after.push(`SELECT setval(${quoteLiteral(name)}, ${s.lastValue}, ${s.isCalled})`);
    } else {
      after.push(
        `SELECT setval(pg_get_serial_sequence(${quoteLiteral(qTarget)}, ${quoteLiteral(s.column)}), ${s.lastValue}, ${s.isCalled})`,
      );
    }
  }
  const copyColumns = def.columns.filter((c) => !c.generated).map((c) => quoteIdent(c.name));
  return { create, after, copyColumns };
}
