/**
 * Promotion: an archiver follows a standby (made with Debian's pg_basebackup -R against PG15) and
 * another archives the primary. The standby is promoted: its archiver handles the end of
 * timeline 1, archives 00000002.history, keeps the old timeline's last segment as partial and
 * continues on timeline 2 in the same process; the bytes equal the standby's pg_wal.
 * The PITR restore across the switch is test/integration/wal-archiver-restore-promotion.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWalArchiver, type WalArchiverHandle } from '../../src/archive/wal-archiver';
import { createFsStorage } from '../../src/storage/fs-storage';
import type { PgarkEvent } from '../../src/observe';
import { formatLsn, parseLsn } from '../../src/lsn';
import { chownTree, promote, runAsUser, startServer, stopServer } from '../../src/local-server';
import { defaultSettings, freePort, startCluster, TEST_ROOT, type TestCluster } from '../harness/postgres';
import { checkArchive } from '../harness/wal-archive-check';
import pg from 'pg';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PG_BASEBACKUP = '/usr/lib/postgresql/15/bin/pg_basebackup';

describe('wal archiver follows a promotion (PG15, fs)', () => {
  let primary: TestCluster;
  let dir: string;
  let standbyRoot: string;
  let standbyData: string;
  let standbyPort: number;
  let standbyLog: string;

  beforeAll(async () => {
    primary = await startCluster({ major: 15, settings: { wal_keep_size: '1GB' } });
    dir = mkdtempSync(join(tmpdir(), 'pgark-walpromo-'));
    standbyRoot = join(TEST_ROOT, `standby15-${process.pid}-${randomBytes(4).toString('hex')}`);
    standbyData = join(standbyRoot, 'data');
    standbyLog = join(standbyRoot, 'server.log');
    mkdirSync(join(standbyRoot, 'sock'), { recursive: true });
    writeFileSync(standbyLog, '');
    chownTree(standbyRoot, primary.serverUser);
    const r = await runAsUser(
      PG_BASEBACKUP,
      [
        '-d',
        `host=127.0.0.1 port=${primary.port} user=${primary.replicationUser.user}`,
        '-D',
        standbyData,
        '-R',
        '-X',
        'stream',
        '-c',
        'fast',
      ],
      primary.serverUser,
      {
        env: { PGPASSWORD: primary.replicationUser.password, PATH: process.env.PATH ?? '' },
        timeoutMs: 120_000,
      },
    );
    if (r.code !== 0) throw new Error(`pg_basebackup failed: ${r.stderr}`);
    standbyPort = await freePort();
    await startServer({
      binaries: primary.binaries,
      user: primary.serverUser,
      dataDir: standbyData,
      port: standbyPort,
      socketDir: join(standbyRoot, 'sock'),
      logFile: standbyLog,
      settings: { ...defaultSettings(15), wal_keep_size: '1GB' },
    });
  });
  afterAll(async () => {
    if (standbyData)
      await stopServer({
        binaries: primary.binaries,
        user: primary.serverUser,
        dataDir: standbyData,
        mode: 'immediate',
      }).catch(() => undefined);
    if (standbyRoot) rmSync(standbyRoot, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
    await primary?.destroy();
  });

  it('continues on the new timeline without a restart', async () => {
    const storage = createFsStorage({ root: dir });
    const events: PgarkEvent[] = [];
    const repl = {
      user: primary.replicationUser.user,
      password: primary.replicationUser.password,
      ssl: 'disable' as const,
      host: '127.0.0.1',
    };
    const onStandby: WalArchiverHandle = startWalArchiver({
      connection: { ...repl, port: standbyPort },
      storage,
      stanza: 'standby',
      slot: 'arch_standby',
      createSlot: true,
      flushIntervalMs: 300,
      statusIntervalMs: 300,
      onEvent: (e) => events.push(e),
    });
    const onPrimary = startWalArchiver({
      connection: { ...repl, port: primary.port },
      storage,
      stanza: 'primary',
      slot: 'arch_primary',
      createSlot: true,
      flushIntervalMs: 300,
    });

    await primary.query(
      'CREATE TABLE p AS SELECT g, repeat(md5(g::text), 10) v FROM generate_series(1, 60000) g',
    );
    const [{ lsn }] = (await primary.query<{ lsn: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn',
    )) as [{ lsn: string }];
    for (let i = 0; onStandby.stats().flushedLsn < parseLsn(lsn); i++) {
      if (i > 600) throw new Error(`standby archiver did not reach ${lsn}`);
      await sleep(100);
    }

    await promote({
      binaries: primary.binaries,
      user: primary.serverUser,
      dataDir: standbyData,
      logFile: standbyLog,
    });
    const sb = new pg.Client({
      host: '127.0.0.1',
      port: standbyPort,
      user: primary.superuser.user,
      password: primary.superuser.password,
      database: 'postgres',
    });
    await sb.connect();
    await sb.query(
      'CREATE TABLE after_promotion AS SELECT g, repeat(md5(g::text), 10) v FROM generate_series(1, 60000) g',
    );
    const tl = await sb.query<{ tli: number; lsn: string }>(
      'SELECT timeline_id AS tli, pg_current_wal_flush_lsn()::text AS lsn FROM pg_control_checkpoint()',
    );
    const target = parseLsn(tl.rows[0]!.lsn);
    await sb.end();
    for (let i = 0; !(onStandby.stats().timeline === 2 && onStandby.stats().flushedLsn >= target); i++) {
      if (i > 600)
        throw new Error(
          `archiver did not follow to timeline 2 / ${formatLsn(target)}: ${JSON.stringify(onStandby.stats(), (_k, v) => (typeof v === 'bigint' ? formatLsn(v) : v))}`,
        );
      await sleep(100);
    }
    expect(onStandby.stats().state).toBe('streaming');
    expect(onStandby.stats().reconnects).toBe(0);
    await onStandby.stop();
    const r = await onStandby.done;
    expect(r.timeline).toBe(2);
    await onPrimary.stop();
    await onPrimary.done;

    expect(events.some((e) => e.type === 'replication.timeline-switch' && e.toTimeline === 2)).toBe(true);
    expect(events.some((e) => e.type === 'wal.history.durable' && e.timeline === 2)).toBe(true);
    expect(await storage.head('stanzas/standby/wal/history/00000002.history')).toBeDefined();

    const pgWal = join(standbyData, 'pg_wal');
    const old = await checkArchive(storage, 'standby', pgWal, 1);
    expect(old.partial).toBeDefined(); // the old timeline's last segment stays partial
    expect(old.gaps).toEqual([]);
    const next = await checkArchive(storage, 'standby', pgWal, 2);
    expect(next.segments.length).toBeGreaterThanOrEqual(1);
    expect(next.gaps).toEqual([]);
    expect(next.mismatches).toEqual([]);
    expect(next.durableEnd).toBeGreaterThanOrEqual(target);
    // The new timeline starts with the switch segment (same segment number as the old partial).
    expect(next.segments[0]!.substring(8)).toBe(old.partial!.substring(8));
    await storage.close();
  });
});
