/**
 * Captures real WAL segments, and pg_walinspect's view of their records, for the WAL record reader's
 * unit tests (test/unit/wal-record-reader.test.ts).
 *
 *   npx tsx scripts/capture-wal-record-fixtures.ts [majors…]     (default: 14 15 18)
 *
 * For each major: a throw-away harness cluster with 1 MiB segments (initdb --wal-segsize=1, so the
 * fixtures stay small), max_prepared_transactions 5, wal_compression on (pglz), pg_walinspect (15+;
 * PG14's fixture has no oracle list). After pg_switch_wal() it writes:
 * a restore point; a commit, an abort, a COMMIT PREPARED and a ROLLBACK PREPARED (their xids kept);
 * 3150 small inserts of varying size (record headers land on every page offset, some split across a
 * page boundary); a CHECKPOINT and an UPDATE of every 40th row (compressed full-page images with a
 * hole), then the same with wal_compression off (uncompressed images with a hole); a 20 kB logical message (a record over three pages); pg_switch_wal() (an
 * XLOG_SWITCH mid-scan); eight 200 kB logical messages (records crossing segment boundaries); a
 * second restore point. The segments from the first one to the current one are copied gzipped to
 * test/fixtures/wal-records/pg<major>/<segment>.gz, and pg_get_wal_records_info() over the range to
 * pg<major>/records.json with the marks (restore point names with the LSN pg_create_restore_point
 * returned, the xids). pg_walinspect is the oracle: the reader must find exactly its records.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startCluster, type Major } from '../test/harness/postgres';
import { lsnToSegmentNumber, parseLsn, walFileName } from '../src/lsn';

const OUT_DIR = resolve(import.meta.dirname, '..', 'test', 'fixtures', 'wal-records');
const SEG = 1024 * 1024;

async function capture(major: Major): Promise<void> {
  const c = await startCluster({
    major,
    initdbArgs: ['--wal-segsize=1'],
    settings: {
      max_prepared_transactions: '5',
      wal_keep_size: '64MB',
      autovacuum: 'off',
      // Compressed full-page images with a hole carry an extra header (hole_length), flagged differently in 14.
      wal_compression: major >= 15 ? 'pglz' : 'on',
    },
  });
  try {
    const one = async <T = Record<string, string>>(sql: string): Promise<T> => (await c.query<T>(sql))[0]!;
    // pg_walinspect is 15+: PG14's fixture has no oracle list (the test checks it decodes, and the marks).
    if (major >= 15) await c.query('CREATE EXTENSION pg_walinspect');
    await c.query('CREATE TABLE t (id serial PRIMARY KEY, v text)');
    await c.query('SELECT pg_switch_wal()');
    await c.query('INSERT INTO t (v) VALUES (NULL)'); // the switch itself is flushed; begin after it
    const start = (await one<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).l;
    const rp1 = (await one<{ l: string }>(`SELECT pg_create_restore_point('rp_first')::text AS l`)).l;
    const inSession = async (sql: string[]): Promise<string> => {
      const pg = (await import('pg')).default;
      const cl = new pg.Client(c.connectionConfig());
      await cl.connect();
      try {
        let x = '';
        for (const s of sql) {
          const r = await cl.query<{ x: string }>(s);
          if (r.rows[0]?.x) x = r.rows[0].x;
        }
        return x;
      } finally {
        await cl.end();
      }
    };
    const commit = await inSession([
      'BEGIN',
      `INSERT INTO t (v) VALUES ('committed')`,
      'SELECT pg_current_xact_id()::text AS x',
      'COMMIT',
    ]);
    const abort = await inSession([
      'BEGIN',
      `INSERT INTO t (v) VALUES ('aborted')`,
      'SELECT pg_current_xact_id()::text AS x',
      'ROLLBACK',
    ]);
    const commitPrepared = await inSession([
      'BEGIN',
      `INSERT INTO t (v) VALUES ('prepared, committed')`,
      'SELECT pg_current_xact_id()::text AS x',
      `PREPARE TRANSACTION 'g_commit'`,
      `COMMIT PREPARED 'g_commit'`,
    ]);
    const abortPrepared = await inSession([
      'BEGIN',
      `INSERT INTO t (v) VALUES ('prepared, aborted')`,
      'SELECT pg_current_xact_id()::text AS x',
      `PREPARE TRANSACTION 'g_abort'`,
      `ROLLBACK PREPARED 'g_abort'`,
    ]);
    await c.query(`INSERT INTO t (v) SELECT repeat('v', (i * 37) % 500) FROM generate_series(1, 3000) i`);
    // Full-page images (compressed, with a hole): the first change of each page after a checkpoint.
    await c.query('CHECKPOINT');
    await c.query(`UPDATE t SET v = v || 'u' WHERE id % 40 = 0`);
    // And uncompressed ones with a hole (in 14 the 0x04 bit then means APPLY, not compressed).
    // (SET in one session: the harness passes settings on the command line, over ALTER SYSTEM.)
    await inSession([
      'SET wal_compression = off',
      'CHECKPOINT',
      `UPDATE t SET v = v || 'w' WHERE id % 40 = 20`,
    ]);
    for (let i = 0; i < 150; i++) await c.query(`INSERT INTO t (v) VALUES (repeat('s', ${(i * 13) % 97}))`);
    await c.query(`SELECT pg_logical_emit_message(false, 'pgark', repeat('m', 20000))`);
    await c.query('SELECT pg_switch_wal()');
    for (let i = 0; i < 8; i++)
      await c.query(`SELECT pg_logical_emit_message(false, 'pgark', repeat(chr(97 + ${i}), 200000))`);
    const rp2 = (await one<{ l: string }>(`SELECT pg_create_restore_point('rp_second')::text AS l`)).l;
    // A commit flushes every record before it (the logical messages above are not flushed by themselves).
    await c.query(`INSERT INTO t (v) VALUES ('last')`);
    const end = (await one<{ l: string }>('SELECT pg_current_wal_flush_lsn()::text AS l')).l;
    // Compact rows: [start, end, xid, resource manager, record type, xl_tot_len, main data length, fpi length].
    const records =
      major < 15
        ? null
        : (
            await c.query<Record<string, string | number>>(
              `SELECT start_lsn::text AS s, end_lsn::text AS e, xid::text AS x, resource_manager AS rm,
                      record_type AS rt, record_length AS len, main_data_length AS md, fpi_length AS fpi
                 FROM pg_get_wal_records_info('${start}', '${end}')`,
            )
          ).map((r) => [r.s, r.e, Number(r.x), r.rm, r.rt, Number(r.len), Number(r.md), Number(r.fpi)]);
    const version = (await one<{ v: string }>('SHOW server_version_num')).v;
    const dir = join(OUT_DIR, `pg${major}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const first = lsnToSegmentNumber(parseLsn(start), SEG);
    const last = lsnToSegmentNumber(parseLsn(end), SEG);
    const segments: string[] = [];
    for (let s = first; s <= last; s++) {
      const name = walFileName(1, s, SEG);
      writeFileSync(
        join(dir, `${name}.gz`),
        gzipSync(readFileSync(join(c.dataDir, 'pg_wal', name)), { level: 9 }),
      );
      segments.push(name);
    }
    writeFileSync(
      join(dir, 'records.json.gz'),
      gzipSync(
        JSON.stringify({
          major,
          serverVersionNum: Number(version),
          segmentSize: SEG,
          segments,
          startLsn: start,
          endLsn: end,
          restorePoints: [
            { name: 'rp_first', endLsn: rp1 },
            { name: 'rp_second', endLsn: rp2 },
          ],
          xids: { commit, abort, commitPrepared, abortPrepared },
          records,
        }) + '\n',
      ),
    );
    console.log(
      `pg${major}: ${segments.length} segments, ${records?.length ?? 'no oracle'} records, ${start}..${end}`,
    );
  } finally {
    await c.destroy();
  }
}

const majors = (process.argv.slice(2).length ? process.argv.slice(2).map(Number) : [14, 15, 18]) as Major[];
for (const m of majors) await capture(m);
