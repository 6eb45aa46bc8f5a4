/**
 * Maps what node-postgres and Node's socket layer throw while connecting onto pgark's typed errors,
 * without ever carrying a secret: messages are rebuilt from known fields, any occurrence of the
 * password is masked, and only socket-level causes (which cannot contain it) are kept as `cause`.
 */
import { ConnectionError, PgarkError, PostgresServerError, type ServerErrorFields } from '../errors';

/** Fields of pg-protocol's DatabaseError (an ErrorResponse received during startup/authentication). */
interface PgDatabaseErrorLike {
  severity?: string;
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
  where?: string;
  file?: string;
  line?: string;
  routine?: string;
}

/** Replaces every occurrence of the secret in a text. */
export function maskSecret(text: string, secret: string | undefined): string {
  if (!secret) return text;
  return text.split(secret).join('***');
}

function isDatabaseError(e: unknown): e is PgDatabaseErrorLike & Error {
  if (!(e instanceof Error) || !('severity' in e)) return false;
  const code = (e as unknown as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

const REFUSED_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'ENOENT',
]);
const TLS_CODE_RE = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|HOSTNAME/;

/** Server fields of a DatabaseError, masked. */
export function serverFieldsFromPgError(
  e: PgDatabaseErrorLike,
  secret: string | undefined,
): ServerErrorFields {
  const f: ServerErrorFields = { sqlstate: e.code ?? 'XX000', message: maskSecret(e.message, secret) };
  if (e.severity) f.severity = e.severity;
  if (e.detail) f.detail = maskSecret(e.detail, secret);
  if (e.hint) f.hint = maskSecret(e.hint, secret);
  if (e.where) f.where = e.where;
  if (e.file) f.file = e.file;
  if (e.line) f.line = e.line;
  if (e.routine) f.routine = e.routine;
  return f;
}

/** Turns a failure of `pg.Client#connect` into a typed, secret-free error. */
export function mapConnectError(e: unknown, target: string, secret: string | undefined): PgarkError {
  if (e instanceof PgarkError) return e;
  if (isDatabaseError(e)) {
    const fields = serverFieldsFromPgError(e, secret);
    const serverError = new PostgresServerError(fields);
    const sqlstate = fields.sqlstate;
    // 28P01 invalid_password; 28000 invalid_authorization_specification (pg_hba reject, no entry);
    // 42501 insufficient_privilege ("must be superuser or replication role to start walsender",
    // "permission denied to start WAL sender" in 16+).
    if (sqlstate === '28P01') {
      return new ConnectionError(
        'CONNECTION_AUTH_FAILED',
        `authentication failed for ${target}: ${fields.message}`,
        {
          target,
          sqlstate,
          cause: serverError,
          hint: 'check the user name and password',
        },
      );
    }
    if (sqlstate === '28000' || sqlstate === '42501') {
      return new ConnectionError(
        'CONNECTION_PERMISSION_DENIED',
        `replication connection refused for ${target}: ${fields.message}`,
        {
          target,
          sqlstate,
          cause: serverError,
          hint: 'the role needs the REPLICATION attribute (or superuser) and a pg_hba.conf "replication" entry',
        },
      );
    }
    return serverError;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const message = maskSecret(err.message, secret);
  // Only socket-level errors (no secret possible) keep their original as cause.
  const socketCause = code ? { name: err.name, code, message } : undefined;
  if (REFUSED_CODES.has(code)) {
    return new ConnectionError('CONNECTION_REFUSED', `cannot reach ${target}: ${message}`, {
      target,
      cause: socketCause,
    });
  }
  if (code === 'ETIMEDOUT') {
    return new ConnectionError('CONNECTION_TIMEOUT', `connecting to ${target} timed out: ${message}`, {
      target,
      cause: socketCause,
    });
  }
  if (TLS_CODE_RE.test(code) || /SSL|TLS|certificate/i.test(err.message)) {
    return new ConnectionError('CONNECTION_TLS_FAILED', `tls with ${target} failed: ${message}`, {
      target,
      cause: socketCause,
      hint: 'check sslmode and the CA certificate, or whether the server has ssl enabled',
    });
  }
  if (/^SASL|password/i.test(err.message)) {
    // pg's SCRAM client rejects e.g. a missing password or a bad server signature before the server answers.
    return new ConnectionError('CONNECTION_AUTH_FAILED', `authentication failed for ${target}: ${message}`, {
      target,
    });
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || /terminated/i.test(err.message)) {
    return new ConnectionError(
      'CONNECTION_CLOSED',
      `connection to ${target} closed during startup: ${message}`,
      { target, cause: socketCause },
    );
  }
  return new ConnectionError('CONNECTION_CLOSED', `connecting to ${target} failed: ${message}`, {
    target,
    cause: socketCause,
  });
}
