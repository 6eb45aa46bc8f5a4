/**
 * Synchronous mode on a directory repository keeps the open segment as one zero-padded
 * `<segment>.partial.padded` file written in place (pwrite + fdatasync per flush, like
 * pg_receivewal). With the archiver (its own process) SIGKILLed under load:
 *
 * 1. the tail is a padded file (no chunk objects), every acknowledged commit lies below its written
 *    extent, and placeWalTail puts it into a pg_wal as it is (the server's bytes, zeros after);
 * 2. a zero page inside the written extent (a write that never reached the disk) does not stop a
 *    restart: the segment is re-streamed from its start and the hole rewritten; a clean stop turns
 *    the padded file into `.partial`;
 * 3. a changed non-zero byte in the padded file is caught by the restart's comparison:
 *    IntegrityError INTEGRITY_WAL_CONFLICT.
 */
import { mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRepository } from '../../src/archive/repository';
import { parseRepositoryKey, walPrefix } from '../../src/archive/repo-layout';
import { writtenExtent } from '../../src/archive/wal-partial';
import { placeWalTail } from '../../src/archive/wal-tail';
import { createFsStorage } from '../../src/storage/fs-storage';
import { formatLsn, parseWalFileName, segmentStartLsn } from '../../src/lsn';
import { startCluster, type TestCluster } from '../harness/postgres';
import { checkArchive } from '../harness/wal-archive-check';
import {
  makeSynchronousStandby,
  maxLsn,
  spawnArchiver,
  startAckedCommits,
  type ArchiverProcess,
} from '../harness/archiver-process';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SEG = 16 * 1024 * 1024;
const PAGE = 8192;

describe('wal archiver synchronous mode, padded segment file (PG16, fs)', () => {
  let cluster: TestCluster;
  let dir: string;
  let walOut: string;
  beforeAll(async () => {
    cluster = await startCluster({ major: 16, settings: { wal_keep_size: '1GB' } });
    dir = mkdtempSync(join(tmpdir(), 'pgark-walpad-'));
    walOut = mkdtempSync(join(tmpdir(), 'pgark-walpad-pgwal-'));
  });
  afterAll(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (walOut) rmSync(walOut, { recursive: true, force: true });
    await cluster?.destroy();
  });

  it('survives SIGKILL, restores the tip from the padded file, tolerates a zero hole, catches a changed byte', async () => {
    const storage = createFsStorage({ root: dir });
    const config = {
      connection: { ...cluster.connectionConfig({ user: cluster.replicationUser }), ssl: 'disable' },
      slot: 'pgark_pad',
      fsRoot: dir,
      synchronous: true,
      // As `pgark wal-archive --synchronous` runs (write + fdatasync on the event loop's thread).
      blockingFlush: true,
    };
    const pgWal = join(cluster.dataDir, 'pg_wal');
    const walObjects = async () => {
      const out: { kind: string; walName: string; key: string }[] = [];
      for await (const o of storage.list(walPrefix('main'))) {
        const p = parseRepositoryKey(o.key);
        if (p && 'walName' in p) out.push({ kind: p.kind, walName: p.walName, key: o.key });
      }
      return out;
    };
    /**
     * Waits until the archiver has flushed at least `bytes` into its current segment and `commits`
     * more commits were acknowledged, then kills it.
     */
    const killInsideSegment = async (p: ArchiverProcess, bytes: number, commits = 0) => {
      const target = acked.length + commits;
      for (let i = 0; Number(p.flushedLsn() % BigInt(SEG)) < bytes || acked.length < target; i++) {
        if (i > 600) throw new Error('the archiver did not flush enough of a segment');
        await sleep(50);
      }
      p.kill('SIGKILL');
      expect(await p.exited).toBe('SIGKILL');
    };

    await cluster.query('CREATE TABLE pad_t (id bigserial PRIMARY KEY, v text)');
    let p = spawnArchiver(config);
    await makeSynchronousStandby(cluster, 'pgark_pad');

    const load = await startAckedCommits(cluster, 'pad_t');
    const { acked, client } = load;

    // --- 1. SIGKILL under load: the tail is one padded file holding every acknowledged commit.
    await killInsideSegment(p, 16 * PAGE, 20);
    const ackedAtKill = acked.length;
    expect(ackedAtKill).toBeGreaterThan(10);
    let objs = await walObjects();
    expect(objs.filter((o) => o.kind === 'wal-partial-chunk')).toEqual([]);
    const padded = objs.filter((o) => o.kind === 'wal-partial-padded');
    expect(padded.length).toBeGreaterThanOrEqual(1);
    const tip = padded[padded.length - 1]!;
    const check = await checkArchive(storage, 'main', pgWal, 1);
    expect(check.mismatches).toEqual([]);
    expect(check.gaps).toEqual([]);
    expect(check.partial).toBe(tip.walName);
    const maxAcked = maxLsn(acked.slice(0, ackedAtKill));
    expect(maxAcked, `acked ${formatLsn(maxAcked)} durable ${formatLsn(check.durableEnd)}`).toBeLessThan(
      check.durableEnd,
    );

    // Restore side: the padded file goes into pg_wal as it is.
    const stanza = await (await openRepository(storage)).openStanza('main');
    const placed = await placeWalTail({ storage, stanza, walDir: walOut, backupTimeline: 1 });
    expect(placed.files.map((f) => f.walName)).toContain(tip.walName);
    expect(placed.endLsn! > maxAcked).toBe(true);
    const placedTip = readFileSync(join(walOut, tip.walName));
    const serverTip = readFileSync(join(pgWal, tip.walName));
    const extent = writtenExtent(placedTip);
    expect(placedTip.length).toBe(SEG);
    expect(placedTip.subarray(0, extent).equals(serverTip.subarray(0, extent))).toBe(true);
    expect(extent).toBeGreaterThan(16 * PAGE);

    // --- 2. A zero page inside the written extent (as after a torn write): the restart rewrites it.
    const tipPath = join(dir, ...tip.key.split('/'));
    const holeAt = 8 * PAGE;
    const fd = openSync(tipPath, 'r+');
    writeSync(fd, Buffer.alloc(PAGE), 0, PAGE, holeAt);
    closeSync(fd);
    p = spawnArchiver(config);
    const before = acked.length;
    for (let i = 0; acked.length <= before + 5; i++) {
      if (i > 300) throw new Error('commits were not released after the restart');
      await sleep(100);
    }
    const { segno } = parseWalFileName(tip.walName, SEG);
    expect(p.flushedLsn()).toBeGreaterThan(segmentStartLsn(segno, SEG) + BigInt(holeAt + PAGE));
    // A clean stop turns the padded file into `.partial` (the bytes are compared with pg_wal).
    await load.stop();
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    objs = await walObjects();
    expect(objs.filter((o) => o.kind === 'wal-partial-padded' || o.kind === 'wal-partial-chunk')).toEqual([]);
    const afterStop = await checkArchive(storage, 'main', pgWal, 1);
    expect(afterStop.mismatches).toEqual([]);
    expect(afterStop.gaps).toEqual([]);
    expect(maxLsn(acked)).toBeLessThan(afterStop.durableEnd);

    // --- 3. Resume from `.partial` (a padded file is created with those bytes), kill, change a byte.
    let stopping = false;
    const loop2 = (async () => {
      while (!stopping) {
        await client.query("INSERT INTO pad_t (v) SELECT repeat('y', 200) FROM generate_series(1, 20)");
      }
    })();
    p = spawnArchiver(config);
    await sleep(300);
    await killInsideSegment(p, Number(afterStop.durableEnd % BigInt(SEG)) + 4 * PAGE);
    objs = await walObjects();
    const tip2 = objs.filter((o) => o.kind === 'wal-partial-padded').pop()!;
    expect(tip2).toBeDefined();
    const tip2Path = join(dir, ...tip2.key.split('/'));
    // A non-zero byte past the `.partial`'s bytes (those are exact and laid over the padded file
    // when read) is WAL only the padded file holds: change it.
    const exactEnd = tip2.walName === afterStop.partial ? Number(afterStop.durableEnd % BigInt(SEG)) : 0;
    const pageStart = (Math.floor(exactEnd / PAGE) + 1) * PAGE;
    const page = Buffer.alloc(PAGE);
    const fd2 = openSync(tip2Path, 'r+');
    readSync(fd2, page, 0, PAGE, pageStart);
    let at = 64;
    while (at < PAGE && page[at] === 0) at++;
    expect(at).toBeLessThan(PAGE);
    writeSync(fd2, Buffer.from([page[at] === 1 ? 2 : 1]), 0, 1, pageStart + at);
    closeSync(fd2);
    // The commits waiting for the killed archiver are released by turning synchronous mode off.
    await cluster.query("ALTER SYSTEM SET synchronous_standby_names = ''");
    await cluster.query('SELECT pg_reload_conf()');
    stopping = true;
    await loop2;
    await client.end();
    p = spawnArchiver(config);
    const exit = await Promise.race([p.exited, sleep(60_000).then(() => 'still running')]);
    if (exit === 'still running') p.kill('SIGKILL');
    expect(exit).toBe(1);
    const error = p.events.find((e) => e.type === 'error');
    expect(error?.code).toBe('INTEGRITY_WAL_CONFLICT');
    await storage.close();
  }, 240_000);
});
