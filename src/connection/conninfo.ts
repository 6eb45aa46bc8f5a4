/**
 * Turns a libpq connection string (`host=… port=… user=…` key/value form, or a
 * `postgresql://user:pass@host:port/db?sslmode=…` URL) into ReplicationConnectionOptions.
 * It reads only the text it is given: no environment variables, no ~/.pgpass (the caller, e.g.
 * the CLI, merges those in). Errors never contain the text itself, since it may hold a password.
 */
import { ConfigError } from '../errors';
import type { ReplicationConnectionOptions, SslMode } from './replication-connection';

const SSL_MODES: readonly SslMode[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** Splits the key/value form, honouring single quotes and backslash escapes as libpq does (conninfo_parse). */
function parseKeyValue(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const n = text.length;
  const fail = (why: string): never => {
    throw new ConfigError('CONFIG_INVALID_CONNINFO', `invalid connection string: ${why}`);
  };
  while (i < n) {
    while (i < n && /\s/.test(text[i]!)) i++;
    if (i >= n) break;
    let key = '';
    while (i < n && text[i] !== '=' && !/\s/.test(text[i]!)) key += text[i++];
    while (i < n && /\s/.test(text[i]!)) i++;
    if (text[i] !== '=') fail(`missing "=" after "${key}"`);
    i++;
    while (i < n && /\s/.test(text[i]!)) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) fail(`unterminated quoted value for "${key}"`);
        const ch = text[i++]!;
        if (ch === "'") break;
        if (ch === '\\' && i < n) value += text[i++];
        else value += ch;
      }
    } else {
      while (i < n && !/\s/.test(text[i]!)) {
        const ch = text[i++]!;
        if (ch === '\\' && i < n) value += text[i++];
        else value += ch;
      }
    }
    out.set(key, value);
  }
  return out;
}

function parseUrl(text: string): Map<string, string> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError('CONFIG_INVALID_CONNINFO', 'invalid connection url');
  }
  const out = new Map<string, string>();
  if (url.hostname) out.set('host', decodeURIComponent(url.hostname.replace(/^\[|\]$/g, '')));
  if (url.port) out.set('port', url.port);
  if (url.username) out.set('user', decodeURIComponent(url.username));
  if (url.password) out.set('password', decodeURIComponent(url.password));
  const db = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (db) out.set('dbname', db);
  for (const [k, v] of url.searchParams) out.set(k, v);
  return out;
}

/**
 * Parses a connection string into options for `ReplicationConnection.connect`.
 * Recognised keys: host, hostaddr, port, user, password, dbname, sslmode, connect_timeout
 * (seconds), application_name, fallback_application_name. `replication` is ignored (pgark always
 * opens a physical replication connection). Certificate files are not read here: pass `ssl.ca`
 * yourself. Unknown keys → CONFIG_INVALID_CONNINFO.
 *
 * @example parseConnectionString('postgresql://replicator@db1:5432/postgres?sslmode=require')
 */
export function parseConnectionString(
  text: string,
): Partial<ReplicationConnectionOptions> & { host?: string; user?: string } {
  const isUrl = /^postgres(ql)?:\/\//i.test(text.trim());
  const kv = isUrl ? parseUrl(text.trim()) : parseKeyValue(text);
  const o: Partial<ReplicationConnectionOptions> = {};
  for (const [key, value] of kv) {
    switch (key) {
      case 'host':
      case 'hostaddr':
        o.host = value;
        break;
      case 'port': {
        const port = Number(value);
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          throw new ConfigError('CONFIG_INVALID_CONNINFO', `invalid port "${value}" in connection string`);
        }
        o.port = port;
        break;
      }
      case 'user':
        o.user = value;
        break;
      case 'password':
        o.password = value;
        break;
      case 'dbname':
        o.database = value;
        break;
      case 'sslmode':
        if (!SSL_MODES.includes(value as SslMode)) {
          throw new ConfigError(
            'CONFIG_INVALID_CONNINFO',
            `invalid sslmode "${value}" (use ${SSL_MODES.join(', ')})`,
          );
        }
        o.ssl = value as SslMode;
        break;
      case 'connect_timeout': {
        const s = Number(value);
        if (!Number.isFinite(s) || s < 0)
          throw new ConfigError('CONFIG_INVALID_CONNINFO', `invalid connect_timeout "${value}"`);
        if (s > 0) o.connectTimeoutMs = Math.max(2, s) * 1000; // libpq: values below 2 s act as 2 s
        break;
      }
      case 'application_name':
      case 'fallback_application_name':
        o.applicationName ??= value;
        if (key === 'application_name') o.applicationName = value;
        break;
      case 'replication':
        break;
      default:
        throw new ConfigError('CONFIG_INVALID_CONNINFO', `unsupported connection parameter "${key}"`);
    }
  }
  return o;
}

/** The subset of pg.ClientConfig pgark fills (kept structural so this module does not load `pg`). */
export interface PgClientConfig {
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  connectionTimeoutMillis?: number;
  application_name?: string;
  ssl?: boolean | { rejectUnauthorized: boolean };
}

/**
 * Options for a plain SQL `pg.Client` from parsed connection options (libpq's default: dbname = user).
 * sslmode as libpq: `disable`/`prefer` connect in clear (pg has no fallback from TLS to clear),
 * `require` encrypts without checking the certificate, `verify-ca`/`verify-full` check it.
 */
export function toPgClientConfig(
  c: Partial<ReplicationConnectionOptions> & { host?: string; user?: string },
): PgClientConfig {
  const cfg: PgClientConfig = {};
  if (c.host !== undefined) cfg.host = c.host;
  if (c.user !== undefined) cfg.user = c.user;
  const database = c.database ?? c.user;
  if (database !== undefined) cfg.database = database;
  if (c.port !== undefined) cfg.port = c.port;
  if (c.password !== undefined) cfg.password = c.password;
  if (c.connectTimeoutMs !== undefined) cfg.connectionTimeoutMillis = c.connectTimeoutMs;
  if (c.applicationName !== undefined) cfg.application_name = c.applicationName;
  const mode = typeof c.ssl === 'object' ? c.ssl.mode : c.ssl;
  if (mode === 'require') cfg.ssl = { rejectUnauthorized: false };
  else if (mode === 'verify-ca' || mode === 'verify-full') cfg.ssl = true;
  return cfg;
}
