/**
 * Connection options as PostgreSQL's own tools take them: `-d/--dbname` with a conninfo string or a
 * URL, `-h/--host`, `-p/--port`, `-U/--username`, and the usual environment variables (PGHOST,
 * PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE). Precedence as in libpq: explicit options over
 * the connection string's keys over the environment. The password is never printed.
 */
import { Option, type Command } from 'commander';
import {
  ConfigError,
  parseConnectionString,
  type ReplicationConnectionOptions,
  type SslMode,
} from '../index';

export interface ConnectionCliOptions {
  dbname?: string;
  host?: string;
  port?: string;
  username?: string;
}

export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('-d, --dbname <conninfo>', 'connection string or URL (postgresql://user@host:port/db)'),
    )
    .addOption(new Option('-h, --host <host>', 'database server host (PGHOST)'))
    .addOption(new Option('-p, --port <port>', 'database server port (PGPORT)'))
    .addOption(new Option('-U, --username <user>', 'role with the REPLICATION attribute (PGUSER)'));
}

/** Builds ReplicationConnection options from the command line and the environment. */
export function connectionFromCli(
  opts: ConnectionCliOptions,
  env: NodeJS.ProcessEnv = process.env,
): ReplicationConnectionOptions {
  const fromEnv: Partial<ReplicationConnectionOptions> = {};
  if (env.PGHOST) fromEnv.host = env.PGHOST;
  if (env.PGPORT) fromEnv.port = Number(env.PGPORT);
  if (env.PGUSER) fromEnv.user = env.PGUSER;
  if (env.PGPASSWORD) fromEnv.password = env.PGPASSWORD;
  if (env.PGDATABASE) fromEnv.database = env.PGDATABASE;
  if (env.PGSSLMODE) fromEnv.ssl = env.PGSSLMODE as SslMode;
  const fromString = opts.dbname ? parseConnectionString(opts.dbname) : {};
  const merged: Partial<ReplicationConnectionOptions> = { ...fromEnv, ...fromString };
  if (opts.host) merged.host = opts.host;
  if (opts.port) merged.port = Number(opts.port);
  if (opts.username) merged.user = opts.username;
  merged.host ??= 'localhost';
  merged.user ??= env.USER ?? 'postgres';
  if (
    merged.port !== undefined &&
    (!Number.isInteger(merged.port) || merged.port < 1 || merged.port > 65535)
  ) {
    throw new ConfigError('CONFIG_INVALID_CONNINFO', 'invalid port');
  }
  return merged as ReplicationConnectionOptions;
}
