/**
 * `pgark restore --repo … -D <empty dir> [--backup <id>|latest]`: unpacks a backup into an empty
 * directory (restoreBackup): archives, the WAL the backup carries into pg_wal, backup_manifest.
 * `-T/--tablespace-mapping OLD=NEW` relocates a tablespace (OLD: its original directory or OID),
 * as pg_basebackup does. As root, `--owner <user>` gives the files to the server's OS user.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError, restoreBackup } from '../../index';
import { formatBytes, printResult, runAction } from '../output';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';

interface RestoreCliOptions extends RepoOptions {
  pgdata?: string;
  backup: string;
  tablespaceMapping: string[];
  owner?: string;
  json?: boolean;
}

/** A user name or uid[:gid] → uid/gid (from /etc/passwd for a name). */
export function resolveOwner(spec: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (m) return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === spec && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new ConfigError('CONFIG_INVALID_OPTION', `unknown os user ${JSON.stringify(spec)}`);
}

export function registerRestore(program: Command): void {
  const cmd = program
    .command('restore')
    .description('restore a base backup into an empty directory')
    .helpOption('-?, --help', 'show help')
    .option('-D, --pgdata <dir>', 'target data directory (must be empty or missing)')
    .option('--backup <id>', 'backup id, or latest', 'latest')
    .option('-T, --tablespace-mapping <old=new>', 'relocate a tablespace (old: its directory or OID)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--owner <user>', 'as root: OS user (or uid:gid) that will own the restored files')
    .option('--json', 'print the result as JSON');
  addRepoOptions(cmd);
  cmd.action(async (opts: RestoreCliOptions) => {
    await runAction(opts, async () => {
      const targetDir = opts.pgdata ?? process.env.PGDATA;
      if (!targetDir) throw new ConfigError('CONFIG_INVALID_OPTION', 'no target directory', { hint: 'pass -D <dir> or set PGDATA' });
      const mapping: Record<string, string> = {};
      for (const m of opts.tablespaceMapping) {
        const i = m.indexOf('=');
        if (i <= 0 || i === m.length - 1) throw new ConfigError('CONFIG_INVALID_OPTION', `invalid tablespace mapping ${JSON.stringify(m)}`, { hint: 'use OLDDIR=NEWDIR or OID=NEWDIR' });
        mapping[m.substring(0, i)] = m.substring(i + 1);
      }
      const storage = openRepoStorage(opts);
      try {
        const r = await restoreBackup({
          storage,
          stanza: opts.stanza,
          backupId: opts.backup,
          targetDir,
          tablespaceMapping: mapping,
          ...(opts.owner ? { owner: resolveOwner(opts.owner) } : {}),
        });
        printResult(
          opts,
          [`backup ${r.backupId} restored into ${r.targetDir} (${formatBytes(r.bytes)} read)`, ...r.tablespaces.map((t) => `tablespace ${t.oid} in ${t.location}`)],
          { backupId: r.backupId, targetDir: r.targetDir, tablespaces: r.tablespaces, bytes: r.bytes, endLsn: r.entry.endLsn },
        );
      } finally {
        await storage.close().catch(() => undefined);
      }
    });
  });
}
