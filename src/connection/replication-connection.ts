/**
 * A physical replication connection (`replication=true`) with real backpressure.
 *
 * node-postgres' `pg.Client` does startup, authentication (password, md5, SCRAM-SHA-256) and TLS;
 * once the server is ready for queries we take its socket over: pg's listeners are removed and the
 * bytes go through pgark's own bounded MessageFramer. Reading is pull-driven: the socket is paused
 * whenever the consumer has not pulled the decoded events, so a slow consumer (an S3 upload) holds
 * back the server through TCP flow control, and a message longer than `maxMessageBytes` fails as
 * soon as its header arrives. See docs/design-connection.md for the measured reasons.
 */
import { Socket } from 'node:net';
import { createRequire } from 'node:module';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import type pg from 'pg';
import {
  ConfigError,
  ConnectionError,
  PgarkError,
  PostgresServerError,
  ProtocolError,
  ReplicationError,
  type ServerErrorFields,
} from '../errors';
import { emit, noopLogger, type Logger, type ObserveOptions } from '../observe';
import {
  BackendCode,
  DEFAULT_MAX_MESSAGE_BYTES,
  MessageFramer,
  backendCodeName,
  parseCommandComplete,
  parseCopyResponse,
  parseDataRow,
  parseErrorFields,
  parseParameterStatus,
  parseRowDescription,
  writeCopyData,
  writeCopyDataHeader,
  writeCopyDone,
  writeCopyFail,
  writeQuery,
  writeTerminate,
  type BackendMessage,
  type FieldDescription,
} from '../protocol';
import { mapConnectError, maskSecret } from './connect-errors';

/** CopyData payloads up to this size are copied behind their header and sent in one write. */
const SMALL_COPY_DATA_BYTES = 8 * 1024;

// pg is CommonJS; load it through require so both the ESM and CJS builds resolve the same module.
const requireCjs = createRequire(import.meta.url);

/** libpq's sslmode values. `prefer` tries TLS and falls back to plain TCP if the server refuses it. */
export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface TlsOptions {
  mode: SslMode;
  /** CA certificate(s) (PEM) for verify-ca / verify-full. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate and key (PEM) for cert authentication. */
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface ReplicationConnectionOptions extends ObserveOptions {
  host: string;
  /** @default 5432 */
  port?: number;
  user: string;
  /** Never logged or put into an error. */
  password?: string;
  /** Sent as dbname in the startup packet; a physical walsender ignores it. @default 'replication' */
  database?: string;
  /** @default 'prefer' */
  ssl?: SslMode | TlsOptions;
  /** Time allowed for TCP connect + TLS + authentication. @default 10000 */
  connectTimeoutMs?: number;
  /** @default 'pgark' */
  applicationName?: string;
  /** Largest backend message accepted (PROTOCOL_MESSAGE_TOO_LONG above it). @default 64 MiB */
  maxMessageBytes?: number;
  /**
   * Bytes of decoded messages held for the consumer before the socket is paused. The framer adds at
   * most one socket chunk and one partial message on top. @default 1 MiB
   */
  highWaterMarkBytes?: number;
}

export const CONNECTION_DEFAULTS = {
  port: 5432,
  database: 'replication',
  ssl: 'prefer' as SslMode,
  connectTimeoutMs: 10_000,
  applicationName: 'pgark',
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  highWaterMarkBytes: 1024 * 1024,
  /** Events held before pausing, whatever their size (many tiny DataRows). */
  highWaterMarkEvents: 256,
  closeTimeoutMs: 2_000,
} as const;

/**
 * One event of a command's response, in wire order. A command's event sequence ends (the iterator
 * finishes) at ReadyForQuery; an ErrorResponse makes the iterator throw PostgresServerError after
 * the server's ReadyForQuery, so the connection stays usable.
 */
export type CommandEvent =
  | { type: 'rowDescription'; fields: FieldDescription[] }
  /** Values are views of the message (valid as long as you keep them; text decoding is yours). */
  | { type: 'dataRow'; values: (Buffer | null)[] }
  | { type: 'commandComplete'; tag: string }
  | { type: 'emptyQuery' }
  | { type: 'copyOutStart' }
  | { type: 'copyInStart' }
  | { type: 'copyBothStart' }
  /**
   * One CopyData payload (a view of a received chunk that pgark never overwrites). With
   * `leaseCopyData` (see CommandOptions), `release` may be present: once called, pgark may read new
   * bytes into that memory, so call it only when nothing reads `data` any more.
   */
  | { type: 'copyData'; data: Buffer; release?: () => void }
  | { type: 'copyDone' }
  | { type: 'notice'; fields: ServerErrorFields };

/** One result set of a simple query. */
export interface QueryResult {
  fields: string[];
  rows: (Buffer | null)[][];
  commandTag: string;
}

/**
 * The response to one command, pulled event by event. While you do not pull, the socket is paused
 * (beyond `highWaterMarkBytes`); a consumer that simply stops pulling leaves it paused until
 * `close()`. Ending the iteration early (break/return) before the command finished closes the
 * connection, because the server would otherwise keep sending.
 */
export interface CommandStream extends AsyncIterableIterator<CommandEvent> {
  /** Resolves with the next event, or `{ done: true }` after ReadyForQuery. */
  next(): Promise<IteratorResult<CommandEvent, undefined>>;
  /**
   * The next event if one is already received, without waiting (and without a promise); otherwise
   * `undefined`, and `next()` tells what comes (more events, the end, or the command's error). For a
   * consumer that handles everything one socket read delivered in one go (a synchronous WAL flush).
   */
  takeBuffered(): CommandEvent | undefined;
  /** True once ReadyForQuery (or a failure) ended the command. */
  readonly finished: boolean;
}

/** Per-command options of `execute`/`copyOut`. */
export interface CommandOptions {
  /**
   * CopyData events carry a `release` function (plain TCP only; over TLS they never do): the
   * payload's memory is read into again once every payload of its 1 MiB read slab was released. For a
   * consumer that copies each payload and then forgets it (the base backup to S3): no read slab
   * becomes garbage. A payload never released keeps its slab from reuse, as without the option.
   * @default false
   */
  leaseCopyData?: boolean;
}

interface PendingCommand {
  sql: string;
  leaseCopyData: boolean;
  events: { ev: CommandEvent; bytes: number }[];
  bufferedBytes: number;
  error: PgarkError | undefined;
  done: boolean;
  copyMode: 'out' | 'in' | 'both' | undefined;
  /** Pending next() calls waiting for an event (normally one consumer; several are tolerated). */
  waiters: (() => void)[];
}

/** A socket whose reads land in a MessageFramer's own memory, and the switch that hands its bytes to pgark. */
interface OwnedRead {
  socket: Socket;
  framer: MessageFramer;
  /** From now on every read goes to the framer and `onRead` runs (before: bytes go to pg as 'data' events). */
  takeOver(onRead: () => void): void;
}

/**
 * A net.Socket created with the `onread` option: Node reads into `framer.readBuffer()` (no Buffer
 * allocated per read, no copy of messages spanning reads; see MessageFramer's owned-read mode).
 * Until `takeOver`, the bytes are passed to pg's startup parser as 'data' events, as views of
 * framer memory that is never written again (pg may keep them).
 */
function createOwnedReadSocket(maxMessageBytes: number): OwnedRead {
  const framer = new MessageFramer({ maxMessageBytes });
  let onRead: (() => void) | undefined;
  // `onread` is accepted by the Socket constructor (net.connect passes its options on); @types/node lists it for connect only.
  const socket: Socket = new Socket({
    onread: {
      buffer: () => framer.readBuffer(),
      callback: (n: number) => {
        framer.received(n);
        if (onRead) onRead();
        else socket.emit('data', framer.takeReceived());
        return true;
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  return {
    socket,
    framer,
    takeOver(fn) {
      onRead = fn;
    },
  };
}

/** `host:port user=… db=…`: how a target is described in errors and events (never with a password). */
export function describeTarget(o: { host: string; port?: number; user: string; database?: string }): string {
  return `${o.host}:${o.port ?? CONNECTION_DEFAULTS.port} user=${o.user} db=${o.database ?? CONNECTION_DEFAULTS.database}`;
}

/** Parses `server_version` ("17.10", "14.23 (Debian …)", "18beta1") into server_version_num form. */
export function parseServerVersion(text: string): number | undefined {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(text.trim());
  if (!m) return undefined;
  const major = Number(m[1]);
  if (major >= 10) return major * 10000 + Number(m[2] ?? 0);
  return major * 10000 + Number(m[2] ?? 0) * 100 + Number(m[3] ?? 0);
}

function invalid(what: string): never {
  throw new ConfigError('CONFIG_INVALID_OPTION', `invalid connection option: ${what}`);
}

/** Checks the options before any socket is opened (ConfigError CONFIG_INVALID_OPTION; the password is never echoed). */
function validateOptions(o: ReplicationConnectionOptions): void {
  if (typeof o.host !== 'string' || o.host === '') invalid('host must be a non-empty string');
  if (typeof o.user !== 'string' || o.user === '') invalid('user must be a non-empty string');
  if (o.password !== undefined && typeof o.password !== 'string') invalid('password must be a string');
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 1 && o.port <= 65535))
    invalid(`port ${String(o.port)}`);
  if (o.connectTimeoutMs !== undefined && !(Number.isFinite(o.connectTimeoutMs) && o.connectTimeoutMs > 0))
    invalid(`connectTimeoutMs ${String(o.connectTimeoutMs)}`);
  if (
    o.maxMessageBytes !== undefined &&
    !(Number.isInteger(o.maxMessageBytes) && o.maxMessageBytes >= 1024 && o.maxMessageBytes <= 0x7fffffff - 4)
  ) {
    invalid(`maxMessageBytes ${String(o.maxMessageBytes)} (1024 … 2^31-5)`);
  }
  if (
    o.highWaterMarkBytes !== undefined &&
    !(Number.isInteger(o.highWaterMarkBytes) && o.highWaterMarkBytes > 0)
  )
    invalid(`highWaterMarkBytes ${String(o.highWaterMarkBytes)}`);
  const mode = typeof o.ssl === 'object' ? o.ssl.mode : o.ssl;
  if (mode !== undefined && !['disable', 'prefer', 'require', 'verify-ca', 'verify-full'].includes(mode))
    invalid(`ssl mode ${String(mode)}`);
}

function tlsConfig(ssl: SslMode | TlsOptions): false | TlsConnectionOptions {
  const o: TlsOptions = typeof ssl === 'string' ? { mode: ssl } : ssl;
  if (o.mode === 'disable') return false;
  const base: TlsConnectionOptions = {};
  if (o.ca !== undefined) base.ca = o.ca;
  if (o.cert !== undefined) base.cert = o.cert;
  if (o.key !== undefined) base.key = o.key;
  switch (o.mode) {
    case 'prefer':
    case 'require':
      return { ...base, rejectUnauthorized: false };
    case 'verify-ca':
      // Verify the chain but not the host name (libpq verify-ca).
      return { ...base, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ...base, rejectUnauthorized: true };
  }
}

/**
 * A replication connection. Create it with `ReplicationConnection.connect(options)`.
 *
 * @example
 * ```ts
 * const conn = await ReplicationConnection.connect({ host: '127.0.0.1', port: 5432, user: 'replicator', password });
 * const [res] = await conn.query('IDENTIFY_SYSTEM');
 * for await (const ev of conn.execute("BASE_BACKUP (LABEL 'x')")) {
 *   if (ev.type === 'copyData') await upload(ev.data); // the socket stays paused while you await
 * }
 * await conn.close();
 * ```
 */
export class ReplicationConnection {
  /** server_version_num, e.g. 170010. */
  readonly serverVersionNum: number;
  /** `host:port user=… db=…`. */
  readonly target: string;
  /** ParameterStatus values reported by the server (server_version, server_encoding, …). */
  readonly parameters: Map<string, string>;
  /** The walsender's backend PID. */
  readonly processId: number | undefined;

  private readonly socket: Socket;
  private readonly framer: MessageFramer;
  private readonly logger: Logger;
  private readonly observe: ObserveOptions;
  private readonly highWaterMarkBytes: number;
  private active: PendingCommand | undefined;
  private paused = false;
  private pauses = 0;
  private failure: PgarkError | undefined;
  private fatalServerError: PostgresServerError | undefined;
  private closing: Promise<void> | undefined;
  private closedByClient = false;

  private constructor(args: {
    socket: Socket;
    target: string;
    parameters: Map<string, string>;
    processId: number | undefined;
    serverVersionNum: number;
    options: ReplicationConnectionOptions;
    ownedRead?: OwnedRead;
  }) {
    this.socket = args.socket;
    this.target = args.target;
    this.parameters = args.parameters;
    this.processId = args.processId;
    this.serverVersionNum = args.serverVersionNum;
    this.logger = args.options.logger ?? noopLogger;
    this.observe = { logger: args.options.logger, onEvent: args.options.onEvent };
    this.highWaterMarkBytes = args.options.highWaterMarkBytes ?? CONNECTION_DEFAULTS.highWaterMarkBytes;
    if (args.ownedRead) {
      // Plain TCP: the socket reads into the framer's memory (see createOwnedReadSocket).
      this.framer = args.ownedRead.framer;
      args.ownedRead.takeOver(() => this.pump());
    } else {
      this.framer = new MessageFramer({
        maxMessageBytes: args.options.maxMessageBytes ?? CONNECTION_DEFAULTS.maxMessageBytes,
      });
      this.socket.on('data', (chunk: Buffer) => {
        this.framer.push(chunk);
        this.pump();
      });
    }
    this.socket.on('error', (e: Error) => {
      this.logger.debug('replication socket error', {
        target: this.target,
        error: maskSecret(e.message, undefined),
      });
    });
    this.socket.on('close', () => this.onSocketClosed());
  }

  /**
   * Opens a physical replication connection (`replication=true`).
   *
   * Errors: ConnectionError CONNECTION_AUTH_FAILED (sqlstate 28P01), CONNECTION_PERMISSION_DENIED
   * (42501 / 28000: no REPLICATION attribute or pg_hba.conf refuses), CONNECTION_REFUSED,
   * CONNECTION_TIMEOUT (after `connectTimeoutMs`), CONNECTION_TLS_FAILED, CONNECTION_CLOSED;
   * ReplicationError REPLICATION_UNSUPPORTED_VERSION for servers older than 14.
   */
  static async connect(options: ReplicationConnectionOptions): Promise<ReplicationConnection> {
    validateOptions(options);
    const target = describeTarget(options);
    const ssl = options.ssl ?? CONNECTION_DEFAULTS.ssl;
    const mode = typeof ssl === 'string' ? ssl : ssl.mode;
    try {
      return await ReplicationConnection.connectOnce(options, target, tlsConfig(ssl));
    } catch (e) {
      // sslmode=prefer: the server said 'N' to SSLRequest; libpq then continues without TLS.
      if (
        mode === 'prefer' &&
        e instanceof ConnectionError &&
        e.code === 'CONNECTION_TLS_FAILED' &&
        /does not support SSL/i.test(e.message)
      ) {
        return ReplicationConnection.connectOnce(options, target, false);
      }
      throw e;
    }
  }

  private static async connectOnce(
    options: ReplicationConnectionOptions,
    target: string,
    ssl: false | TlsConnectionOptions,
  ): Promise<ReplicationConnection> {
    const { Client } = requireCjs('pg') as typeof pg;
    const password = options.password;
    const timeoutMs = options.connectTimeoutMs ?? CONNECTION_DEFAULTS.connectTimeoutMs;
    // Plain TCP: a socket that reads into the framer's memory (TLS keeps Node's read path: the
    // TLSSocket pg layers on top reads for itself).
    const ownedRead =
      ssl === false
        ? createOwnedReadSocket(options.maxMessageBytes ?? CONNECTION_DEFAULTS.maxMessageBytes)
        : undefined;
    // Every field is given explicitly (a function for the password) so that pg reads neither
    // process.env (PGPASSWORD, PGOPTIONS, PGSSLMODE, …) nor ~/.pgpass: the library never reads the environment.
    const client = new Client({
      host: options.host,
      port: options.port ?? CONNECTION_DEFAULTS.port,
      user: options.user,
      database: options.database ?? CONNECTION_DEFAULTS.database,
      password: () => password ?? '',
      ssl: ssl === false ? false : ssl,
      application_name: options.applicationName ?? CONNECTION_DEFAULTS.applicationName,
      replication: 'true',
      keepAlive: true,
      // TCP keepalive probes start after 10 s idle, so a vanished peer is eventually detected even
      // while the caller waits; protocol-level timeouts (wal_sender_timeout-style) are the caller's job.
      keepAliveInitialDelayMillis: 10_000,
      ...(ownedRead ? { stream: ownedRead.socket } : {}),
    } as pg.ClientConfig & { replication: string; sslnegotiation?: string });
    const params = client as unknown as { connectionParameters: Record<string, unknown> };
    for (const k of [
      'options',
      'statement_timeout',
      'lock_timeout',
      'idle_in_transaction_session_timeout',
      'client_encoding',
    ]) {
      params.connectionParameters[k] = undefined;
    }
    const parameters = new Map<string, string>();
    const con = (client as unknown as { connection: pg.Connection & { stream: Socket } }).connection;
    con.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) =>
      parameters.set(m.parameterName, m.parameterValue),
    );
    // A client 'error' after connect would otherwise be an unhandled 'error' event.
    client.on('error', () => {});

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new ConnectionError(
            'CONNECTION_TIMEOUT',
            `connecting to ${target} took longer than ${timeoutMs} ms`,
            { target },
          ),
        );
        con.stream.destroy();
      }, timeoutMs);
    });
    try {
      await Promise.race([client.connect(), timeout]);
    } catch (e) {
      con.stream.destroy();
      throw mapConnectError(e, target, password);
    } finally {
      clearTimeout(timer);
    }

    // Take the socket over: mute pg's handlers (they would react to our traffic and to the close).
    const socket = con.stream;
    socket.removeAllListeners('data');
    con.removeAllListeners();
    con.on('error', () => {});
    client.removeAllListeners();
    client.on('error', () => {});
    const processId = (client as unknown as { processID: number | null }).processID ?? undefined;

    const versionText = parameters.get('server_version') ?? '';
    const serverVersionNum = parseServerVersion(versionText);
    const conn = new ReplicationConnection({
      socket,
      target,
      parameters,
      processId,
      serverVersionNum: serverVersionNum ?? 0,
      options,
      ownedRead,
    });
    let version = serverVersionNum;
    if (version === undefined) {
      const [res] = await conn.query('SHOW server_version_num');
      version = Number(res?.rows[0]?.[0]?.toString() ?? NaN);
      (conn as { serverVersionNum: number }).serverVersionNum = version;
    }
    if (!(version >= 140000)) {
      await conn.close();
      throw new ReplicationError(
        'REPLICATION_UNSUPPORTED_VERSION',
        `server ${target} runs postgresql ${versionText || version}; pgark needs 14 or newer`,
      );
    }
    emit(options, { type: 'connection.opened', target, serverVersion: version });
    return conn;
  }

  /**
   * Memory held for the consumer right now: decoded events not yet pulled plus bytes in the framer
   * (at most about highWaterMarkBytes + one message + one socket chunk), whether the socket is
   * paused, and how often it was paused (backpressure at work). `readSlabsReused`: read slabs read
   * into again after their leased CopyData payloads were all released (see CommandOptions).
   */
  stats(): { bufferedBytes: number; paused: boolean; pauses: number; readSlabsReused: number } {
    return {
      bufferedBytes: (this.active?.bufferedBytes ?? 0) + this.framer.bufferedBytes,
      paused: this.paused,
      pauses: this.pauses,
      readSlabsReused: this.framer.slabsReused,
    };
  }

  /** True once the connection failed or was closed. */
  get closed(): boolean {
    return this.failure !== undefined || this.closedByClient;
  }

  /**
   * Sends one simple-query command and returns its response as a pull-driven event stream
   * (see CommandEvent). The general primitive under `query`, `copyOut` and `copyBoth`: it supports
   * several result sets and several CopyOut phases in one command (PG14's legacy BASE_BACKUP), rows
   * after CopyDone (end-of-timeline tuple, BASE_BACKUP end LSN) and an ErrorResponse after data.
   *
   * Throws ConnectionError CONNECTION_BUSY if another command is still running.
   */
  execute(sql: string, commandOptions: CommandOptions = {}): CommandStream {
    if (this.failure) return this.failedStream(this.failure);
    if (this.closedByClient)
      return this.failedStream(
        new ConnectionError('CONNECTION_CLOSED', `connection to ${this.target} is closed`, {
          target: this.target,
        }),
      );
    if (this.active) {
      return this.failedStream(
        new ConnectionError('CONNECTION_BUSY', `a command is still running on ${this.target}`, {
          target: this.target,
        }),
      );
    }
    let message: Buffer;
    try {
      message = writeQuery(sql);
    } catch (e) {
      return this.failedStream(e as PgarkError);
    }
    const cmd: PendingCommand = {
      sql,
      leaseCopyData: commandOptions.leaseCopyData === true,
      events: [],
      bufferedBytes: 0,
      error: undefined,
      done: false,
      copyMode: undefined,
      waiters: [],
    };
    this.active = cmd;
    this.socket.write(message);
    return this.streamFor(cmd);
  }

  /** Same as `execute`, for a command expected to answer with CopyOutResponse (BASE_BACKUP). */
  copyOut(sql: string, commandOptions: CommandOptions = {}): CommandStream {
    return this.execute(sql, commandOptions);
  }

  /**
   * Same as `execute`, for START_REPLICATION (CopyBoth). Send standby status updates with
   * `sendCopyData` and end the stream with `sendCopyDone`; the server then answers CopyDone and,
   * after a timeline switch, the (next_tli, next_tli_startpos) result set.
   */
  copyBoth(sql: string): CommandStream {
    return this.execute(sql);
  }

  /**
   * Runs a simple query and collects every result set. NoticeResponses go to the logger. A command
   * that enters COPY is refused: the copy is ended and PROTOCOL_UNEXPECTED_MESSAGE thrown.
   * Server errors → PostgresServerError (sqlstate and every field).
   */
  async query(sql: string): Promise<QueryResult[]> {
    const results: QueryResult[] = [];
    let current: QueryResult | undefined;
    let unexpected: string | undefined;
    for await (const ev of this.execute(sql)) {
      switch (ev.type) {
        case 'rowDescription':
          current = { fields: ev.fields.map((f) => f.name), rows: [], commandTag: '' };
          break;
        case 'dataRow':
          if (!current)
            throw new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', 'DataRow without RowDescription');
          current.rows.push(ev.values);
          break;
        case 'commandComplete':
          results.push({ ...(current ?? { fields: [], rows: [] }), commandTag: ev.tag });
          current = undefined;
          break;
        case 'copyInStart':
          unexpected ??= 'CopyInResponse';
          this.sendCopyFail('query() does not accept COPY');
          break;
        case 'copyBothStart':
          unexpected ??= 'CopyBothResponse';
          this.sendCopyDone();
          break;
        case 'copyOutStart':
          unexpected ??= 'CopyOutResponse';
          break;
        default:
          break;
      }
    }
    if (unexpected) {
      throw new ProtocolError(
        'PROTOCOL_UNEXPECTED_MESSAGE',
        `${unexpected} to "${sql}": use execute/copyOut/copyBoth for commands that copy`,
      );
    }
    return results;
  }

  /**
   * Sends one CopyData message (CopyBoth / CopyIn). Resolves once the socket accepted it, waiting
   * for 'drain' when its write buffer is full, so a fast producer cannot grow memory without bound.
   */
  async sendCopyData(payload: Buffer): Promise<void> {
    this.assertWritable();
    let ok: boolean;
    if (payload.length <= SMALL_COPY_DATA_BYTES) {
      // One write, one send(2): a standby status update (34 bytes) sent as header + payload took two
      // loopback sends, each waking the walsender, on the synchronous-commit path (bench-wal.md).
      ok = this.socket.write(writeCopyData(payload));
    } else {
      this.socket.write(writeCopyDataHeader(payload.length));
      ok = this.socket.write(payload);
    }
    if (!ok) await this.waitDrain();
  }

  /** Sends CopyDone (ends a CopyIn, or our half of a CopyBoth). */
  sendCopyDone(): void {
    this.assertWritable();
    this.socket.write(writeCopyDone());
  }

  /** Sends CopyFail (aborts a CopyIn such as UPLOAD_MANIFEST). */
  sendCopyFail(message: string): void {
    this.assertWritable();
    this.socket.write(writeCopyFail(message));
  }

  /** Sends Terminate and closes the socket. Idempotent; never rejects. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closedByClient = true;
    this.closing = new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      const timer = setTimeout(() => this.socket.destroy(), CONNECTION_DEFAULTS.closeTimeoutMs);
      timer.unref();
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        this.socket.end(writeTerminate());
      } catch {
        this.socket.destroy();
      }
      // Data the server still sends must not be held back by a paused socket.
      this.socket.resume();
    });
    return this.closing;
  }

  /** Closes the socket at once, without Terminate (used when the consumer abandons a stream). */
  destroy(): void {
    this.closedByClient = true;
    this.socket.destroy();
  }

  // -------------------------------------------------------------------------------------------

  private assertWritable(): void {
    if (this.failure) throw this.failure;
    if (this.closedByClient || this.socket.destroyed || !this.socket.writable) {
      throw new ConnectionError('CONNECTION_CLOSED', `connection to ${this.target} is closed`, {
        target: this.target,
      });
    }
  }

  private waitDrain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        this.socket.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.socket.off('drain', onDrain);
        reject(
          this.failure ??
            new ConnectionError('CONNECTION_CLOSED', `connection to ${this.target} closed`, {
              target: this.target,
            }),
        );
      };
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
  }

  /** Decodes buffered messages while the consumer has room; pauses the socket when it has not. */
  private pump(): void {
    while (!this.failure) {
      const cmd = this.active;
      if (
        cmd &&
        (cmd.bufferedBytes >= this.highWaterMarkBytes ||
          cmd.events.length >= CONNECTION_DEFAULTS.highWaterMarkEvents)
      ) {
        if (!this.paused) {
          this.paused = true;
          this.pauses++;
          this.socket.pause();
        }
        return;
      }
      let msg: BackendMessage | undefined;
      try {
        msg = this.framer.next();
      } catch (e) {
        this.fail(e as PgarkError);
        this.socket.destroy();
        return;
      }
      if (!msg) break;
      try {
        this.dispatch(msg);
      } catch (e) {
        this.fail(e instanceof PgarkError ? e : new ProtocolError('PROTOCOL_MALFORMED_MESSAGE', String(e)));
        this.socket.destroy();
        return;
      }
    }
    if (this.paused && !this.failure) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private push(cmd: PendingCommand, ev: CommandEvent, bytes: number): void {
    cmd.events.push({ ev, bytes });
    cmd.bufferedBytes += bytes;
    this.wake(cmd);
  }

  private wake(cmd: PendingCommand): void {
    const waiters = cmd.waiters.splice(0);
    for (const w of waiters) w();
  }

  private dispatch(msg: BackendMessage): void {
    const { code, body } = msg;
    if (code === BackendCode.NoticeResponse) {
      const fields = parseErrorFields(body, 'NoticeResponse');
      const level = fields.severity === 'WARNING' ? 'warn' : 'info';
      this.logger[level](`server ${fields.severity?.toLowerCase() ?? 'notice'}: ${fields.message}`, {
        target: this.target,
        sqlstate: fields.sqlstate,
      });
      if (this.active) this.push(this.active, { type: 'notice', fields }, 0);
      return;
    }
    if (code === BackendCode.ParameterStatus) {
      const p = parseParameterStatus(body);
      this.parameters.set(p.name, p.value);
      return;
    }
    if (code === BackendCode.NotificationResponse) return;
    const cmd = this.active;
    if (code === BackendCode.ErrorResponse) {
      const fields = parseErrorFields(body);
      const err = new PostgresServerError(fields);
      if (fields.severity === 'FATAL' || fields.severity === 'PANIC') this.fatalServerError = err;
      if (cmd) cmd.error ??= err;
      else
        this.logger.warn(`server error outside a command: ${fields.message}`, {
          target: this.target,
          sqlstate: fields.sqlstate,
        });
      return;
    }
    if (!cmd) {
      throw new ProtocolError(
        'PROTOCOL_UNEXPECTED_MESSAGE',
        `unexpected ${backendCodeName(code)} message while no command is running`,
      );
    }
    switch (code) {
      case BackendCode.RowDescription:
        this.push(cmd, { type: 'rowDescription', fields: parseRowDescription(body) }, body.length);
        return;
      case BackendCode.DataRow:
        this.push(cmd, { type: 'dataRow', values: parseDataRow(body) }, body.length);
        return;
      case BackendCode.CommandComplete:
        this.push(cmd, { type: 'commandComplete', tag: parseCommandComplete(body) }, 0);
        return;
      case BackendCode.EmptyQueryResponse:
        this.push(cmd, { type: 'emptyQuery' }, 0);
        return;
      case BackendCode.CopyOutResponse:
        parseCopyResponse(body, 'CopyOutResponse');
        cmd.copyMode = 'out';
        this.push(cmd, { type: 'copyOutStart' }, 0);
        return;
      case BackendCode.CopyInResponse:
        parseCopyResponse(body, 'CopyInResponse');
        cmd.copyMode = 'in';
        this.push(cmd, { type: 'copyInStart' }, 0);
        return;
      case BackendCode.CopyBothResponse:
        parseCopyResponse(body, 'CopyBothResponse');
        cmd.copyMode = 'both';
        this.push(cmd, { type: 'copyBothStart' }, 0);
        return;
      case BackendCode.CopyData:
        if (cmd.copyMode !== 'out' && cmd.copyMode !== 'both') {
          throw new ProtocolError('PROTOCOL_UNEXPECTED_MESSAGE', 'CopyData outside COPY OUT/BOTH');
        }
        if (cmd.leaseCopyData) {
          const release = this.framer.leaseLast();
          if (release) {
            this.push(cmd, { type: 'copyData', data: body, release }, body.length);
            return;
          }
        }
        this.push(cmd, { type: 'copyData', data: body }, body.length);
        return;
      case BackendCode.CopyDone:
        cmd.copyMode = undefined;
        this.push(cmd, { type: 'copyDone' }, 0);
        return;
      case BackendCode.ReadyForQuery:
        cmd.done = true;
        this.active = undefined;
        this.wake(cmd);
        return;
      default:
        throw new ProtocolError(
          'PROTOCOL_UNEXPECTED_MESSAGE',
          `unexpected ${backendCodeName(code)} message during "${cmd.sql.slice(0, 40)}"`,
        );
    }
  }

  private fail(err: PgarkError): void {
    if (this.failure) return;
    this.failure = err;
    const cmd = this.active;
    if (cmd) {
      cmd.error = cmd.error && !(err instanceof ConnectionError) ? cmd.error : err;
      cmd.done = true;
      this.active = undefined;
      this.wake(cmd);
    }
  }

  private onSocketClosed(): void {
    if (!this.failure) {
      let err: PgarkError;
      if (this.closedByClient) {
        err = new ConnectionError(
          'CONNECTION_CLOSED',
          `connection to ${this.target} was closed by the client`,
          { target: this.target },
        );
      } else if (this.fatalServerError) {
        const f = this.fatalServerError;
        err = new ConnectionError(
          'CONNECTION_CLOSED',
          `server closed the connection to ${this.target}: ${f.message}`,
          {
            target: this.target,
            sqlstate: f.sqlstate,
            cause: f,
          },
        );
      } else {
        err = new ConnectionError(
          'CONNECTION_CLOSED',
          `connection to ${this.target} closed unexpectedly${this.framer.midMessage ? ' in the middle of a message' : ''}`,
          { target: this.target },
        );
      }
      this.fail(err);
    }
    emit(this.observe, {
      type: 'connection.closed',
      target: this.target,
      ...(this.closedByClient ? {} : { error: this.failure?.code }),
    });
  }

  private failedStream(err: PgarkError): CommandStream {
    const it: CommandStream = {
      finished: true,
      next: () => Promise.reject(err),
      takeBuffered: () => undefined,
      return: () => Promise.resolve({ done: true, value: undefined }),
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  private streamFor(cmd: PendingCommand): CommandStream {
    const takeBuffered = (): CommandEvent | undefined => {
      const entry = cmd.events.shift();
      if (!entry) return undefined;
      cmd.bufferedBytes -= entry.bytes;
      if (this.paused) this.pump();
      return entry.ev;
    };
    const next = async (): Promise<IteratorResult<CommandEvent, undefined>> => {
      for (;;) {
        const ev = takeBuffered();
        if (ev) return { done: false, value: ev };
        if (cmd.done) {
          if (cmd.error) throw cmd.error;
          return { done: true, value: undefined };
        }
        await new Promise<void>((resolve) => {
          cmd.waiters.push(resolve);
        });
      }
    };
    const stream: CommandStream = {
      get finished() {
        return cmd.done && cmd.events.length === 0;
      },
      next,
      takeBuffered,
      return: async () => {
        if (!cmd.done) {
          // The server is still sending this command's response; the connection cannot be reused.
          this.fail(
            new ConnectionError(
              'CONNECTION_CLOSED',
              `command abandoned before it finished on ${this.target}`,
              { target: this.target },
            ),
          );
          this.destroy();
        }
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return stream;
      },
    };
    return stream;
  }
}
