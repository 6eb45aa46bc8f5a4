/**
 * The error model: one class per party at fault, each error carrying a stable `code` from the one
 * registry below (ERROR_CODES). Codes are append-only and never renamed; tests assert `code` and the
 * class, never message text. Messages are lowercase and name the object; the remedy goes in `hint`.
 *
 * This module must not import anything else from pgark: every other module imports it.
 */

/** Which class an error code belongs to, and what it means (the README's error table is generated from this). */
interface CodeSpec {
  readonly kind: ErrorKind;
  readonly description: string;
}

export type ErrorKind =
  | 'ConfigError'
  | 'ConnectionError'
  | 'ProtocolError'
  | 'PostgresServerError'
  | 'ReplicationError'
  | 'StorageError'
  | 'IntegrityError'
  | 'RestoreError'
  | 'AbortError';

/**
 * The one registry of stable error codes. Append only; never rename or reuse a code.
 * Keep entries grouped by class.
 */
export const ERROR_CODES = {
  // ConfigError: the caller's input is wrong.
  CONFIG_INVALID_OPTION: {
    kind: 'ConfigError',
    description: 'an option is missing, of the wrong type or out of range',
  },
  CONFIG_INVALID_SLOT_NAME: {
    kind: 'ConfigError',
    description: "a replication slot name breaks PostgreSQL's rules (a-z, 0-9, _; at most 63 bytes)",
  },
  CONFIG_INVALID_LSN: { kind: 'ConfigError', description: 'a text is not a valid LSN (X/X)' },
  CONFIG_INVALID_WAL_NAME: {
    kind: 'ConfigError',
    description: 'a text is not a valid WAL segment, history or backup-history file name',
  },
  CONFIG_INVALID_SEGMENT_SIZE: {
    kind: 'ConfigError',
    description: 'a WAL segment size is not a power of two between 1 MiB and 1 GiB',
  },
  CONFIG_INVALID_LOCATION: {
    kind: 'ConfigError',
    description: 'a repository location is neither a directory path nor an s3://bucket/prefix URL',
  },
  CONFIG_INVALID_IDENTIFIER: {
    kind: 'ConfigError',
    description: 'an identifier or label sent to the server contains characters that are not allowed',
  },
  CONFIG_INVALID_CONNINFO: {
    kind: 'ConfigError',
    description: 'a connection string or URL cannot be parsed',
  },
  CONFIG_UNSUPPORTED_COMPRESSION: {
    kind: 'ConfigError',
    description:
      'the requested compression is not available (not built into the server, or no binding on this runtime)',
  },

  // ConnectionError: reaching or keeping the server failed.
  CONNECTION_REFUSED: {
    kind: 'ConnectionError',
    description: 'the server could not be reached (refused, unknown host, unreachable)',
  },
  CONNECTION_TIMEOUT: {
    kind: 'ConnectionError',
    description: 'connecting or waiting for the server took longer than the configured timeout',
  },
  CONNECTION_AUTH_FAILED: { kind: 'ConnectionError', description: 'the server rejected the credentials' },
  CONNECTION_PERMISSION_DENIED: {
    kind: 'ConnectionError',
    description:
      'the role may not open a replication connection (it lacks REPLICATION or pg_hba.conf refuses it)',
  },
  CONNECTION_TLS_FAILED: {
    kind: 'ConnectionError',
    description: 'TLS negotiation failed or the server does not support TLS where sslmode requires it',
  },
  CONNECTION_CLOSED: {
    kind: 'ConnectionError',
    description: 'the connection closed unexpectedly, possibly mid-message',
  },
  CONNECTION_BUSY: {
    kind: 'ConnectionError',
    description: 'a command was issued while another one is still running on the same connection',
  },

  // ProtocolError: the bytes on the wire are not what the protocol allows.
  PROTOCOL_MESSAGE_TOO_LONG: {
    kind: 'ProtocolError',
    description: 'a message is longer than the configured maximum',
  },
  PROTOCOL_MALFORMED_MESSAGE: {
    kind: 'ProtocolError',
    description: 'a message is truncated or its fields do not fit its length',
  },
  PROTOCOL_UNEXPECTED_MESSAGE: {
    kind: 'ProtocolError',
    description: 'a message arrived that the current state does not allow',
  },

  // PostgresServerError: the server answered with an ErrorResponse.
  SERVER_ERROR: {
    kind: 'PostgresServerError',
    description: 'the server reported an error (see sqlstate and the ErrorResponse fields)',
  },

  // ReplicationError: the replication state is not what the operation needs.
  REPLICATION_UNSUPPORTED_VERSION: {
    kind: 'ReplicationError',
    description: "the server's major version is not supported (14-18) or lacks the command",
  },
  REPLICATION_SLOT_EXISTS: {
    kind: 'ReplicationError',
    description: 'a replication slot of that name already exists',
  },
  REPLICATION_SLOT_NOT_FOUND: {
    kind: 'ReplicationError',
    description: 'the replication slot does not exist',
  },
  REPLICATION_SLOT_IN_USE: {
    kind: 'ReplicationError',
    description: 'the replication slot is active for another process',
  },
  REPLICATION_SLOT_INVALID: {
    kind: 'ReplicationError',
    description: 'the replication slot is not physical, or has lost the WAL it reserved',
  },
  REPLICATION_WAL_REMOVED: {
    kind: 'ReplicationError',
    description: 'the server has already removed WAL that is needed',
  },
  REPLICATION_WAL_GAP: {
    kind: 'ReplicationError',
    description: 'WAL data did not arrive at the expected position',
  },
  REPLICATION_TIMELINE_MISMATCH: {
    kind: 'ReplicationError',
    description: "the timeline is not in the server's history or goes backwards",
  },
  REPLICATION_SYSTEM_ID_MISMATCH: {
    kind: 'ReplicationError',
    description: 'the server belongs to a different cluster (system identifier differs)',
  },
  REPLICATION_BACKUP_FAILED: {
    kind: 'ReplicationError',
    description: 'the server reported a failure of the base backup (for example a page checksum failure)',
  },
  REPLICATION_STANDBY_PROMOTED: {
    kind: 'ReplicationError',
    description: 'the standby was promoted during an operation that needs it to stay a standby',
  },

  // StorageError: the repository storage failed.
  STORAGE_NOT_FOUND: { kind: 'StorageError', description: 'the key does not exist' },
  STORAGE_ACCESS_DENIED: {
    kind: 'StorageError',
    description: 'the credentials or file permissions do not allow the operation',
  },
  STORAGE_BUCKET_NOT_FOUND: { kind: 'StorageError', description: 'the bucket does not exist' },
  STORAGE_CONFLICT: {
    kind: 'StorageError',
    description: 'a conditional create found the key already present',
  },
  STORAGE_UNAVAILABLE: {
    kind: 'StorageError',
    description: 'the store failed or was unreachable (5xx, throttling, connection reset); retryable',
  },
  STORAGE_NO_SPACE: { kind: 'StorageError', description: 'the device or quota is full' },
  STORAGE_INVALID_KEY: {
    kind: 'StorageError',
    description: 'a key is empty, absolute, or contains `..` or characters the store does not allow',
  },
  STORAGE_INVALID_RANGE: { kind: 'StorageError', description: 'a ranged read lies outside the object' },
  STORAGE_INCOMPLETE_UPLOAD: {
    kind: 'StorageError',
    description: 'the store did not confirm a whole object (no ETag on complete, or a short body)',
  },
  STORAGE_IO: { kind: 'StorageError', description: 'another input/output error of the store' },

  // IntegrityError: data does not match what it claims to be.
  INTEGRITY_CHECKSUM_MISMATCH: {
    kind: 'IntegrityError',
    description: 'a checksum computed over data differs from the recorded one',
  },
  INTEGRITY_MANIFEST_INVALID: {
    kind: 'IntegrityError',
    description: 'a backup manifest cannot be parsed or its own checksum is wrong',
  },
  INTEGRITY_BACKUP_INCOMPLETE: {
    kind: 'IntegrityError',
    description: 'a backup lacks its completion marker or an object it lists',
  },
  INTEGRITY_WAL_CONFLICT: {
    kind: 'IntegrityError',
    description:
      'a WAL file already exists in the repository with different content (a split-brain shows up this way)',
  },
  INTEGRITY_WAL_INVALID: {
    kind: 'IntegrityError',
    description: "a WAL segment's page headers do not match its name, size or cluster",
  },
  INTEGRITY_REPOSITORY_FORMAT: {
    kind: 'IntegrityError',
    description: "the repository's format version is missing, unknown or newer than this pgark",
  },
  INTEGRITY_SYSTEM_ID_MISMATCH: {
    kind: 'IntegrityError',
    description: 'the repository (stanza) belongs to a different cluster',
  },
  INTEGRITY_ARCHIVE_INVALID: {
    kind: 'IntegrityError',
    description:
      'a tar archive or its compressed stream is malformed (bad header checksum, truncated member, corrupt compressed data)',
  },

  // RestoreError: a restore cannot proceed as asked.
  RESTORE_TARGET_NOT_EMPTY: { kind: 'RestoreError', description: 'the target directory is not empty' },
  RESTORE_TARGET_IN_USE: {
    kind: 'RestoreError',
    description: 'the target directory belongs to a running server',
  },
  RESTORE_BACKUP_NOT_FOUND: { kind: 'RestoreError', description: 'no backup matches the request' },
  RESTORE_TARGET_OUT_OF_RANGE: {
    kind: 'RestoreError',
    description: 'the recovery target lies outside the recoverable window of the repository',
  },
  RESTORE_BINARIES_NOT_FOUND: {
    kind: 'RestoreError',
    description: 'no PostgreSQL server binaries of the needed major version were found',
  },
  RESTORE_VERSION_MISMATCH: {
    kind: 'RestoreError',
    description: "the backup's major version differs from the server binaries'",
  },
  RESTORE_SERVER_FAILED: {
    kind: 'RestoreError',
    description: 'a server started for the restore failed to start, recover or stop',
  },
  RESTORE_TABLE_NOT_FOUND: {
    kind: 'RestoreError',
    description: 'the table to restore does not exist in the restored cluster at the recovery target',
  },
  RESTORE_TABLE_EXISTS: {
    kind: 'RestoreError',
    description: 'the table to create for a table restore already exists in the target database',
  },
  RESTORE_INCOMPLETE: {
    kind: 'RestoreError',
    description: 'a restore directory is marked incomplete (an earlier restore failed or was interrupted)',
  },

  // AbortError: the caller aborted.
  ABORTED: { kind: 'AbortError', description: 'the operation was aborted through its AbortSignal or stop()' },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;
export type CodeOf<K extends ErrorKind> = {
  [C in ErrorCode]: (typeof ERROR_CODES)[C]['kind'] extends K ? C : never;
}[ErrorCode];

export interface PgarkErrorOptions {
  /** What the user can do about it. */
  hint?: string;
  /** The lower-level error this one wraps. */
  cause?: unknown;
}

/** Base class of every error pgark throws. `code` is stable; `message` is for humans. */
export class PgarkError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: PgarkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** A plain object for logs and `--json` output; it never contains secrets (messages are built without them). */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { name: this.name, code: this.code, message: this.message };
    for (const [k, v] of Object.entries(this)) {
      if (k === 'code' || v === undefined) continue;
      out[k] = typeof v === 'bigint' ? v.toString() : v;
    }
    if (this.cause instanceof Error) {
      out.cause =
        this.cause instanceof PgarkError
          ? this.cause.toJSON()
          : { name: this.cause.name, message: this.cause.message };
    }
    return out;
  }
}

export class ConfigError extends PgarkError {
  constructor(code: CodeOf<'ConfigError'>, message: string, options?: PgarkErrorOptions) {
    super(code, message, options);
  }
}

export interface ConnectionErrorOptions extends PgarkErrorOptions {
  /** The target described without secrets: `host:port user=… db=…`. */
  target?: string;
  /** SQLSTATE when the server reported the failure. */
  sqlstate?: string;
}

export class ConnectionError extends PgarkError {
  readonly target: string | undefined;
  readonly sqlstate: string | undefined;
  constructor(code: CodeOf<'ConnectionError'>, message: string, options: ConnectionErrorOptions = {}) {
    super(code, message, options);
    this.target = options.target;
    this.sqlstate = options.sqlstate;
  }
}

export class ProtocolError extends PgarkError {
  constructor(code: CodeOf<'ProtocolError'>, message: string, options?: PgarkErrorOptions) {
    super(code, message, options);
  }
}

/** Every field an ErrorResponse/NoticeResponse can carry (protocol-message-formats, "Error and Notice Message Fields"). */
export interface ServerErrorFields {
  severity?: string;
  sqlstate: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: string;
  internalPosition?: string;
  internalQuery?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  dataType?: string;
  constraint?: string;
  file?: string;
  line?: string;
  routine?: string;
}

/** The server answered with an ErrorResponse; every field of it is kept. */
export class PostgresServerError extends PgarkError {
  readonly sqlstate: string;
  readonly fields: ServerErrorFields;
  constructor(fields: ServerErrorFields, options: PgarkErrorOptions = {}) {
    super('SERVER_ERROR', fields.message, { hint: fields.hint, ...options });
    this.sqlstate = fields.sqlstate;
    this.fields = fields;
  }
}

export interface ReplicationErrorOptions extends PgarkErrorOptions {
  sqlstate?: string;
  slotName?: string;
}

export class ReplicationError extends PgarkError {
  readonly sqlstate: string | undefined;
  readonly slotName: string | undefined;
  constructor(code: CodeOf<'ReplicationError'>, message: string, options: ReplicationErrorOptions = {}) {
    super(code, message, options);
    this.sqlstate = options.sqlstate;
    this.slotName = options.slotName;
  }
}

export interface StorageErrorOptions extends PgarkErrorOptions {
  key?: string;
  httpStatus?: number;
  /** True when trying the same call again may succeed (5xx, throttling, connection reset). */
  retryable?: boolean;
}

export class StorageError extends PgarkError {
  readonly key: string | undefined;
  readonly httpStatus: number | undefined;
  readonly retryable: boolean;
  constructor(code: CodeOf<'StorageError'>, message: string, options: StorageErrorOptions = {}) {
    super(code, message, options);
    this.key = options.key;
    this.httpStatus = options.httpStatus;
    this.retryable = options.retryable ?? code === 'STORAGE_UNAVAILABLE';
  }
}

export interface IntegrityErrorOptions extends PgarkErrorOptions {
  key?: string;
  expected?: string;
  actual?: string;
}

export class IntegrityError extends PgarkError {
  readonly key: string | undefined;
  readonly expected: string | undefined;
  readonly actual: string | undefined;
  constructor(code: CodeOf<'IntegrityError'>, message: string, options: IntegrityErrorOptions = {}) {
    super(code, message, options);
    this.key = options.key;
    this.expected = options.expected;
    this.actual = options.actual;
  }
}

export class RestoreError extends PgarkError {
  constructor(code: CodeOf<'RestoreError'>, message: string, options?: PgarkErrorOptions) {
    super(code, message, options);
  }
}

export class AbortError extends PgarkError {
  constructor(message = 'operation aborted', options?: PgarkErrorOptions) {
    super('ABORTED', message, options);
  }
}

/** Throws an AbortError when the signal is aborted; call at the top of each step of a long operation. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'operation'): void {
  if (signal?.aborted) {
    throw new AbortError(`${what} aborted`, { cause: signal.reason });
  }
}

export function isPgarkError(e: unknown): e is PgarkError {
  return e instanceof PgarkError;
}
