/**
 * Small replication commands and connection failures against real servers, diagonally over
 * PostgreSQL 14-18 (each major gets some commands, not every command every major), plus the bad
 * inputs: wrong password, refused port, silent server (timeout), role without REPLICATION, illegal
 * slot name, slot exists / missing / in use, READ_REPLICATION_SLOT on 14, a connection cut in the
 * middle of a message, a backend terminated during a copy, a message longer than maxMessageBytes,
 * a server older than 14. Every error collected is serialised and searched for the passwords.
 */
import net from 'node:net';
import { inspect } from 'node:util';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Major, type TestCluster } from '../harness/postgres';
import { startTcpProxy } from '../support/tcp-proxy';
import {
  ConfigError,
  ConnectionError,
  PostgresServerError,
  ProtocolError,
  ReplicationError,
  ReplicationConnection,
  createReplicationSlot,
  dropReplicationSlot,
  formatLsn,
  getWalSegmentSize,
  identifySystem,
  parseTimelineHistory,
  readReplicationSlot,
  showSetting,
  timelineHistory,
  type PgarkEvent,
  type ReplicationConnectionOptions,
} from '../../src/index';

/** Everything that could leak a secret: errors, log lines, events. Checked at the end. */
const collected: unknown[] = [];
const secrets: string[] = [];
const logLines: string[] = [];
const events: PgarkEvent[] = [];
const logger = {
  debug: (m: string, f?: object) => logLines.push(m + JSON.stringify(f ?? {})),
  info: (m: string, f?: object) => logLines.push(m + JSON.stringify(f ?? {})),
  warn: (m: string, f?: object) => logLines.push(m + JSON.stringify(f ?? {})),
  error: (m: string, f?: object) => logLines.push(m + JSON.stringify(f ?? {})),
};

function opts(
  cluster: TestCluster,
  extra: Partial<ReplicationConnectionOptions> = {},
): ReplicationConnectionOptions {
  secrets.push(cluster.replicationUser.password, cluster.superuser.password);
  return {
    host: cluster.host,
    port: cluster.port,
    user: cluster.replicationUser.user,
    password: cluster.replicationUser.password,
    ssl: 'disable',
    logger,
    onEvent: (e) => events.push(e),
    ...extra,
  };
}

/** Awaits a promise expected to fail within `ms`; returns the error (and records it for the leak check). */
async function failure(p: Promise<unknown>, ms = 20_000): Promise<Error> {
  const t0 = Date.now();
  let err: unknown;
  try {
    await Promise.race([
      p,
      new Promise((_, rej) => setTimeout(() => rej(new Error('did not fail in time')), ms)),
    ]);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a failure').toBeInstanceOf(Error);
  expect((err as Error).message).not.toBe('did not fail in time');
  expect(Date.now() - t0).toBeLessThan(ms);
  collected.push(err);
  return err as Error;
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const ev of stream) void ev;
}

async function promoteToTimeline2(cluster: TestCluster): Promise<void> {
  // Archive recovery (recovery.signal, restore_command 'false') always ends on a new timeline.
  await cluster.stop('fast');
  const sig = join(cluster.dataDir, 'recovery.signal');
  writeFileSync(sig, '');
  const st = statSync(cluster.dataDir);
  chownSync(sig, st.uid, st.gid);
  await cluster.start();
  for (let i = 0; i < 100; i++) {
    const [r] = await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    if (!r?.r) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('server did not leave recovery');
}

function useCluster(major: Major, settings?: Record<string, string>): () => TestCluster {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    cluster = await startCluster({ major, ...(settings ? { settings } : {}) });
  });
  afterAll(async () => {
    await cluster?.destroy();
  });
  return () => cluster!;
}

describe('PostgreSQL 14', () => {
  const cluster = useCluster(14);
  let conn: ReplicationConnection;
  beforeAll(async () => {
    conn = await ReplicationConnection.connect(opts(cluster()));
  });
  afterAll(async () => conn?.close());

  it('identifySystem on a physical connection', async () => {
    expect(conn.serverVersionNum).toBeGreaterThanOrEqual(140000);
    expect(conn.serverVersionNum).toBeLessThan(150000);
    const sys = await identifySystem(conn);
    expect(sys.systemIdentifier).toMatch(/^\d{15,20}$/);
    expect(sys.timeline).toBe(1);
    expect(sys.xlogPos).toBeGreaterThan(0n);
    expect(sys.dbName).toBeNull();
    expect(conn.target).not.toContain(cluster().replicationUser.password);
  });

  it('creates a slot with the legacy grammar; duplicate → REPLICATION_SLOT_EXISTS; drop; drop again → NOT_FOUND', async () => {
    const created = await createReplicationSlot(conn, { name: 'pg14_slot', reserveWal: true });
    expect(created.slotName).toBe('pg14_slot');
    const [row] = await cluster().query<{ restart_lsn: string | null }>(
      "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pg14_slot'",
    );
    expect(row?.restart_lsn).toBeTruthy(); // RESERVE_WAL took effect
    const dup = await failure(createReplicationSlot(conn, { name: 'pg14_slot' }));
    expect(dup).toBeInstanceOf(ReplicationError);
    expect((dup as ReplicationError).code).toBe('REPLICATION_SLOT_EXISTS');
    expect((dup as ReplicationError).sqlstate).toBe('42710');
    await dropReplicationSlot(conn, 'pg14_slot');
    const missing = await failure(dropReplicationSlot(conn, 'pg14_slot'));
    expect((missing as ReplicationError).code).toBe('REPLICATION_SLOT_NOT_FOUND');
    // The connection is still usable after server errors.
    expect((await identifySystem(conn)).timeline).toBe(1);
  });

  it('legacy BASE_BACKUP: one CopyOut per archive plus the manifest CopyOut, then the end LSN', async () => {
    const phases: { start: number; bytes: number }[] = [];
    let rowsAfterLastCopy = 0;
    let lastCopyDone = false;
    for await (const ev of conn.copyOut("BASE_BACKUP LABEL 'legacy' FAST MANIFEST 'yes' NOWAIT")) {
      if (ev.type === 'copyOutStart') {
        phases.push({ start: phases.length, bytes: 0 });
        lastCopyDone = false;
      }
      if (ev.type === 'copyData') phases[phases.length - 1]!.bytes += ev.data.length;
      if (ev.type === 'copyDone') lastCopyDone = true;
      if (ev.type === 'dataRow' && lastCopyDone) rowsAfterLastCopy++;
    }
    expect(phases).toHaveLength(2); // base.tar, backup_manifest (no tablespaces)
    expect(phases[0]!.bytes).toBeGreaterThan(1024 * 1024);
    expect(phases[1]!.bytes).toBeGreaterThan(100);
    expect(rowsAfterLastCopy).toBe(1);
  });

  it('READ_REPLICATION_SLOT on 14 → REPLICATION_UNSUPPORTED_VERSION without sending', async () => {
    const err = await failure(readReplicationSlot(conn, 'any'));
    expect(err).toBeInstanceOf(ReplicationError);
    expect((err as ReplicationError).code).toBe('REPLICATION_UNSUPPORTED_VERSION');
  });

  it('TIMELINE_HISTORY of timeline 1 → PostgresServerError 58P01 with all fields', async () => {
    const err = await failure(timelineHistory(conn, 1));
    expect(err).toBeInstanceOf(PostgresServerError);
    const e = err as PostgresServerError;
    expect(e.sqlstate).toBe('58P01');
    expect(e.fields.severity).toBe('ERROR');
    expect(e.fields.file).toBeTruthy();
    expect(e.fields.routine).toBeTruthy();
  });

  it('illegal slot names → CONFIG_INVALID_SLOT_NAME before anything is sent', async () => {
    for (const name of ['Bad', 'with-dash', '', 'x'.repeat(64), 'a"b']) {
      const err = await failure(createReplicationSlot(conn, { name }));
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('CONFIG_INVALID_SLOT_NAME');
    }
    expect((await identifySystem(conn)).timeline).toBe(1);
  });
});

describe('PostgreSQL 15', () => {
  const cluster = useCluster(15);

  it('SHOW, wal segment size, READ_REPLICATION_SLOT, slot in use (55006), DROP … WAIT', async () => {
    const a = await ReplicationConnection.connect(opts(cluster()));
    const b = await ReplicationConnection.connect(opts(cluster()));
    try {
      expect(await getWalSegmentSize(a)).toBe(16 * 1024 * 1024);
      expect(Number(await showSetting(a, 'server_version_num'))).toBe(a.serverVersionNum);
      const unknown = await failure(showSetting(a, 'no_such_setting'));
      expect((unknown as PostgresServerError).sqlstate).toBe('42704');
      const badName = await failure(showSetting(a, 'x; DROP'));
      expect((badName as ConfigError).code).toBe('CONFIG_INVALID_IDENTIFIER');

      expect(await readReplicationSlot(a, 'pg15_slot')).toBeUndefined();
      await createReplicationSlot(a, { name: 'pg15_slot', reserveWal: true });
      const info = await readReplicationSlot(a, 'pg15_slot');
      expect(info?.slotType).toBe('physical');
      expect(info?.restartLsn).toBeGreaterThan(0n);
      expect(info?.restartTimeline).toBe(1);

      // Make the slot active on connection b, then try to drop it from a.
      const sys = await identifySystem(b);
      const stream = b.copyBoth(
        `START_REPLICATION SLOT "pg15_slot" PHYSICAL ${formatLsn(sys.xlogPos - (sys.xlogPos % 8192n))} TIMELINE ${sys.timeline}`,
      );
      const first = await stream.next();
      expect(first.value?.type).toBe('copyBothStart');
      const inUse = await failure(dropReplicationSlot(a, 'pg15_slot'));
      expect((inUse as ReplicationError).code).toBe('REPLICATION_SLOT_IN_USE');
      expect((inUse as ReplicationError).sqlstate).toBe('55006');
      expect((inUse as ReplicationError).slotName).toBe('pg15_slot');
      b.sendCopyDone();
      const after: string[] = [];
      for await (const ev of stream) after.push(ev.type);
      expect(after).toContain('copyDone');
      expect(after.filter((t) => t === 'commandComplete').length).toBeGreaterThanOrEqual(1);
      await dropReplicationSlot(a, 'pg15_slot', { wait: true });
      expect(await readReplicationSlot(a, 'pg15_slot')).toBeUndefined();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('PostgreSQL 16: connection failures', () => {
  const cluster = useCluster(16);

  it('wrong password → CONNECTION_AUTH_FAILED (28P01)', async () => {
    secrets.push('definitely-wrong-pw-9137');
    const err = await failure(
      ReplicationConnection.connect(opts(cluster(), { password: 'definitely-wrong-pw-9137' })),
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).code).toBe('CONNECTION_AUTH_FAILED');
    expect((err as ConnectionError).sqlstate).toBe('28P01');
    const none = await failure(ReplicationConnection.connect(opts(cluster(), { password: undefined })));
    expect((none as ConnectionError).code).toBe('CONNECTION_AUTH_FAILED');
  });

  it('role without REPLICATION → CONNECTION_PERMISSION_DENIED (42501 or 28000)', async () => {
    const pw = 'norepl-pw-5521-secret';
    secrets.push(pw);
    await cluster().query(`CREATE ROLE norepl LOGIN PASSWORD '${pw}'`);
    const err = await failure(
      ReplicationConnection.connect(opts(cluster(), { user: 'norepl', password: pw })),
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).code).toBe('CONNECTION_PERMISSION_DENIED');
    expect(['42501', '28000']).toContain((err as ConnectionError).sqlstate);
  });

  it('refused port → CONNECTION_REFUSED', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const err = await failure(ReplicationConnection.connect(opts(cluster(), { port })));
    expect((err as ConnectionError).code).toBe('CONNECTION_REFUSED');
  });

  it('a server that accepts but never answers → CONNECTION_TIMEOUT in bounded time', async () => {
    const sockets: net.Socket[] = [];
    const srv = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      const err = await failure(
        ReplicationConnection.connect(opts(cluster(), { port, connectTimeoutMs: 500 })),
        5_000,
      );
      expect((err as ConnectionError).code).toBe('CONNECTION_TIMEOUT');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('message longer than maxMessageBytes → PROTOCOL_MESSAGE_TOO_LONG, connection closed', async () => {
    const conn = await ReplicationConnection.connect(opts(cluster(), { maxMessageBytes: 4096 }));
    const err = await failure(drain(conn.copyOut("BASE_BACKUP (LABEL 'too-long', CHECKPOINT 'fast')")));
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('PROTOCOL_MESSAGE_TOO_LONG');
    expect(conn.closed).toBe(true);
    const again = await failure(conn.query('IDENTIFY_SYSTEM'));
    expect(again).toBeInstanceOf(ProtocolError);
    await conn.close();
  });

  it('connection cut in the middle of a message → CONNECTION_CLOSED', async () => {
    const proxy = await startTcpProxy(cluster().host, cluster().port);
    try {
      const conn = await ReplicationConnection.connect(opts(cluster(), { port: proxy.port }));
      const stream = conn.copyOut("BASE_BACKUP (LABEL 'cut', CHECKPOINT 'fast')");
      proxy.cutAfterServerBytes(200_003);
      const err = await failure(drain(stream));
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as ConnectionError).code).toBe('CONNECTION_CLOSED');
      expect(conn.closed).toBe(true);
      await conn.close();
    } finally {
      await proxy.close();
    }
  });

  it('backend terminated during a copy → CONNECTION_CLOSED (with the FATAL sqlstate when delivered)', async () => {
    const conn = await ReplicationConnection.connect(opts(cluster()));
    const stream = conn.copyOut("BASE_BACKUP (LABEL 'terminated', CHECKPOINT 'fast')");
    // Pull a little, then leave the rest unpulled (the socket pauses) and kill the walsender.
    for (let i = 0; i < 5; i++) await stream.next();
    await cluster().query('SELECT pg_terminate_backend($1)', [conn.processId]);
    const err = await failure(drain(stream));
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).code).toBe('CONNECTION_CLOSED');
    if ((err as ConnectionError).sqlstate !== undefined)
      expect((err as ConnectionError).sqlstate).toBe('57P01');
    await conn.close();
  });

  it('a server older than 14 → REPLICATION_UNSUPPORTED_VERSION (server_version rewritten in transit)', async () => {
    // The only old server available is a real one whose ParameterStatus we rewrite to 13.x.
    const proxy = await startTcpProxy(cluster().host, cluster().port, {
      transformServer: (chunk) => {
        const i = chunk.indexOf('server_version\0');
        if (i >= 0) chunk[i + 'server_version\0'.length + 1] = '3'.charCodeAt(0); // "16.x" → "13.x"
        return chunk;
      },
    });
    try {
      const err = await failure(ReplicationConnection.connect(opts(cluster(), { port: proxy.port })));
      expect(err).toBeInstanceOf(ReplicationError);
      expect((err as ReplicationError).code).toBe('REPLICATION_UNSUPPORTED_VERSION');
    } finally {
      await proxy.close();
    }
  });

  it('TLS: require against a server without ssl → CONNECTION_TLS_FAILED; prefer falls back to plain TCP', async () => {
    const err = await failure(ReplicationConnection.connect(opts(cluster(), { ssl: 'require' })));
    expect((err as ConnectionError).code).toBe('CONNECTION_TLS_FAILED');
    const conn = await ReplicationConnection.connect(opts(cluster(), { ssl: 'prefer' }));
    expect((await identifySystem(conn)).timeline).toBe(1);
    await conn.close();
  });

  it('TLS: require, verify-ca and verify-full against a self-signed server certificate', async () => {
    // Certificate for 127.0.0.1, written into the data directory (owned by the server user), ssl turned on by reload.
    const dir = cluster().dataDir;
    const crt = join(dir, 'test-server.crt');
    const key = join(dir, 'test-server.key');
    const other = join(dir, 'test-other.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        crt,
      ],
      { stdio: 'ignore' },
    );
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=other',
        '-keyout',
        join(dir, 'test-other.key'),
        '-out',
        other,
      ],
      { stdio: 'ignore' },
    );
    const st = statSync(dir);
    for (const f of [crt, key]) chownSync(f, st.uid, st.gid);
    chmodSync(key, 0o600);
    await cluster().query(`ALTER SYSTEM SET ssl_cert_file = '${crt}'`);
    await cluster().query(`ALTER SYSTEM SET ssl_key_file = '${key}'`);
    await cluster().query('ALTER SYSTEM SET ssl = on');
    await cluster().query('SELECT pg_reload_conf()');
    await new Promise((r) => setTimeout(r, 500));
    const ca = readFileSync(crt);
    for (const ssl of ['require', { mode: 'verify-ca', ca }, { mode: 'verify-full', ca }] as const) {
      const conn = await ReplicationConnection.connect(opts(cluster(), { ssl }));
      const [row] = await cluster().query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = $1', [
        conn.processId,
      ]);
      expect(row?.ssl).toBe(true);
      expect((await identifySystem(conn)).timeline).toBe(1);
      await conn.close();
    }
    const wrongCa = await failure(
      ReplicationConnection.connect(
        opts(cluster(), { ssl: { mode: 'verify-full', ca: readFileSync(other) } }),
      ),
    );
    expect((wrongCa as ConnectionError).code).toBe('CONNECTION_TLS_FAILED');
    const noCa = await failure(ReplicationConnection.connect(opts(cluster(), { ssl: 'verify-full' })));
    expect((noCa as ConnectionError).code).toBe('CONNECTION_TLS_FAILED');
    const bad = await failure(
      ReplicationConnection.connect(opts(cluster(), { ssl: 'require', password: 'wrong-over-tls-pw-77' })),
    );
    secrets.push('wrong-over-tls-pw-77');
    expect((bad as ConnectionError).code).toBe('CONNECTION_AUTH_FAILED');
    await cluster().query('ALTER SYSTEM SET ssl = off');
    await cluster().query('SELECT pg_reload_conf()');
  });

  it('close() is idempotent and a closed connection refuses commands', async () => {
    const conn = await ReplicationConnection.connect(opts(cluster()));
    await Promise.all([conn.close(), conn.close()]);
    await conn.close();
    const err = await failure(conn.query('IDENTIFY_SYSTEM'));
    expect((err as ConnectionError).code).toBe('CONNECTION_CLOSED');
  });
});

describe('PostgreSQL 17: CopyOut with backpressure', () => {
  const cluster = useCluster(17);

  it('BASE_BACKUP: the socket pauses while the consumer does not pull; memory stays bounded; results after CopyDone arrive', async () => {
    const highWaterMarkBytes = 256 * 1024;
    const conn = await ReplicationConnection.connect(opts(cluster(), { highWaterMarkBytes }));
    try {
      const types: string[] = [];
      let maxBuffered = 0;
      let copyBytes = 0;
      let slowPulls = 0;
      const rowsAfterCopy: (string | null)[][] = [];
      let copyDone = false;
      for await (const ev of conn.copyOut("BASE_BACKUP (LABEL 'bp', CHECKPOINT 'fast', MANIFEST 'yes')")) {
        if (types[types.length - 1] !== ev.type) types.push(ev.type);
        maxBuffered = Math.max(maxBuffered, conn.stats().bufferedBytes);
        if (ev.type === 'copyData') {
          copyBytes += ev.data.length;
          if (slowPulls < 40) {
            slowPulls++;
            await new Promise((r) => setTimeout(r, 20)); // a slow consumer: the server must wait
          }
        }
        if (ev.type === 'copyDone') copyDone = true;
        if (ev.type === 'dataRow' && copyDone)
          rowsAfterCopy.push(ev.values.map((v) => v?.toString() ?? null));
      }
      expect(conn.stats().pauses).toBeGreaterThan(0);
      // highWaterMark + one message (≤ 32 KiB + 1) + socket chunks delivered before the pause.
      expect(maxBuffered).toBeLessThan(highWaterMarkBytes + 256 * 1024);
      expect(copyBytes).toBeGreaterThan(10 * 1024 * 1024);
      expect(types[0]).toBe('rowDescription');
      expect(types).toContain('copyOutStart');
      expect(rowsAfterCopy).toHaveLength(1); // the end LSN result set
      expect(rowsAfterCopy[0]![1]).toBe('1');
      // The connection is reusable after the command.
      expect((await identifySystem(conn)).timeline).toBe(1);
    } finally {
      await conn.close();
    }
  });

  it('BASE_BACKUP with leaseCopyData: released payloads let read slabs be reused; a payload held is never overwritten', async () => {
    const conn = await ReplicationConnection.connect(opts(cluster()));
    try {
      const held: { data: Buffer; copy: Buffer }[] = [];
      let payloads = 0;
      let copyBytes = 0;
      const stream = conn.copyOut("BASE_BACKUP (LABEL 'lease', CHECKPOINT 'fast', MANIFEST 'yes')", {
        leaseCopyData: true,
      });
      for await (const ev of stream) {
        if (ev.type !== 'copyData') continue;
        expect(ev.release).toBeTypeOf('function');
        copyBytes += ev.data.length;
        // Every 500th payload is kept (its lease never released), the others released at once.
        if (payloads++ % 500 === 0) held.push({ data: ev.data, copy: Buffer.from(ev.data) });
        else ev.release!();
      }
      expect(copyBytes).toBeGreaterThan(10 * 1024 * 1024);
      expect(conn.stats().readSlabsReused).toBeGreaterThan(0);
      expect(held.length).toBeGreaterThan(1);
      for (const h of held) expect(h.data.equals(h.copy)).toBe(true);
      // Without the option: no release, nothing reused.
      const before = conn.stats().readSlabsReused;
      for await (const ev of conn.copyOut("BASE_BACKUP (LABEL 'no-lease', CHECKPOINT 'fast')")) {
        if (ev.type === 'copyData') expect(ev.release).toBeUndefined();
      }
      expect(conn.stats().readSlabsReused).toBe(before);
    } finally {
      await conn.close();
    }
  });

  it('a second command while one is running → CONNECTION_BUSY', async () => {
    const conn = await ReplicationConnection.connect(opts(cluster()));
    try {
      const first = conn.query('IDENTIFY_SYSTEM');
      const err = await failure(conn.query('IDENTIFY_SYSTEM'));
      expect((err as ConnectionError).code).toBe('CONNECTION_BUSY');
      await first;
    } finally {
      await conn.close();
    }
  });
});

describe('PostgreSQL 18', () => {
  const cluster = useCluster(18, { restore_command: 'false' });

  it('temporary slot, READ_REPLICATION_SLOT, TIMELINE_HISTORY after a promotion to timeline 2', async () => {
    let conn = await ReplicationConnection.connect(opts(cluster()));
    await createReplicationSlot(conn, { name: 'pg18_temp', temporary: true, reserveWal: true });
    expect((await readReplicationSlot(conn, 'pg18_temp'))?.slotType).toBe('physical');
    await conn.close();
    // A temporary slot dies with its connection.
    conn = await ReplicationConnection.connect(opts(cluster()));
    expect(await readReplicationSlot(conn, 'pg18_temp')).toBeUndefined();
    await conn.close();

    await promoteToTimeline2(cluster());
    conn = await ReplicationConnection.connect(opts(cluster()));
    try {
      const sys = await identifySystem(conn);
      expect(sys.timeline).toBe(2);
      const h = await timelineHistory(conn, 2);
      expect(h.fileName).toBe('00000002.history');
      const entries = parseTimelineHistory(h.content);
      expect(entries).toHaveLength(1);
      expect(entries[0]!.timeline).toBe(1);
      expect(entries[0]!.switchLsn).toBeGreaterThan(0n);
      expect(entries[0]!.switchLsn).toBeLessThanOrEqual(sys.xlogPos);

      // A historic timeline streams up to its switch point, ends the copy, then sends the
      // (next_tli, next_tli_startpos) result set after CopyDone (walsender.c StartReplication).
      const switchLsn = entries[0]!.switchLsn;
      const start = switchLsn - (switchLsn % (16n * 1024n * 1024n));
      const events: string[] = [];
      let next: (string | null)[] | undefined;
      const stream = conn.copyBoth(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`);
      for await (const ev of stream) {
        events.push(ev.type);
        if (ev.type === 'copyDone') conn.sendCopyDone();
        if (ev.type === 'dataRow') next = ev.values.map((v) => v?.toString() ?? null);
      }
      expect(events[0]).toBe('copyBothStart');
      expect(events.indexOf('dataRow')).toBeGreaterThan(events.indexOf('copyDone'));
      expect(next?.[0]).toBe('2');
      expect(next?.[1]).toBe(formatLsn(switchLsn));

      // Starting exactly at the switch point: the tuple comes without any COPY.
      const direct: string[] = [];
      for await (const ev of conn.copyBoth(`START_REPLICATION ${formatLsn(switchLsn)} TIMELINE 1`))
        direct.push(ev.type);
      expect(direct).not.toContain('copyBothStart');
      expect(direct).toContain('dataRow');
    } finally {
      await conn.close();
    }
  });
});

describe('PostgreSQL 18: a late ErrorResponse after the data', () => {
  const cluster = useCluster(18);

  it('BASE_BACKUP over a page with a bad checksum: all data and the end LSN arrive, then PostgresServerError XX001', async () => {
    // initdb 18 enables data checksums by default.
    await cluster().query('CREATE TABLE corrupt AS SELECT g FROM generate_series(1, 1000) g');
    await cluster().query('CHECKPOINT');
    const [rel] = await cluster().query<{ p: string }>("SELECT pg_relation_filepath('corrupt') AS p");
    await cluster().stop('fast');
    const file = join(cluster().dataDir, rel!.p);
    const bytes = readFileSync(file);
    bytes[4000] = bytes[4000]! ^ 0xff;
    writeFileSync(file, bytes);
    await cluster().start();

    const conn = await ReplicationConnection.connect(opts(cluster()));
    try {
      const seen: string[] = [];
      let copyBytes = 0;
      let warnings = 0;
      const stream = conn.copyOut("BASE_BACKUP (LABEL 'late-error', CHECKPOINT 'fast', WAIT 0)");
      const err = await failure(
        (async () => {
          for await (const ev of stream) {
            if (seen[seen.length - 1] !== ev.type) seen.push(ev.type);
            if (ev.type === 'copyData') copyBytes += ev.data.length;
            if (ev.type === 'notice' && ev.fields.severity === 'WARNING') warnings++;
          }
        })(),
      );
      expect(err).toBeInstanceOf(PostgresServerError);
      expect((err as PostgresServerError).sqlstate).toBe('XX001');
      expect(copyBytes).toBeGreaterThan(1024 * 1024);
      expect(warnings).toBeGreaterThan(0);
      // The end-LSN result set came after CopyDone and before the error.
      expect(seen.lastIndexOf('dataRow')).toBeGreaterThan(seen.indexOf('copyDone'));
      // The error came after ReadyForQuery: the connection is still usable.
      expect(conn.closed).toBe(false);
      expect((await identifySystem(conn)).timeline).toBe(1);
    } finally {
      await conn.close();
    }
  });
});

describe('no secret in any error, log line or event', () => {
  it('serialises every collected error and greps for the passwords', () => {
    expect(collected.length).toBeGreaterThan(10);
    const texts = collected.flatMap((e) => [
      JSON.stringify(e),
      String(e),
      (e as Error).stack ?? '',
      inspect(e, { depth: 10 }),
    ]);
    texts.push(...logLines, JSON.stringify(events));
    const all = texts.join('\n');
    for (const s of new Set(secrets)) {
      expect(s.length).toBeGreaterThan(3);
      expect(all.includes(s), `secret found in output`).toBe(false);
    }
  });
});
