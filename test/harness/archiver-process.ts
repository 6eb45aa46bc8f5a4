/** Spawns test/harness/archiver-child.ts and follows its JSON-line events. */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import pg from 'pg';
import { parseLsn, type Lsn } from '../../src/lsn';
import type { TestCluster } from './postgres';

const ROOT = resolve(import.meta.dirname, '..', '..');

export interface ArchiverProcess {
  child: ChildProcess;
  events: Record<string, unknown>[];
  /** Latest flushedLsn reported by a wal.flush event. */
  flushedLsn(): Lsn;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
}

export function spawnArchiver(config: Record<string, unknown>): ArchiverProcess {
  // node itself with tsx's loader (not the tsx wrapper): SIGKILL must hit the archiver's own process.
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(ROOT, 'test/harness/archiver-child.ts')],
    {
      cwd: ROOT,
      env: { ...process.env, PGARK_ARCHIVER_CHILD: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const events: Record<string, unknown>[] = [];
  let flushed: Lsn = 0n;
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        events.push(e);
        if (e.type === 'wal.flush' && typeof e.flushedLsn === 'string') {
          const l = parseLsn(e.flushedLsn);
          if (l > flushed) flushed = l;
        }
      } catch {
        /* not an event line */
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | string>((res) => {
    child.on('exit', (code, signal) => {
      if (code !== 0 && stderr) process.stderr.write(`archiver child stderr:\n${stderr.slice(-4000)}\n`);
      res(code ?? signal ?? -1);
    });
  });
  return { child, events, flushedLsn: () => flushed, exited, kill: (s) => child.kill(s) };
}

/**
 * Names the archiver `appName` in synchronous_standby_names and waits until the server treats it as
 * its synchronous standby (from then on a commit returns only once the archiver reported it flushed).
 */
export async function makeSynchronousStandby(
  cluster: { query<R>(sql: string): Promise<R[]> },
  appName: string,
): Promise<void> {
  await cluster.query(`ALTER SYSTEM SET synchronous_standby_names = '${appName.replace(/'/g, "''")}'`);
  await cluster.query('SELECT pg_reload_conf()');
  for (let i = 0; ; i++) {
    const rows = await cluster.query<{ sync_state: string }>(
      `SELECT sync_state FROM pg_stat_replication WHERE application_name = '${appName.replace(/'/g, "''")}'`,
    );
    if (rows[0]?.sync_state === 'sync') return;
    if (i > 200) throw new Error('archiver never became the synchronous standby');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A client committing small transactions into `table` for as long as it runs (see startAckedCommits). */
export interface AckedCommits {
  /** The insert LSN of every transaction whose COMMIT returned (acknowledged), in order. */
  acked: Lsn[];
  /** The client the loop commits through (open after stop(), for the caller's own statements). */
  client: pg.Client;
  /** Stops the loop after its current transaction; the client stays open. */
  stop(): Promise<void>;
}

/**
 * Commits 20-row transactions into `table` (id bigserial, v text) in a loop and records each one's
 * insert LSN once its COMMIT returned: with the archiver as synchronous standby, a commit returns
 * only once the archiver reported its WAL flushed, so `acked` is what must be in the repository.
 */
export async function startAckedCommits(cluster: TestCluster, table: string): Promise<AckedCommits> {
  const client = new pg.Client(cluster.connectionConfig());
  client.on('error', () => undefined);
  await client.connect();
  const acked: Lsn[] = [];
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${table} (v) SELECT repeat('x', 200) FROM generate_series(1, 20)`);
      const r = await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l');
      await client.query('COMMIT'); // returns only once the archiver reported the commit flushed
      acked.push(parseLsn(r.rows[0]!.l));
    }
  })();
  return {
    acked,
    client,
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

/** The highest LSN of `lsns` (0 when empty). */
export const maxLsn = (lsns: Lsn[]): Lsn => lsns.reduce((m, l) => (l > m ? l : m), 0n);
