/**
 * Base backups taken from a standby (issue 5; protocol notes §8.5), with the default
 * self-contained WAL (`wal: 'stream'`) into a directory repository:
 * 1. primary P → streaming standby A; back up A while P keeps writing; restore, start, compare the
 *    data with P's as of the backup's end; catalog LSNs and timelines (PG16, and PG14's legacy
 *    protocol).
 * 2. P → A → cascading standby B; a slow backup of B, during which A is promoted and written to, so
 *    B follows A onto timeline 2: the backup starts on timeline 1 and ends on timeline 2, its manifest
 *    has two WAL-Ranges, its own WAL holds 00000002.history and every segment from start to end, and
 *    the restored cluster starts and has the data written on timeline 2 before the backup's end.
 * 3. A standby promoted during its own backup: REPLICATION_STANDBY_PROMOTED, and no visible backup.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listBackups,
  parseBackupManifest,
  restoreBackup,
  runBaseBackup,
  ReplicationError,
  type BaseBackupResult,
  type PgarkEvent,
  type Storage,
} from '../../src/index';
import {
  lsnToSegmentNumber,
  parseLsn,
  parseTimelineHistory,
  parseWalFileName,
  type Lsn,
} from '../../src/lsn';
import { chownTree, startServer, stopServer } from '../../src/local-server';
import { createFsStorage } from '../../src/storage/fs-storage';
import { stanzaPrefix } from '../../src/archive/repo-layout';
import { freePort, startCluster, type Major, type TestCluster } from '../harness/postgres';
import { DATASET_TABLES, generateDataset, tableChecksums, writeLoad } from '../harness/datagen';
import { removeScratch, scratchDir } from './base-backup-helpers';
import {
  startStreamingStandby,
  waitReplayed,
  waitStreaming,
  type StandbyServer,
  type Upstream,
} from './standby-helpers';
import { waitFor } from './restore-helpers';

const SEG = 16 * 1024 * 1024;

async function readAll(storage: Storage, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await storage.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function newRepo(stem: string): { dir: string; storage: Storage } {
  const dir = scratchDir(stem);
  return { dir, storage: createFsStorage({ root: dir }) };
}

/**
 * Restores `backup` into an empty directory, starts it with the source's binaries and returns a
 * client; `stop` stops and removes it.
 */
async function restoreAndStart(
  source: Upstream,
  storage: Storage,
  backup: BaseBackupResult,
): Promise<{ client: pg.Client; stop(): Promise<void> }> {
  const dir = scratchDir('bb-standby-restored');
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'sock');
  mkdirSync(socketDir);
  chownTree(dir, source.serverUser);
  await restoreBackup({
    storage,
    targetDir: dataDir,
    backupId: backup.backupId,
    owner: { uid: source.serverUser.uid, gid: source.serverUser.gid },
  });
  // A standby's backup carries its standby.signal; restoreBackup removes it (and writes none here),
  // so the copy recovers to the backup's end and opens instead of following the live upstream.
  expect(existsSync(join(dataDir, 'standby.signal'))).toBe(false);
  const port = await freePort();
  await startServer({
    binaries: source.binaries,
    user: source.serverUser,
    dataDir,
    port,
    socketDir,
    logFile: join(dir, 'server.log'),
  });
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: source.superuser.password,
    database: 'postgres',
  });
  client.on('error', () => undefined);
  await client.connect();
  return {
    client,
    async stop() {
      await client.end().catch(() => undefined);
      await stopServer({ binaries: source.binaries, user: source.serverUser, dataDir, mode: 'fast' });
      removeScratch(dir);
    },
  };
}

/** Size of all databases in kB (what a backup sends, roughly). */
async function databaseKb(s: Upstream): Promise<number> {
  const r = await s.query<{ kb: number }>(
    `SELECT (sum(pg_database_size(oid)) / 1024)::int AS kb FROM pg_database`,
  );
  return r[0]!.kb;
}

/** The WAL objects of a backup, by file name. */
function walNames(backup: BaseBackupResult): string[] {
  return backup.entry.objects.filter((o) => o.kind === 'wal').map((o) => o.name.replace(/^wal\//, ''));
}

/** Every segment from the start's to the end's is in the backup, on the timeline that owns it. */
function expectSegmentsCover(
  names: string[],
  startLsn: Lsn,
  endLsn: Lsn,
  timelineOf: (segno: bigint) => number,
): void {
  const segs = names.filter((n) => !n.endsWith('.history')).map((n) => parseWalFileName(n, SEG));
  const first = lsnToSegmentNumber(startLsn, SEG);
  const last = lsnToSegmentNumber(endLsn, SEG);
  for (let s = first; s <= last; s++) {
    expect(
      segs.some((p) => p.segno === s && p.timeline === timelineOf(s)),
      `segment ${s} on timeline ${timelineOf(s)}`,
    ).toBe(true);
  }
}

for (const major of [16, 14] as Major[]) {
  describe(`base backup of a streaming standby (PG${major}, fs, wal stream)`, () => {
    let primary: TestCluster;
    let standby: StandbyServer | undefined;
    let repo: { dir: string; storage: Storage } | undefined;

    beforeAll(async () => {
      primary = await startCluster({ major, settings: { wal_keep_size: '256MB' } });
      await generateDataset(primary, { sizeMb: 8 });
      standby = await startStreamingStandby(primary, `sb${major}`);
      repo = newRepo(`bb-standby-repo${major}`);
    });
    afterAll(async () => {
      await standby?.destroy();
      await primary?.destroy();
      removeScratch(repo?.dir);
    });

    it('restores to the primary data as of the backup end; catalog LSNs and timelines', async () => {
      const sb = standby!;
      const load = await writeLoad(primary, { ms: 5 });
      let backup: BaseBackupResult;
      let sbMaxBefore: bigint;
      try {
        // The load table must exist on the standby before we read it there.
        await waitFor('write_load rows on the standby', async () => {
          const r = await sb.query<{ t: string | null }>(
            `SELECT to_regclass('public.write_load')::text AS t`,
          );
          if (!r[0]?.t) return undefined;
          const m = await sb.query<{ n: string | null }>(`SELECT max(id)::text AS n FROM public.write_load`);
          return m[0]?.n ?? undefined;
        });
        sbMaxBefore = BigInt(
          (await sb.query<{ n: string }>(`SELECT max(id)::text AS n FROM public.write_load`))[0]!.n,
        );
        backup = await runBaseBackup({
          connection: sb.connection,
          storage: repo!.storage,
          checkpoint: 'fast',
          label: 'standby',
        });
      } finally {
        await load.stop();
      }
      // The catalog: one timeline, start ≤ end, and both as the server reported them.
      expect(backup.startTimeline).toBe(1);
      expect(backup.endTimeline).toBe(1);
      expect(backup.endLsn).toBeGreaterThanOrEqual(backup.startLsn);
      const [catalog] = await listBackups({ storage: repo!.storage });
      expect(catalog!.backupId).toBe(backup.backupId);
      expect(catalog!.startTimeline).toBe(1);
      expect(catalog!.endTimeline).toBe(1);
      expect(parseLsn(catalog!.startLsn)).toBe(backup.startLsn);
      expect(parseLsn(catalog!.endLsn)).toBe(backup.endLsn);
      expect(catalog!.walMethod).toBe('stream');
      // The end is at most where the primary is now (a standby ends at its minRecoveryPoint).
      const { cur } = (await primary.query<{ cur: string }>(`SELECT pg_current_wal_lsn()::text AS cur`))[0]!;
      expect(backup.endLsn).toBeLessThanOrEqual(parseLsn(cur));
      expectSegmentsCover(walNames(backup), backup.startLsn, backup.endLsn, () => 1);
      const manifest = parseBackupManifest(
        await readAll(repo!.storage, backup.entry.objects.find((o) => o.kind === 'manifest')!.key),
      );
      expect(manifest.walRanges).toEqual([{ timeline: 1, startLsn: backup.startLsn, endLsn: backup.endLsn }]);

      const restored = await restoreAndStart(sb, repo!.storage, backup);
      try {
        const q = async (sql: string) => (await restored.client.query(sql)).rows;
        expect(await tableChecksums(q, DATASET_TABLES)).toEqual(
          await tableChecksums((sql) => primary.query(sql), DATASET_TABLES),
        );
        // write_load is written by one connection in id order: the restored table is the prefix of
        // the primary's up to its max, and holds at least what the standby had replayed before.
        const [{ max }] = (await q(`SELECT max(id)::text AS max FROM public.write_load`)) as [
          { max: string },
        ];
        expect(BigInt(max)).toBeGreaterThanOrEqual(sbMaxBefore);
        const prefix = `(SELECT * FROM public.write_load WHERE id <= ${BigInt(max)}) AS p`;
        const sum = `SELECT count(*)::text AS n, md5(coalesce(sum(hashtextextended(p::text, 0)), 0)::text) AS h FROM ${prefix}`;
        expect(await q(sum)).toEqual(await primary.query(sum));
      } finally {
        await restored.stop();
      }
    }, 300_000);
  });
}

describe('base backup of a cascading standby whose upstream is promoted mid-backup (PG16)', () => {
  let primary: TestCluster;
  let a: StandbyServer | undefined;
  let b: StandbyServer | undefined;
  let repo: { dir: string; storage: Storage } | undefined;

  beforeAll(async () => {
    primary = await startCluster({ major: 16, settings: { wal_keep_size: '256MB' } });
    await generateDataset(primary, { sizeMb: 8 });
    // A keeps WAL for B; B retries its upstream quickly once A's timeline ends.
    a = await startStreamingStandby(primary, 'sba', { wal_keep_size: '256MB' });
    b = await startStreamingStandby(a, 'sbb', { wal_retrieve_retry_interval: '200ms' });
    repo = newRepo('bb-cascade-repo');
  });
  afterAll(async () => {
    await b?.destroy();
    await a?.destroy();
    await primary?.destroy();
    removeScratch(repo?.dir);
  });

  it('starts on timeline 1, ends on timeline 2, carries the switch and restores', async () => {
    const sa = a!;
    const sb = b!;
    // Slow enough that the backup of B is still running after A's promotion and B's switch: about 40 s.
    const kb = await databaseKb(sb);
    const maxRateKbps = Math.max(32, Math.round(kb / 40));
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    const events: PgarkEvent[] = [];
    const backupP = runBaseBackup({
      connection: sb.connection,
      storage: repo!.storage,
      checkpoint: 'fast',
      label: 'cascade',
      maxRateKbps,
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'backup.started') started();
      },
    });
    let done = false;
    backupP.then(
      () => (done = true),
      () => (done = true),
    );
    await Promise.race([startedP, backupP]);

    await sa.promote();
    await sa.query(
      `CREATE TABLE after_switch AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g`,
    );
    await sa.query(`CHECKPOINT`);
    const { lsn } = (await sa.query<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`))[0]!;
    await waitStreaming(sa, 'sbb');
    await waitReplayed(sb, lsn);
    // A restartpoint on B moves its minRecoveryPoint (the backup's end on a standby) onto timeline 2.
    await sb.query(`CHECKPOINT`);
    expect(done, 'the backup of B ended before B followed A onto timeline 2: lower maxRateKbps').toBe(false);

    const backup = await backupP;
    expect(backup.startTimeline).toBe(1);
    expect(backup.endTimeline).toBe(2);
    const [catalog] = await listBackups({ storage: repo!.storage });
    expect(catalog!.startTimeline).toBe(1);
    expect(catalog!.endTimeline).toBe(2);
    expect(parseLsn(catalog!.endLsn)).toBe(backup.endLsn);
    expect(events.some((e) => e.type === 'replication.timeline-switch')).toBe(true);

    // The manifest: newest timeline first, the switch point where timeline 1 ends and 2 begins.
    const manifest = parseBackupManifest(
      await readAll(repo!.storage, backup.entry.objects.find((o) => o.kind === 'manifest')!.key),
    );
    expect(manifest.walRanges.length).toBeGreaterThan(1);
    const history = parseTimelineHistory(
      await readAll(repo!.storage, backup.entry.objects.find((o) => o.name === 'wal/00000002.history')!.key),
    );
    const switchLsn = history.find((h) => h.timeline === 1)!.switchLsn;
    expect(manifest.walRanges).toEqual([
      { timeline: 2, startLsn: switchLsn, endLsn: backup.endLsn },
      { timeline: 1, startLsn: backup.startLsn, endLsn: switchLsn },
    ]);
    // The backup's own WAL: the history file, and every segment from start to end on the timeline
    // recovery reads it from (the switch segment from timeline 2, whose copy holds timeline 1's WAL
    // up to the switch).
    const switchSeg = lsnToSegmentNumber(switchLsn, SEG);
    expectSegmentsCover(walNames(backup), backup.startLsn, backup.endLsn, (s) => (s < switchSeg ? 1 : 2));
    expect(walNames(backup)).toContain('00000002.history');

    const restored = await restoreAndStart(sb, repo!.storage, backup);
    try {
      const q = async (sql: string) => (await restored.client.query(sql)).rows;
      // Recovery followed the backup's WAL onto timeline 2 (crash recovery from backup_label).
      const [info] = (await q(
        `SELECT timeline_id AS tli, pg_walfile_name(pg_current_wal_lsn()) AS f FROM pg_control_checkpoint()`,
      )) as [{ tli: number; f: string }];
      expect(info.tli).toBe(2);
      expect(parseWalFileName(info.f, SEG).timeline).toBe(2);
      expect(await tableChecksums(q, [...DATASET_TABLES, 'public.after_switch'])).toEqual(
        await tableChecksums((sql) => sa.query(sql), [...DATASET_TABLES, 'public.after_switch']),
      );
    } finally {
      await restored.stop();
    }
  }, 300_000);

  it('a standby promoted during its own backup fails with REPLICATION_STANDBY_PROMOTED and leaves no backup', async () => {
    const sb = b!;
    const own = newRepo('bb-promoted-repo');
    try {
      const kb = await databaseKb(sb);
      let started!: () => void;
      const startedP = new Promise<void>((r) => (started = r));
      const backupP = runBaseBackup({
        connection: sb.connection,
        storage: own.storage,
        checkpoint: 'fast',
        maxRateKbps: Math.max(32, Math.round(kb / 30)),
        onEvent: (e) => {
          if (e.type === 'backup.started') started();
        },
      });
      backupP.catch(() => undefined);
      await Promise.race([startedP, backupP]);
      await sb.promote();
      const err = await backupP.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ReplicationError);
      expect((err as ReplicationError).code).toBe('REPLICATION_STANDBY_PROMOTED');
      expect(await listBackups({ storage: own.storage })).toEqual([]);
      // Nothing of the attempt is left either (archives, manifest, WAL objects).
      const left: string[] = [];
      for await (const o of own.storage.list(`${stanzaPrefix('main')}backups/`)) left.push(o.key);
      expect(left).toEqual([]);
    } finally {
      removeScratch(own.dir);
    }
  }, 300_000);
});
