/**
 * The messages carried inside CopyData during START_REPLICATION (walsender.c XLogSendPhysical,
 * WalSndKeepalive, ProcessStandbyReplyMessage) and a PG15+ BASE_BACKUP (basebackup_copy.c
 * bbsink_copystream_*). All integers big-endian; timestamps are µs since 2000-01-01 UTC.
 */
import { ProtocolError } from '../errors';
import { BufferReader } from './buffer-reader';
import { BaseBackupCode, ReplicationCode } from './message-codes';

/** XLogData 'w': WAL bytes starting at `dataStart`. `data` is a view of the CopyData payload. */
export interface XLogData {
  type: 'xlogdata';
  dataStart: bigint;
  /** The server's send limit, not dataStart + data.length. */
  walEnd: bigint;
  sendTime: bigint;
  data: Buffer;
}

/** Primary keepalive 'k'. */
export interface PrimaryKeepalive {
  type: 'keepalive';
  walEnd: bigint;
  sendTime: bigint;
  replyRequested: boolean;
}

/** 25-byte header: 'w', Int64 dataStart, Int64 walEnd, Int64 sendTime. */
export const XLOGDATA_HEADER_BYTES = 25;
/** 'k', Int64 walEnd, Int64 sendTime, Byte1 replyRequested. */
export const KEEPALIVE_BYTES = 18;
/** 'r', 3 × Int64 LSN, Int64 clientTime, Byte1 replyRequested. */
export const STANDBY_STATUS_UPDATE_BYTES = 34;

function expectType(payload: Buffer, code: number, what: string): void {
  if (payload.length === 0 || payload[0] !== code) {
    throw new ProtocolError('PROTOCOL_MALFORMED_MESSAGE', `malformed ${what}: wrong or missing type byte`);
  }
}

export function parseXLogData(payload: Buffer): XLogData {
  expectType(payload, ReplicationCode.XLogData, 'XLogData');
  const r = new BufferReader(payload, 'XLogData');
  r.uint8();
  const dataStart = r.uint64();
  const walEnd = r.uint64();
  const sendTime = r.int64();
  return { type: 'xlogdata', dataStart, walEnd, sendTime, data: r.rest() };
}

export function parsePrimaryKeepalive(payload: Buffer): PrimaryKeepalive {
  expectType(payload, ReplicationCode.PrimaryKeepalive, 'PrimaryKeepalive');
  const r = new BufferReader(payload, 'PrimaryKeepalive');
  r.uint8();
  const walEnd = r.uint64();
  const sendTime = r.int64();
  const replyRequested = r.uint8() !== 0;
  r.end();
  return { type: 'keepalive', walEnd, sendTime, replyRequested };
}

/** A CopyData payload of START_REPLICATION: 'w' or 'k'. */
export function parseReplicationMessage(payload: Buffer): XLogData | PrimaryKeepalive {
  switch (payload[0]) {
    case ReplicationCode.XLogData:
      return parseXLogData(payload);
    case ReplicationCode.PrimaryKeepalive:
      return parsePrimaryKeepalive(payload);
    default:
      throw new ProtocolError(
        'PROTOCOL_UNEXPECTED_MESSAGE',
        `unexpected replication message type ${payload.length ? '0x' + payload[0]!.toString(16) : '(empty)'}`,
      );
  }
}

/** PG15+ BASE_BACKUP CopyData payloads. `data` is a view of the payload. */
export type BaseBackupMessage =
  | { type: 'archive'; archiveName: string; spcLocation: string }
  | { type: 'data'; data: Buffer }
  | { type: 'progress'; bytesDone: bigint }
  | { type: 'manifest' };

export function parseBaseBackupMessage(payload: Buffer): BaseBackupMessage {
  const r = new BufferReader(payload, 'BASE_BACKUP CopyData');
  const t = r.uint8();
  switch (t) {
    case BaseBackupCode.NewArchive: {
      const archiveName = r.cstring();
      const spcLocation = r.cstring();
      r.end();
      return { type: 'archive', archiveName, spcLocation };
    }
    case BaseBackupCode.Data:
      return { type: 'data', data: r.rest() };
    case BaseBackupCode.Progress: {
      const bytesDone = r.int64();
      r.end();
      return { type: 'progress', bytesDone };
    }
    case BaseBackupCode.Manifest:
      r.end();
      return { type: 'manifest' };
    default:
      throw new ProtocolError(
        'PROTOCOL_UNEXPECTED_MESSAGE',
        `unexpected BASE_BACKUP message type 0x${t.toString(16)}`,
      );
  }
}
