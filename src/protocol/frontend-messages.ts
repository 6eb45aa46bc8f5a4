/**
 * Writers for the frontend messages a replication client sends (protocol-message-formats.html)
 * and the standby status update 'r' (walsender.c ProcessStandbyReplyMessage; receivelog.c
 * sendFeedback). Each returns a fresh Buffer holding one whole message.
 */
import { ProtocolError } from '../errors';
import { pgTimestampFromDate } from '../lsn';
import { FrontendCode, ReplicationCode } from './message-codes';
import { STANDBY_STATUS_UPDATE_BYTES } from './replication-messages';

function header(code: number, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(5 + bodyLength);
  buf[0] = code;
  buf.writeInt32BE(4 + bodyLength, 1);
  return buf;
}

/** Query 'Q' (simple query protocol; the only one a physical walsender accepts). */
export function writeQuery(sql: string): Buffer {
  const text = Buffer.from(sql, 'utf8');
  if (text.includes(0)) {
    throw new ProtocolError('PROTOCOL_MALFORMED_MESSAGE', 'query text contains a NUL byte');
  }
  const buf = header(FrontendCode.Query, text.length + 1);
  text.copy(buf, 5);
  buf[buf.length - 1] = 0;
  return buf;
}

/** CopyData 'd'. Copies the payload into the message. */
export function writeCopyData(payload: Buffer): Buffer {
  const buf = header(FrontendCode.CopyData, payload.length);
  payload.copy(buf, 5);
  return buf;
}

/** Just the 5-byte CopyData header, for writing a large payload without copying it. */
export function writeCopyDataHeader(payloadLength: number): Buffer {
  const buf = Buffer.allocUnsafe(5);
  buf[0] = FrontendCode.CopyData;
  buf.writeInt32BE(4 + payloadLength, 1);
  return buf;
}

/** CopyDone 'c'. */
export function writeCopyDone(): Buffer {
  return header(FrontendCode.CopyDone, 0);
}

/** CopyFail 'f' with an error message. */
export function writeCopyFail(message: string): Buffer {
  const text = Buffer.from(message.replace(/\0/g, ''), 'utf8');
  const buf = header(FrontendCode.CopyFail, text.length + 1);
  text.copy(buf, 5);
  buf[buf.length - 1] = 0;
  return buf;
}

/** Terminate 'X'. */
export function writeTerminate(): Buffer {
  return header(FrontendCode.Terminate, 0);
}

export interface StandbyStatusUpdate {
  /** Last WAL byte + 1 received and written. */
  writeLsn: bigint;
  /** Last WAL byte + 1 durably stored: the slot's restart_lsn follows this. Never report more than is durable. */
  flushLsn: bigint;
  /** Last WAL byte + 1 applied (an archiver reports its flush position or 0). */
  applyLsn: bigint;
  /** @default now */
  clientTime?: Date | bigint;
  /** Ask the server to reply with a keepalive at once. @default false */
  replyRequested?: boolean;
}

/** The CopyData payload of a standby status update 'r' (34 bytes). Wrap it with writeCopyData. */
export function buildStandbyStatusUpdate(u: StandbyStatusUpdate): Buffer {
  const buf = Buffer.alloc(STANDBY_STATUS_UPDATE_BYTES);
  buf[0] = ReplicationCode.StandbyStatusUpdate;
  buf.writeBigUInt64BE(BigInt.asUintN(64, u.writeLsn), 1);
  buf.writeBigUInt64BE(BigInt.asUintN(64, u.flushLsn), 9);
  buf.writeBigUInt64BE(BigInt.asUintN(64, u.applyLsn), 17);
  const t = u.clientTime ?? new Date();
  buf.writeBigInt64BE(typeof t === 'bigint' ? t : pgTimestampFromDate(t), 25);
  buf[33] = u.replyRequested ? 1 : 0;
  return buf;
}

/** A whole CopyData message carrying a standby status update. */
export function writeStandbyStatusUpdate(u: StandbyStatusUpdate): Buffer {
  return writeCopyData(buildStandbyStatusUpdate(u));
}
