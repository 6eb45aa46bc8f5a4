/**
 * Recovery settings of a restored data directory, as text (pure: no I/O).
 *
 * PostgreSQL 12 removed recovery.conf: a signal file in the data directory says what kind of
 * recovery to run (`recovery.signal`: archive recovery / PITR, promoting at the end; `standby.signal`:
 * a standby), and the settings are ordinary GUCs, which we append to `postgresql.auto.conf`
 * (later lines win over earlier ones in the same file: guc-file.l ProcessConfigFileInternal keeps
 * the last value). See protocol notes §7.2 and the PostgreSQL docs "Archive Recovery",
 * "Recovery Target". pgark supports servers 14-18, so only the 12+ form is produced.
 *
 * Values are quoted as ALTER SYSTEM writes them (guc.c write_auto_conf_file → escape_single_quotes_ascii:
 * `'` and `\` doubled, inside single quotes); a value with a newline or NUL is refused, since the
 * configuration file has no way to carry one.
 */
import { ConfigError } from '../errors';
import { formatLsn, parseLsn, type Lsn } from '../lsn';

/** What to recover to. Without a target, recovery replays all WAL the archive has. */
export type RecoveryTarget =
  /** recovery_target_time: a Date, or a timestamp with time zone as PostgreSQL reads it. */
  | { time: Date | string }
  /** recovery_target_lsn. */
  | { lsn: Lsn | string }
  /** recovery_target_xid: the transaction id (as pg_current_xact_id()::xid or txid_current() gives it). */
  | { xid: string | number | bigint }
  /** recovery_target_name: a restore point made with pg_create_restore_point(). */
  | { name: string }
  /** recovery_target = 'immediate': stop as soon as the backup is consistent. */
  | { immediate: true };

export type RecoveryTargetAction = 'promote' | 'pause' | 'shutdown';

/** recovery_target_timeline: `latest` (PostgreSQL's default), `current` (the backup's), or a number. */
export type RecoveryTimeline = 'latest' | 'current' | number;

export interface RecoveryOptions {
  target?: RecoveryTarget;
  /** recovery_target_inclusive: stop just after (true) or just before (false) the target. @default true */
  inclusive?: boolean;
  /** @default 'latest' */
  timeline?: RecoveryTimeline;
  /** recovery_target_action (only with a target). @default 'promote' here (PostgreSQL's own default is 'pause') */
  action?: RecoveryTargetAction;
}

export interface StandbySettings {
  /** primary_conninfo: how the standby reaches the primary (libpq conninfo). */
  primaryConninfo: string;
  /** primary_slot_name. */
  primarySlotName?: string;
}

export interface RecoveryConfigInput {
  /** The server's major version (14-18). */
  major: number;
  /** restore_command (already a complete shell command line). */
  restoreCommand?: string;
  recovery?: RecoveryOptions;
  standby?: StandbySettings;
  /** More settings to append (e.g. archive_mode = off for a scratch cluster). */
  extra?: Record<string, string | number | boolean>;
}

export interface RecoveryConfig {
  /** The signal file to create in the data directory. */
  signalFile: 'recovery.signal' | 'standby.signal';
  /** Setting name → raw value (unquoted), in the order written. */
  settings: [string, string][];
  /** The block to append to postgresql.auto.conf. */
  autoConfText: string;
}

export const RECOVERY_DEFAULTS = {
  inclusive: true,
  timeline: 'latest' as RecoveryTimeline,
  action: 'promote' as RecoveryTargetAction,
} as const;

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/** Quotes a value for postgresql.conf / postgresql.auto.conf as ALTER SYSTEM does. @throws ConfigError CONFIG_INVALID_OPTION */
export function quoteConfigValue(value: string): string {
  if (/[\0\n\r]/.test(value)) {
    throw new ConfigError('CONFIG_INVALID_OPTION', 'a configuration value may not contain a newline or NUL');
  }
  return `'${value.replace(/['\\]/g, (c) => c + c)}'`;
}

/** Parses the value quoteConfigValue wrote (for tests and for reading back). */
export function unquoteConfigValue(quoted: string): string {
  const m = /^'((?:[^'\\]|''|\\\\)*)'$/.exec(quoted);
  if (!m) throw new ConfigError('CONFIG_INVALID_OPTION', 'not a quoted configuration value');
  return m[1]!.replace(/''/g, "'").replace(/\\\\/g, '\\');
}

/** The target's kind as a word (time, lsn, xid, name, immediate). */
export function recoveryTargetKind(t: RecoveryTarget): 'time' | 'lsn' | 'xid' | 'name' | 'immediate' {
  if ('time' in t) return 'time';
  if ('lsn' in t) return 'lsn';
  if ('xid' in t) return 'xid';
  if ('name' in t) return 'name';
  return 'immediate';
}

/** A Date as PostgreSQL reads it unambiguously: ISO 8601 with milliseconds and `+00`. */
export function formatTargetTime(d: Date): string {
  if (Number.isNaN(d.getTime()))
    throw new ConfigError('CONFIG_INVALID_OPTION', 'invalid recovery target time');
  return d.toISOString().replace('T', ' ').replace('Z', '+00');
}

/** Parses a target time given as text: a Date must be able to read it (so that the window check can use it). */
export function parseTargetTime(t: Date | string): Date {
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `invalid recovery target time ${JSON.stringify(String(t))}`,
      {
        hint: 'use an ISO 8601 timestamp with a time zone, e.g. 2026-01-31T12:00:00Z',
      },
    );
  }
  return d;
}

/** Checks the target and returns its setting (name, raw value). @throws ConfigError CONFIG_INVALID_OPTION / CONFIG_INVALID_LSN */
export function targetSetting(t: RecoveryTarget): [string, string] {
  switch (recoveryTargetKind(t)) {
    case 'time':
      return ['recovery_target_time', formatTargetTime(parseTargetTime((t as { time: Date | string }).time))];
    case 'lsn': {
      const v = (t as { lsn: Lsn | string }).lsn;
      return ['recovery_target_lsn', formatLsn(typeof v === 'bigint' ? v : parseLsn(v))];
    }
    case 'xid': {
      const v = String((t as { xid: string | number | bigint }).xid);
      // recovery_target_xid takes a 32-bit xid, or an epoch-qualified 64-bit one (xid8) from 13 on.
      if (!/^[0-9]{1,20}$/.test(v) || BigInt(v) < 3n) {
        throw new ConfigError('CONFIG_INVALID_OPTION', `invalid recovery target xid ${JSON.stringify(v)}`);
      }
      return ['recovery_target_xid', v];
    }
    case 'name': {
      const v = (t as { name: string }).name;
      // pg_create_restore_point refuses names of MAXFNAMELEN (64) bytes or more (xlogfuncs.c).
      if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v) >= 64) {
        throw new ConfigError('CONFIG_INVALID_OPTION', `invalid restore point name ${JSON.stringify(v)}`, {
          hint: 'a restore point name has 1 to 63 bytes',
        });
      }
      return ['recovery_target_name', v];
    }
    default:
      return ['recovery_target', 'immediate'];
  }
}

function timelineValue(tl: RecoveryTimeline): string {
  if (tl === 'latest' || tl === 'current') return tl;
  if (!Number.isInteger(tl) || tl < 1 || tl > 0xffffffff) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid recovery target timeline ${String(tl)}`);
  }
  return String(tl);
}

/**
 * Builds the signal file name and the settings block for postgresql.auto.conf.
 *
 * @throws ConfigError CONFIG_INVALID_OPTION for an unsupported major, an invalid target, a value
 *   with a newline, or a standby combined with a recovery target.
 */
export function buildRecoveryConfig(input: RecoveryConfigInput): RecoveryConfig {
  if (!Number.isInteger(input.major) || input.major < 12) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `recovery settings for postgresql ${input.major} are not supported (12 or later)`,
    );
  }
  const settings: [string, string][] = [];
  if (input.restoreCommand !== undefined) settings.push(['restore_command', input.restoreCommand]);
  const r = input.recovery ?? {};
  if (input.standby) {
    if (r.target) {
      throw new ConfigError(
        'CONFIG_INVALID_OPTION',
        'a standby follows its primary: it takes no recovery target',
      );
    }
    settings.push(['primary_conninfo', input.standby.primaryConninfo]);
    if (input.standby.primarySlotName !== undefined)
      settings.push(['primary_slot_name', input.standby.primarySlotName]);
  }
  if (r.target) {
    settings.push(targetSetting(r.target));
    // recovery_target_inclusive has no meaning for 'immediate' and 'name' (xlogrecovery.c recoveryStopsBefore/After).
    const kind = recoveryTargetKind(r.target);
    if (kind === 'time' || kind === 'lsn' || kind === 'xid') {
      settings.push([
        'recovery_target_inclusive',
        (r.inclusive ?? RECOVERY_DEFAULTS.inclusive) ? 'on' : 'off',
      ]);
    }
    settings.push(['recovery_target_action', r.action ?? RECOVERY_DEFAULTS.action]);
  } else if (r.action !== undefined && r.action !== 'promote') {
    throw new ConfigError('CONFIG_INVALID_OPTION', 'recovery_target_action needs a recovery target');
  }
  settings.push(['recovery_target_timeline', timelineValue(r.timeline ?? RECOVERY_DEFAULTS.timeline)]);
  for (const [k, v] of Object.entries(input.extra ?? {})) {
    settings.push([k, typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v)]);
  }
  const lines = ['', '# recovery settings written by pgark restore'];
  for (const [k, v] of settings) {
    if (!SETTING_NAME.test(k))
      throw new ConfigError('CONFIG_INVALID_OPTION', `invalid setting name ${JSON.stringify(k)}`);
    lines.push(`${k} = ${quoteConfigValue(v)}`);
  }
  return {
    signalFile: input.standby ? 'standby.signal' : 'recovery.signal',
    settings,
    autoConfText: `${lines.join('\n')}\n`,
  };
}

/** Quotes one word for the POSIX shell that runs restore_command (PostgreSQL runs it through system(3)). */
export function shellWord(arg: string): string {
  return /^[A-Za-z0-9_./=:@%+,-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export interface ArchiveFetchCommandInput {
  /** The node executable. */
  nodePath: string;
  /** pgark's CLI script (dist/cli.js), readable by the server's OS user. */
  cliPath: string;
  /** `--repo`: the repository location (a directory or s3://bucket/prefix), no secrets. */
  repo: string;
  stanza: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  /** `--prefetch`. */
  prefetch?: number;
  /** `--fatal-errors`: a storage error stops the server instead of ending recovery early. */
  fatalErrors?: boolean;
  /**
   * A file (readable only by the server's user) that sets S3 credentials as shell variable
   * assignments; sourced before the command so that no secret is written into the settings.
   */
  envFile?: string;
}

/**
 * The restore_command line that runs `pgark archive-fetch %f %p` with the repository's settings.
 * `%f`/`%p` are left for PostgreSQL to replace. No credential is ever part of it.
 */
export function archiveFetchCommand(i: ArchiveFetchCommandInput): string {
  if (/^s3:\/\/[^/]*:[^/]*@/.test(i.repo)) {
    throw new ConfigError(
      'CONFIG_INVALID_LOCATION',
      'a repository location for restore_command must not carry credentials',
    );
  }
  // PostgreSQL replaces %f, %p, %r and %% in restore_command (shell_restore.c → replace_percent_placeholders):
  // a literal % in a path must be doubled.
  const w = (s: string): string => shellWord(s).replaceAll('%', '%%');
  const words = [
    w(i.nodePath),
    w(i.cliPath),
    'archive-fetch',
    '%f',
    '%p',
    '--repo',
    w(i.repo),
    '--stanza',
    w(i.stanza),
  ];
  if (i.s3Endpoint) words.push('--s3-endpoint', w(i.s3Endpoint));
  if (i.s3Region) words.push('--s3-region', w(i.s3Region));
  if (i.s3PathStyle) words.push('--s3-path-style');
  if (i.prefetch !== undefined) words.push('--prefetch', String(Math.max(0, Math.floor(i.prefetch))));
  if (i.fatalErrors) words.push('--fatal-errors');
  const cmd = words.join(' ');
  // `set -a` exports what the file assigns, so that the AWS SDK's default chain finds it.
  return i.envFile ? `set -a && . ${w(i.envFile)} && set +a && exec ${cmd}` : cmd;
}
