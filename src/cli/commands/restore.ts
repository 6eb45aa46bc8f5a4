/**
 * `pgark restore --repo … -D <empty dir> [--backup <id>|latest] [recovery options]`: unpacks a
 * backup into an empty directory (restoreBackup) and writes the recovery settings for the server's
 * version, with `restore_command` running this CLI's `archive-fetch` with the same repository
 * options (S3 credentials stay in the server's environment, never in the settings).
 *
 * Recovery: `--target-time|--target-lsn|--target-xid|--target-name|--target-immediate`,
 * `--target-exclusive`, `--target-timeline latest|current|N`, `--target-action promote|pause|shutdown`.
 * Standby: `--standby --primary-conninfo '<conninfo without password>' [--slot <name> [--create-slot]]`.
 * `-T/--tablespace-map OLD=NEW` relocates a tablespace (OLD: its original directory or OID).
 * As root, `--owner <user>` gives the files to the server's OS user. `--clean` empties a non-empty target.
 * `--no-archive` writes no restore_command (the backup's own WAL only).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import {
  ConfigError,
  parseConnectionString,
  restoreBackup,
  type RecoveryOptions,
  type RecoveryTarget,
  type ReplicationConnectionOptions,
  type RestoreBackupOptions,
} from '../../index';
import { formatBytes, printResult, runAction } from '../output';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';

export interface RecoveryCliOptions {
  targetTime?: string;
  targetLsn?: string;
  targetXid?: string;
  targetName?: string;
  targetImmediate?: boolean;
  targetExclusive?: boolean;
  targetTimeline?: string;
  targetAction?: 'promote' | 'pause' | 'shutdown';
}

interface RestoreCliOptions extends RepoOptions, RecoveryCliOptions {
  pgdata?: string;
  backup?: string;
  tablespaceMap: string[];
  owner?: string;
  clean?: boolean;
  archive: boolean;
  standby?: boolean;
  primaryConninfo?: string;
  slot?: string;
  createSlot?: boolean;
  /** False with --no-check-target. */
  checkTarget: boolean;
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

/** Adds the recovery target options shared by restore and restore-table. */
export function addRecoveryOptions(cmd: Command, withAction = true): Command {
  cmd
    .option('--target-time <timestamp>', 'recovery_target_time (ISO 8601 with a time zone)')
    .option('--target-lsn <lsn>', 'recovery_target_lsn (X/X)')
    .option('--target-xid <xid>', 'recovery_target_xid')
    .option('--target-name <name>', 'recovery_target_name (a restore point from pg_create_restore_point)')
    .option('--target-immediate', "recovery_target = 'immediate': stop when the backup is consistent")
    .option('--target-exclusive', 'stop just before the target (recovery_target_inclusive = off)')
    .option('--target-timeline <tli>', 'recovery_target_timeline: latest, current or a number');
  if (withAction)
    cmd.addOption(
      new Option('--target-action <action>', 'recovery_target_action').choices([
        'promote',
        'pause',
        'shutdown',
      ]),
    );
  return cmd;
}

/** The RecoveryOptions of the recovery CLI options (undefined when none is given). */
export function recoveryFromCli(o: RecoveryCliOptions): RecoveryOptions | undefined {
  const targets: RecoveryTarget[] = [];
  if (o.targetTime !== undefined) targets.push({ time: o.targetTime });
  if (o.targetLsn !== undefined) targets.push({ lsn: o.targetLsn });
  if (o.targetXid !== undefined) targets.push({ xid: o.targetXid });
  if (o.targetName !== undefined) targets.push({ name: o.targetName });
  if (o.targetImmediate) targets.push({ immediate: true });
  if (targets.length > 1) throw new ConfigError('CONFIG_INVALID_OPTION', 'give at most one recovery target');
  const r: RecoveryOptions = {};
  if (targets[0]) r.target = targets[0];
  if (o.targetExclusive) r.inclusive = false;
  if (o.targetTimeline !== undefined) {
    const t = o.targetTimeline;
    if (t === 'latest' || t === 'current') r.timeline = t;
    else if (/^\d+$/.test(t)) r.timeline = Number(t);
    else
      throw new ConfigError('CONFIG_INVALID_OPTION', `invalid --target-timeline ${JSON.stringify(t)}`, {
        hint: 'latest, current or a number',
      });
  }
  if (o.targetAction) r.action = o.targetAction;
  return Object.keys(r).length > 0 ? r : undefined;
}

/** The restore_command's archive-fetch spec: this very CLI, with the same repository options. */
export function archiveSpecFromCli(opts: RepoOptions): NonNullable<RestoreBackupOptions['archive']> {
  if (!opts.repo)
    throw new ConfigError('CONFIG_INVALID_LOCATION', 'no repository given', {
      hint: 'pass --repo or set PGARK_REPO',
    });
  const spec: NonNullable<RestoreBackupOptions['archive']> = {
    repo: opts.repo,
    cliPath: process.argv[1] ?? fileURLToPath(import.meta.url),
  };
  if (opts.s3Endpoint) spec.s3Endpoint = opts.s3Endpoint;
  if (opts.s3Region) spec.s3Region = opts.s3Region;
  if (opts.s3PathStyle) spec.s3PathStyle = true;
  return spec;
}

export function parseTablespaceMap(list: string[]): Record<string, string> {
  const mapping: Record<string, string> = {};
  for (const m of list) {
    const i = m.indexOf('=');
    if (i <= 0 || i === m.length - 1)
      throw new ConfigError('CONFIG_INVALID_OPTION', `invalid tablespace mapping ${JSON.stringify(m)}`, {
        hint: 'use OLDDIR=NEWDIR or OID=NEWDIR',
      });
    mapping[m.substring(0, i)] = m.substring(i + 1);
  }
  return mapping;
}

export function registerRestore(program: Command): void {
  const collect = (v: string, acc: string[]) => [...acc, v];
  const cmd = program
    .command('restore')
    .description('restore a base backup into an empty directory, with point-in-time recovery or as a standby')
    .helpOption('-?, --help', 'show help')
    .option('-D, --pgdata <dir>', 'target data directory (must be empty or missing)')
    .option('--backup <id>', 'backup id, or latest (default: the newest that can reach the target)')
    .option(
      '-T, --tablespace-map <old=new>',
      'relocate a tablespace (old: its directory or OID)',
      collect,
      [] as string[],
    )
    .option('--tablespace-mapping <old=new>', 'same as --tablespace-map', collect, [] as string[])
    .option('--owner <user>', 'as root: OS user (or uid:gid) that will own the restored files')
    .option('--clean', 'empty a non-empty target directory first (never one of a running server)')
    .option('--no-archive', 'write no restore_command (recover from the WAL the backup carries only)')
    .option('--standby', 'set the copy up as a standby (standby.signal)')
    .option('--primary-conninfo <conninfo>', 'standby: primary_conninfo (no password: use passfile=…)')
    .option('--slot <name>', 'standby: primary_slot_name')
    .option(
      '--create-slot',
      'standby: create the slot on the primary (replication connection from --primary-conninfo, password from PGPASSWORD)',
    )
    .option(
      '--no-check-target',
      'do not look a --target-name/--target-xid up in the archived wal before restoring (for very large archives)',
    )
    .option('--json', 'print the result as JSON');
  addRecoveryOptions(cmd);
  addRepoOptions(cmd);
  cmd.action(async (opts: RestoreCliOptions & { tablespaceMapping: string[] }) => {
    await runAction(opts, async () => {
      const targetDir = opts.pgdata ?? process.env.PGDATA;
      if (!targetDir)
        throw new ConfigError('CONFIG_INVALID_OPTION', 'no target directory', {
          hint: 'pass -D <dir> or set PGDATA',
        });
      const mapping = parseTablespaceMap([...opts.tablespaceMap, ...opts.tablespaceMapping]);
      const recovery = recoveryFromCli(opts);
      let standby: RestoreBackupOptions['standby'];
      if (opts.standby) {
        if (!opts.primaryConninfo)
          throw new ConfigError('CONFIG_INVALID_OPTION', '--standby needs --primary-conninfo');
        standby = { primaryConninfo: opts.primaryConninfo, ...(opts.slot ? { slotName: opts.slot } : {}) };
        if (opts.createSlot) {
          if (!opts.slot) throw new ConfigError('CONFIG_INVALID_OPTION', '--create-slot needs --slot');
          const c = parseConnectionString(opts.primaryConninfo);
          const conn: ReplicationConnectionOptions = {
            host: c.host ?? 'localhost',
            user: c.user ?? process.env.USER ?? 'postgres',
            ...c,
          } as ReplicationConnectionOptions;
          if (process.env.PGPASSWORD) conn.password = process.env.PGPASSWORD;
          standby.createSlot = conn;
        }
      } else if (opts.primaryConninfo || opts.slot) {
        throw new ConfigError('CONFIG_INVALID_OPTION', '--primary-conninfo and --slot need --standby');
      }
      const storage = openRepoStorage(opts);
      try {
        const r = await restoreBackup({
          storage,
          stanza: opts.stanza,
          ...(opts.backup !== undefined ? { backupId: opts.backup } : {}),
          targetDir,
          tablespaceMapping: mapping,
          ...(opts.clean ? { clean: true } : {}),
          ...(opts.archive ? { archive: archiveSpecFromCli(opts) } : {}),
          ...(recovery ? { recovery } : {}),
          ...(standby ? { standby } : {}),
          ...(opts.owner ? { owner: resolveOwner(opts.owner) } : {}),
          ...(opts.checkTarget === false ? { checkTargetExists: false } : {}),
        });
        printResult(
          opts,
          [
            `backup ${r.backupId} restored into ${r.targetDir} (${formatBytes(r.bytes)} read)`,
            ...r.tablespaces.map((t) => `tablespace ${t.oid} in ${t.location}`),
            ...(r.signalFile
              ? [`${r.signalFile} written; settings: ${Object.keys(r.recoverySettings).join(', ')}`]
              : []),
          ],
          {
            backupId: r.backupId,
            targetDir: r.targetDir,
            tablespaces: r.tablespaces,
            bytes: r.bytes,
            endLsn: r.entry.endLsn,
            signalFile: r.signalFile ?? null,
            recoverySettings: r.recoverySettings,
            ...(r.plan ? { windowEnd: r.plan.windowEnd } : {}),
          },
        );
      } finally {
        await storage.close().catch(() => undefined);
      }
    });
  });
}
