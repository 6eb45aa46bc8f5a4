/**
 * Length-checked parsers for the backend messages a replication client meets
 * (protocol-message-formats.html). Each parse* takes the body of one framed message (see
 * MessageFramer) and either returns a typed value or throws ProtocolError PROTOCOL_MALFORMED_MESSAGE.
 * Values returned as Buffer are views of the body.
 */
import type { ServerErrorFields } from '../errors';
import { BufferReader } from './buffer-reader';

/** One column of a RowDescription. */
export interface FieldDescription {
  name: string;
  tableOid: number;
  columnNumber: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  /** 0 text, 1 binary. Replication commands always send text. */
  format: number;
}

/** RowDescription 'T'. */
export function parseRowDescription(body: Buffer): FieldDescription[] {
  const r = new BufferReader(body, 'RowDescription');
  const n = r.int16();
  if (n < 0) r.bytes(-1);
  const fields: FieldDescription[] = [];
  for (let i = 0; i < n; i++) {
    fields.push({
      name: r.cstring(),
      tableOid: r.uint32(),
      columnNumber: r.int16(),
      typeOid: r.uint32(),
      typeSize: r.int16(),
      typeModifier: r.int32(),
      format: r.int16(),
    });
  }
  r.end();
  return fields;
}

/**
 * DataRow 'D': each value as a Buffer view of the body, or null for SQL NULL. Text decoding is up
 * to the caller (TIMELINE_HISTORY's content column is the history file's raw bytes).
 */
export function parseDataRow(body: Buffer): (Buffer | null)[] {
  const r = new BufferReader(body, 'DataRow');
  const n = r.int16();
  if (n < 0) r.bytes(-1);
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    values.push(len === -1 ? null : r.bytes(len));
  }
  r.end();
  return values;
}

/** CommandComplete 'C': the command tag, e.g. `SELECT`, `BASE_BACKUP`, `CREATE_REPLICATION_SLOT`. */
export function parseCommandComplete(body: Buffer): string {
  const r = new BufferReader(body, 'CommandComplete');
  const tag = r.cstring();
  r.end();
  return tag;
}

/** Transaction status in ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a failed transaction. */
export type TransactionStatus = 'I' | 'T' | 'E';

/** ReadyForQuery 'Z'. */
export function parseReadyForQuery(body: Buffer): TransactionStatus {
  const r = new BufferReader(body, 'ReadyForQuery');
  const s = String.fromCharCode(r.uint8());
  r.end();
  if (s !== 'I' && s !== 'T' && s !== 'E') {
    r.bytes(-1); // unreachable bytes: reports the message as malformed
  }
  return s as TransactionStatus;
}

/** ParameterStatus 'S'. */
export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const r = new BufferReader(body, 'ParameterStatus');
  const name = r.cstring();
  const value = r.cstring();
  r.end();
  return { name, value };
}

// "Error and Notice Message Fields" in protocol-error-fields.html.
const FIELD_NAMES: Record<string, keyof ServerErrorFields> = {
  S: 'severity', // localized; 'V' (9.6+) is preferred when present
  C: 'sqlstate',
  M: 'message',
  D: 'detail',
  H: 'hint',
  P: 'position',
  p: 'internalPosition',
  q: 'internalQuery',
  W: 'where',
  s: 'schema',
  t: 'table',
  c: 'column',
  d: 'dataType',
  n: 'constraint',
  F: 'file',
  L: 'line',
  R: 'routine',
};

/**
 * ErrorResponse 'E' / NoticeResponse 'N': every known field. `severity` is the non-localized 'V'
 * field when the server sends it (9.6+), else the localized 'S'. Unknown field types are skipped, as
 * the protocol requires of clients.
 */
export function parseErrorFields(body: Buffer, what = 'ErrorResponse'): ServerErrorFields {
  const r = new BufferReader(body, what);
  const out: Partial<ServerErrorFields> = {};
  let localizedSeverity: string | undefined;
  let severity: string | undefined;
  for (;;) {
    const type = r.uint8();
    if (type === 0) break;
    const key = String.fromCharCode(type);
    const value = r.cstring();
    if (key === 'V') severity = value;
    else if (key === 'S') localizedSeverity = value;
    else {
      const name = FIELD_NAMES[key];
      if (name) out[name] = value;
    }
  }
  r.end();
  const sev = severity ?? localizedSeverity;
  if (sev !== undefined) out.severity = sev;
  return { ...out, sqlstate: out.sqlstate ?? 'XX000', message: out.message ?? '' };
}

/** CopyOutResponse 'H', CopyInResponse 'G', CopyBothResponse 'W' share one layout. */
export interface CopyResponse {
  /** 0 text, 1 binary (replication always sends 0). */
  format: number;
  columnFormats: number[];
}

export function parseCopyResponse(body: Buffer, what = 'CopyResponse'): CopyResponse {
  const r = new BufferReader(body, what);
  const format = r.uint8();
  const n = r.int16();
  if (n < 0) r.bytes(-1);
  const columnFormats: number[] = [];
  for (let i = 0; i < n; i++) columnFormats.push(r.int16());
  r.end();
  return { format, columnFormats };
}

/** CopyDone 'c' has an empty body. */
export function parseCopyDone(body: Buffer): void {
  new BufferReader(body, 'CopyDone').end();
}

/** BackendKeyData 'K' (its secret key length varies in protocol 3.2; kept raw). */
export function parseBackendKeyData(body: Buffer): { processId: number; secretKey: Buffer } {
  const r = new BufferReader(body, 'BackendKeyData');
  const processId = r.int32();
  const secretKey = r.rest();
  return { processId, secretKey };
}
