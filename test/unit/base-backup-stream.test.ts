/**
 * The BASE_BACKUP demuxer on both wire formats, from event sequences shaped as the servers send
 * them (protocol notes §3.2/§3.3): same output events, legacy tar trailer appended, late XX001.
 */
import { describe, expect, it } from 'vitest';
import type { CommandEvent } from '../../src/connection/replication-connection';
import { PostgresServerError } from '../../src/errors';
import {
  readBaseBackupStream,
  TAR_TRAILER,
  type BaseBackupEvent,
} from '../../src/replication/base-backup-stream';

const b = (s: string): Buffer => Buffer.from(s);
const fields = (names: string[]) =>
  names.map((name) => ({
    name,
    tableOid: 0,
    columnNumber: 0,
    typeOid: 25,
    typeSize: -1,
    typeModifier: -1,
    format: 0,
  }));
function resultSet(cols: string[], rows: (string | null)[][]): CommandEvent[] {
  return [
    { type: 'rowDescription', fields: fields(cols) },
    ...rows.map((r) => ({ type: 'dataRow' as const, values: r.map((v) => (v === null ? null : b(v))) })),
    { type: 'commandComplete', tag: 'SELECT' },
  ];
}
const msg = (t: string, ...parts: Buffer[]): CommandEvent => ({
  type: 'copyData',
  data: Buffer.concat([b(t), ...parts]),
});
const cstr = (s: string): Buffer => Buffer.concat([b(s), Buffer.alloc(1)]);
function int64(n: number): Buffer {
  const x = Buffer.alloc(8);
  x.writeBigInt64BE(BigInt(n));
  return x;
}

async function* feed(events: CommandEvent[], error?: Error): AsyncGenerator<CommandEvent> {
  for (const e of events) yield e;
  if (error) throw error;
}

async function collect(events: CommandEvent[], legacy: boolean, error?: Error): Promise<BaseBackupEvent[]> {
  const out: BaseBackupEvent[] = [];
  for await (const e of readBaseBackupStream(feed(events, error), legacy)) out.push(e);
  return out;
}

function summary(events: BaseBackupEvent[]): {
  archives: Record<string, string>;
  manifest: string;
  start?: string;
  end?: string;
} {
  const archives: Record<string, string> = {};
  let cur: string | undefined;
  let manifest = '';
  let inManifest = false;
  const s: ReturnType<typeof summary> = { archives, manifest: '' };
  for (const e of events) {
    if (e.type === 'archive-start') {
      cur = e.name;
      archives[e.name] = '';
    }
    if (e.type === 'data') archives[cur!] += e.data.toString('latin1');
    if (e.type === 'manifest-start') inManifest = true;
    if (e.type === 'manifest-data' && inManifest) manifest += e.data.toString();
    if (e.type === 'start') s.start = `${e.startLsn}/${e.startTimeline}`;
    if (e.type === 'end') s.end = `${e.endLsn}/${e.endTimeline}`;
  }
  s.manifest = manifest;
  return s;
}

const head = [
  ...resultSet(['recptr', 'tli'], [['0/2000028', '1']]),
  ...resultSet(
    ['spcoid', 'spclocation', 'size'],
    [
      ['16384', '/ts', '10'],
      [null, null, '2000'],
    ],
  ),
];
const tail = resultSet(['recptr', 'tli'], [['0/2000100', '2']]);

describe('readBaseBackupStream', () => {
  it('gives the same events for the legacy and the single-CopyOut format', async () => {
    const legacy: CommandEvent[] = [
      ...head,
      { type: 'copyOutStart' },
      { type: 'copyData', data: b('TS1') },
      { type: 'copyData', data: b('TS2') },
      { type: 'copyDone' },
      { type: 'copyOutStart' },
      { type: 'copyData', data: b('BASE') },
      { type: 'copyDone' },
      { type: 'copyOutStart' },
      { type: 'copyData', data: b('{"m":') },
      { type: 'copyData', data: b('1}') },
      { type: 'copyDone' },
      ...tail,
    ];
    const modern: CommandEvent[] = [
      ...head,
      { type: 'copyOutStart' },
      msg('n', cstr('16384.tar'), cstr('/ts')),
      msg('d', b('TS1')),
      msg('d', b('TS2')),
      msg('p', int64(6)),
      msg('n', cstr('base.tar'), cstr('')),
      msg('d', b('BASE')),
      msg('p', int64(10)),
      msg('m'),
      msg('d', b('{"m":')),
      msg('d', b('1}')),
      { type: 'copyDone' },
      ...tail,
      { type: 'commandComplete', tag: 'BASE_BACKUP' },
    ];
    const l = summary(await collect(legacy, true));
    const m = summary(await collect(modern, false));
    expect(l.archives['16384.tar']).toBe('TS1TS2' + TAR_TRAILER.toString('latin1'));
    expect(l.archives['base.tar']).toBe('BASE' + TAR_TRAILER.toString('latin1'));
    expect(m.archives).toEqual({ '16384.tar': 'TS1TS2', 'base.tar': 'BASE' });
    expect(l.manifest).toBe('{"m":1}');
    expect(m.manifest).toBe('{"m":1}');
    expect(l.start).toBe(m.start);
    expect(l.end).toBe('33554688/2');
    expect(m.end).toBe(l.end);
    const starts = (await collect(modern, false)).filter((e) => e.type === 'archive-start');
    expect(starts[0]).toMatchObject({ spcOid: 16384, spcLocation: '/ts', sizeEstimateBytes: 10240 });
    expect(starts[1]).toMatchObject({
      spcOid: undefined,
      spcLocation: undefined,
      sizeEstimateBytes: 2048000,
    });
  });

  it('turns a late XX001 into REPLICATION_BACKUP_FAILED', async () => {
    const modern: CommandEvent[] = [
      ...head,
      { type: 'copyOutStart' },
      msg('n', cstr('base.tar'), cstr('')),
      msg('d', b('x')),
      msg('m'),
      msg('d', b('{}')),
      { type: 'copyDone' },
      ...tail,
    ];
    const err = await collect(
      modern,
      false,
      new PostgresServerError({
        sqlstate: 'XX001',
        message: 'checksum verification failure during base backup',
      }),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'REPLICATION_BACKUP_FAILED', sqlstate: 'XX001' });
  });

  it('maps a missing compression library to CONFIG_UNSUPPORTED_COMPRESSION', async () => {
    const err = await collect(
      [],
      false,
      new PostgresServerError({
        sqlstate: '42601',
        message: 'invalid compression specification: this build does not support compression with LZ4',
      }),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFIG_UNSUPPORTED_COMPRESSION' });
  });

  it('refuses a response without the end position or manifest', async () => {
    const err = await collect(
      [...head, { type: 'copyOutStart' }, msg('n', cstr('base.tar'), cstr('')), { type: 'copyDone' }],
      false,
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PROTOCOL_UNEXPECTED_MESSAGE' });
  });
});
