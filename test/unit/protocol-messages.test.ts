import { describe, expect, it } from 'vitest';
import {
  BackendCode,
  MessageFramer,
  parseBaseBackupMessage,
  parseCommandComplete,
  parseCopyResponse,
  parseDataRow,
  parseErrorFields,
  parseParameterStatus,
  parsePrimaryKeepalive,
  parseReadyForQuery,
  parseReplicationMessage,
  parseRowDescription,
  parseXLogData,
  type BackendMessage,
} from '../../src/protocol';
import { ProtocolError } from '../../src/errors';
import { parseLsn, parseTimelineHistory } from '../../src/lsn';
import { fixtureIndex, loadFixture } from './protocol-fixtures';

function messages(file: string): BackendMessage[] {
  const f = new MessageFramer();
  f.push(loadFixture(file));
  const out: BackendMessage[] = [];
  for (let m = f.next(); m; m = f.next()) out.push(m);
  return out;
}

const ch = (c: string): number => c.charCodeAt(0);
const codes = (ms: BackendMessage[]): string => ms.map((m) => String.fromCharCode(m.code)).join('');
const text = (v: Buffer | null | undefined): string | null => (v == null ? null : v.toString('utf8'));

/** Parses every message of a stream with its typed parser; returns the decoded sequence. */
function decodeAll(ms: BackendMessage[]): unknown[] {
  return ms.map((m) => {
    switch (m.code) {
      case BackendCode.RowDescription:
        return { T: parseRowDescription(m.body).map((f) => f.name) };
      case BackendCode.DataRow:
        return { D: parseDataRow(m.body).map((v) => (v ? v.length : null)) };
      case BackendCode.CommandComplete:
        return { C: parseCommandComplete(m.body) };
      case BackendCode.ReadyForQuery:
        return { Z: parseReadyForQuery(m.body) };
      case BackendCode.ErrorResponse:
      case BackendCode.NoticeResponse:
        return { E: parseErrorFields(m.body).sqlstate };
      case BackendCode.CopyOutResponse:
      case BackendCode.CopyBothResponse:
        return { copy: parseCopyResponse(m.body) };
      case BackendCode.ParameterStatus:
        return { S: parseParameterStatus(m.body) };
      default:
        return { code: m.code, len: m.body.length };
    }
  });
}

describe('typed parsers on captured streams', () => {
  for (const fx of fixtureIndex()) {
    it(`${fx.file}: every message parses, and every command ends with ReadyForQuery idle`, () => {
      const ms = messages(fx.file);
      const decoded = decodeAll(ms);
      const zs = decoded.filter((d) => typeof d === 'object' && d !== null && 'Z' in d);
      expect(zs.every((z) => (z as { Z: string }).Z === 'I')).toBe(true);
      expect(codes(ms).endsWith('Z')).toBe(true);
    });
  }

  for (const fx of fixtureIndex().filter((f) => f.session === 'commands')) {
    it(`${fx.file}: IDENTIFY_SYSTEM, SHOW, slot commands and error fields`, () => {
      const ms = messages(fx.file);
      const [t, d, c] = ms;
      expect(parseRowDescription(t!.body).map((f) => f.name)).toEqual([
        'systemid',
        'timeline',
        'xlogpos',
        'dbname',
      ]);
      const row = parseDataRow(d!.body);
      expect(text(row[0])).toMatch(/^\d+$/);
      expect(Number(text(row[1]))).toBe(1);
      expect(() => parseLsn(text(row[2])!)).not.toThrow();
      expect(row[3]).toBeNull();
      expect(parseCommandComplete(c!.body)).toBe('IDENTIFY_SYSTEM');

      const rows = ms
        .filter((m) => m.code === BackendCode.DataRow)
        .map((m) => parseDataRow(m.body).map(text));
      expect(rows[1]).toEqual(['16MB']);
      expect(Number(rows[2]![0])).toBeGreaterThanOrEqual(fx.major * 10000);
      expect(rows[3]).toEqual(['fixture_slot', '0/0', null, null]);

      const errors = ms
        .filter((m) => m.code === BackendCode.ErrorResponse)
        .map((m) => parseErrorFields(m.body));
      for (const e of errors) {
        expect(e.severity).toBe('ERROR');
        expect(e.message.length).toBeGreaterThan(0);
        expect(e.file).toBeTruthy();
        expect(e.line).toMatch(/^\d+$/);
        expect(e.routine).toBeTruthy();
      }
      const states = errors.map((e) => e.sqlstate);
      if (fx.major >= 15) {
        expect(states).toEqual(['42704', '58P01', '42710', '42704', '0A000']);
        // READ_REPLICATION_SLOT: an existing slot, then the all-NULL row of a missing one.
        expect(rows[4]![0]).toBe('physical');
        expect(() => parseLsn(rows[4]![1]!)).not.toThrow();
        expect(rows[4]![2]).toBe('1');
        expect(rows[5]).toEqual([null, null, null]);
      } else {
        // PG14 has no READ_REPLICATION_SLOT: it is taken as SQL and refused.
        expect(states).toEqual(['42704', '58P01', '42710', '0A000', '42704', '0A000']);
      }
    });
  }

  for (const fx of fixtureIndex().filter((f) => f.session === 'start-replication')) {
    it(`${fx.file}: XLogData and keepalive inside CopyBoth`, () => {
      const ms = messages(fx.file);
      expect(codes(ms)).toMatch(/^TDCZWd+cCCZ$/);
      const copy = ms
        .filter((m) => m.code === BackendCode.CopyData)
        .map((m) => parseReplicationMessage(m.body));
      const ws = copy.filter((m) => m.type === 'xlogdata');
      const ks = copy.filter((m) => m.type === 'keepalive');
      expect(ws.length).toBeGreaterThanOrEqual(2);
      expect(ks.length).toBeGreaterThanOrEqual(1);
      // The first message starts at the requested LSN (a page boundary), and messages are contiguous.
      expect(ws[0]!.dataStart % 8192n).toBe(0n);
      for (let i = 1; i < ws.length; i++) {
        expect(ws[i]!.dataStart).toBe(ws[i - 1]!.dataStart + BigInt(ws[i - 1]!.data.length));
      }
      for (const w of ws) expect(w.walEnd).toBeGreaterThanOrEqual(w.dataStart);
      // Send times are µs since 2000-01-01: 2026 lies ~8.4e14 µs after it.
      for (const m of copy) expect(Number(m.sendTime)).toBeGreaterThan(7e14);
      const tags = ms
        .filter((m) => m.code === BackendCode.CommandComplete)
        .map((m) => parseCommandComplete(m.body));
      expect(tags.slice(-2)).toEqual(['START_STREAMING', 'START_REPLICATION']);
    });
  }

  it('pg17-base-backup.bin: result sets, n/d/p/m sub-messages, end LSN', () => {
    const ms = messages('pg17-base-backup.bin');
    const copy = ms.filter((m) => m.code === BackendCode.CopyData).map((m) => parseBaseBackupMessage(m.body));
    expect(copy[0]).toEqual({ type: 'archive', archiveName: 'base.tar', spcLocation: '' });
    expect(copy.filter((m) => m.type === 'manifest')).toHaveLength(1);
    const progress = copy
      .filter((m) => m.type === 'progress')
      .map((m) => (m as { bytesDone: bigint }).bytesDone);
    expect(progress.length).toBeGreaterThan(0);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThanOrEqual(progress[i - 1]!);
    // The first archive data begins with the backup_label tar header.
    const firstData = copy.find((m) => m.type === 'data') as { data: Buffer };
    expect(firstData.data.toString('latin1', 0, 12)).toBe('backup_label');
    const lsnRows = ms
      .filter((m) => m.code === BackendCode.DataRow)
      .map((m) => parseDataRow(m.body).map(text));
    expect(lsnRows[1]).toEqual([null, null, null]); // main data directory: NULL spcoid/spclocation/size
    expect(parseLsn(lsnRows[2]![0]!)).toBeGreaterThan(parseLsn(lsnRows[0]![0]!));
    expect(ms.filter((m) => m.code === BackendCode.CopyOutResponse)).toHaveLength(1);
  });

  it('pg14-base-backup.bin: legacy protocol with one CopyOut per archive plus the manifest', () => {
    const ms = messages('pg14-base-backup.bin');
    expect(codes(ms)).toMatch(/^TDCTDCHd+cHd+cTDCCZ$/);
    const firstData = ms.find((m) => m.code === BackendCode.CopyData)!;
    expect(firstData.body.toString('latin1', 0, 12)).toBe('backup_label');
    const tags = ms
      .filter((m) => m.code === BackendCode.CommandComplete)
      .map((m) => parseCommandComplete(m.body));
    expect(tags).toEqual(['SELECT', 'SELECT', 'SELECT', 'BASE_BACKUP']);
  });

  it('pg18-base-backup-checksum-failure.bin: a WARNING inside the copy, then the end LSN, then ErrorResponse XX001', () => {
    const ms = messages('pg18-base-backup-checksum-failure.bin');
    const seq = codes(ms);
    expect(seq).toMatch(/^TDCTDCHd+(N|d)*cTDCEZ$/);
    expect(seq.indexOf('N')).toBeGreaterThan(seq.indexOf('H'));
    expect(seq.indexOf('N')).toBeLessThan(seq.indexOf('c'));
    const notice = parseErrorFields(ms[seq.indexOf('N')]!.body, 'NoticeResponse');
    expect(notice.severity).toBe('WARNING');
    const err = parseErrorFields(ms[seq.lastIndexOf('E')]!.body);
    expect(err.sqlstate).toBe('XX001');
    expect(err.severity).toBe('ERROR');
  });

  for (const file of ['pg14-timeline-history.bin', 'pg18-timeline-history.bin']) {
    it(`${file}: TIMELINE_HISTORY content is the raw history file`, () => {
      const ms = messages(file);
      const rows = ms.filter((m) => m.code === BackendCode.DataRow).map((m) => parseDataRow(m.body));
      expect(text(rows[0]![1])).toBe('2');
      expect(text(rows[1]![0])).toBe('00000002.history');
      const entries = parseTimelineHistory(rows[1]![1]!);
      expect(entries).toHaveLength(1);
      expect(entries[0]!.timeline).toBe(1);
      const errors = ms
        .filter((m) => m.code === BackendCode.ErrorResponse)
        .map((m) => parseErrorFields(m.body).sqlstate);
      expect(errors).toEqual(['58P01']);
    });
  }
});

describe('malformed messages → PROTOCOL_MALFORMED_MESSAGE', () => {
  const malformed = (fn: () => unknown): void => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('PROTOCOL_MALFORMED_MESSAGE');
  };
  const realRowDescription = messages('pg17-commands.bin')[0]!.body;
  const realDataRow = messages('pg17-commands.bin')[1]!.body;

  it('truncated RowDescription and DataRow at every length', () => {
    for (let n = 0; n < realRowDescription.length; n++)
      malformed(() => parseRowDescription(realRowDescription.subarray(0, n)));
    for (let n = 0; n < realDataRow.length; n++) malformed(() => parseDataRow(realDataRow.subarray(0, n)));
  });

  it('trailing bytes and lying lengths', () => {
    malformed(() => parseDataRow(Buffer.concat([realDataRow, Buffer.from([0])])));
    const lying = Buffer.from(realDataRow);
    lying.writeInt32BE(0x7fffffff, 2);
    malformed(() => parseDataRow(lying));
    malformed(() => parseDataRow(Buffer.from([0xff, 0xff])));
    malformed(() => parseCommandComplete(Buffer.from('SELECT')));
    malformed(() => parseReadyForQuery(Buffer.from('X')));
    malformed(() => parseReadyForQuery(Buffer.alloc(0)));
    malformed(() => parseErrorFields(Buffer.from('SERROR\0CXX000\0'))); // no terminating 0
    malformed(() => parseErrorFields(Buffer.from('SERR')));
    malformed(() => parseCopyResponse(Buffer.from([0, 0])));
    malformed(() => parseParameterStatus(Buffer.from('a\0b')));
  });

  it('replication messages of the wrong size', () => {
    const w = Buffer.alloc(25);
    w[0] = ch('w');
    expect(parseXLogData(w).data.length).toBe(0);
    for (let n = 0; n < 25; n++) malformed(() => parseXLogData(w.subarray(0, n)));
    const k = Buffer.alloc(18);
    k[0] = ch('k');
    k[17] = 1;
    expect(parsePrimaryKeepalive(k).replyRequested).toBe(true);
    malformed(() => parsePrimaryKeepalive(k.subarray(0, 17)));
    malformed(() => parsePrimaryKeepalive(Buffer.concat([k, Buffer.from([0])])));
    malformed(() => parseXLogData(k));
    malformed(() => parseBaseBackupMessage(Buffer.from([ch('p'), 0, 0, 0])));
    malformed(() => parseBaseBackupMessage(Buffer.from([ch('n'), ch('a'), 0])));
    malformed(() => parseBaseBackupMessage(Buffer.from([ch('m'), 1])));
    malformed(() => parseBaseBackupMessage(Buffer.alloc(0)));
  });

  it('unknown replication sub-message types are PROTOCOL_UNEXPECTED_MESSAGE', () => {
    expect(() => parseReplicationMessage(Buffer.from([ch('z')]))).toThrow(
      expect.objectContaining({ code: 'PROTOCOL_UNEXPECTED_MESSAGE' }),
    );
    expect(() => parseBaseBackupMessage(Buffer.from([ch('z')]))).toThrow(
      expect.objectContaining({ code: 'PROTOCOL_UNEXPECTED_MESSAGE' }),
    );
  });

  it('ErrorResponse keeps every field and prefers the non-localized severity', () => {
    const fields =
      'SFEHLER\0VERROR\0C42P01\0Mm\0Dd\0Hh\0P1\0p2\0qiq\0Ww\0ss\0tt\0cc\0ddt\0nn\0Ff.c\0L9\0Rr\0Zunknown\0\0';
    expect(parseErrorFields(Buffer.from(fields))).toEqual({
      severity: 'ERROR',
      sqlstate: '42P01',
      message: 'm',
      detail: 'd',
      hint: 'h',
      position: '1',
      internalPosition: '2',
      internalQuery: 'iq',
      where: 'w',
      schema: 's',
      table: 't',
      column: 'c',
      dataType: 'dt',
      constraint: 'n',
      file: 'f.c',
      line: '9',
      routine: 'r',
    });
  });
});
