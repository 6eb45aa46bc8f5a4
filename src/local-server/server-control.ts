/**
 * Runs a local PostgreSQL server through its own tools: initdb, pg_ctl start/stop/promote.
 * Shared by restore, table restore, drills and the test harness. Every command runs as the
 * unprivileged server user (see os-user.ts). Failures become RestoreError('RESTORE_SERVER_FAILED')
 * carrying the tail of the server log; command lines are never put into messages (settings may hold
 * values the caller considers private).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { RestoreError } from '../errors';
import type { ServerBinaries } from './find-binaries';
import { spawnIdentity, type ServerUser } from './os-user';

export type StopMode = 'fast' | 'immediate' | 'smart';

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Environment for the server tools: the caller's, minus PG* variables that would redirect them (PGDATA, PGPORT…). */
export function serverEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C';
  return env;
}

/** Runs one server tool as `user` and collects its output (bounded: only the last 64 kB of each stream are kept). */
export function runAsUser(
  file: string,
  args: string[],
  user: ServerUser,
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  const LIMIT = 64 * 1024;
  return new Promise((resolvePromise, reject) => {
    // cwd '/': the server user may not be allowed to read the caller's working directory, and
    // initdb/pg_ctl complain when they cannot identify it.
    const child = spawn(file, args, {
      cwd: '/',
      env: options.env ?? serverEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...spawnIdentity(user),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout = (stdout + d).slice(-LIMIT);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-LIMIT);
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(
        new RestoreError('RESTORE_SERVER_FAILED', `could not run ${file}: ${err.message}`, {
          cause: err,
          hint: 'check that the binary exists and that the server user may execute it',
        }),
      );
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/** The last `maxBytes` of a log file as text ('' when it does not exist). */
export function readLogTail(logFile: string, maxBytes = 4096): string {
  if (!existsSync(logFile)) return '';
  const fd = openSync(logFile, 'r');
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const text = buf.toString('utf8');
    // Drop a partial first line.
    return len < size ? text.slice(text.indexOf('\n') + 1) : text;
  } finally {
    closeSync(fd);
  }
}

function failure(what: string, r: CommandResult | undefined, logFile?: string): RestoreError {
  const parts = [what];
  if (r) parts.push(`exit ${r.code ?? r.signal}`);
  const out = r ? `${r.stderr}${r.stdout}`.trim().split('\n').slice(-10).join('\n') : '';
  if (out) parts.push(`output:\n${out}`);
  const tail = logFile ? readLogTail(logFile).trim() : '';
  if (tail) parts.push(`server log (${logFile}) ends with:\n${tail}`);
  return new RestoreError('RESTORE_SERVER_FAILED', parts.join('; '), {
    hint: logFile ? `read ${logFile}` : undefined,
  });
}

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/** Quotes one argument for the POSIX shell pg_ctl starts postgres through (src/bin/pg_ctl/pg_ctl.c, start_postmaster). */
export function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * Builds pg_ctl's `-o` value: `-c 'name=value' …`. pg_ctl hands this string to /bin/sh, so each
 * pair is shell-quoted; postgres then splits `name=value` at the first '='.
 *
 * @throws RestoreError `RESTORE_SERVER_FAILED` for a setting name that is not a GUC identifier, or a value with a NUL or newline.
 */
export function buildServerOptions(settings: Record<string, string | number | boolean>): string {
  const parts: string[] = [];
  for (const [name, raw] of Object.entries(settings)) {
    const value = typeof raw === 'boolean' ? (raw ? 'on' : 'off') : String(raw);
    if (!SETTING_NAME.test(name)) {
      throw new RestoreError('RESTORE_SERVER_FAILED', `invalid server setting name ${JSON.stringify(name)}`);
    }
    if (/[\0\n\r]/.test(value)) {
      throw new RestoreError(
        'RESTORE_SERVER_FAILED',
        `server setting ${name} has a value with a control character`,
      );
    }
    parts.push(`-c ${shellQuote(`${name}=${value}`)}`);
  }
  return parts.join(' ');
}

export interface InitClusterOptions {
  binaries: ServerBinaries;
  user: ServerUser;
  /** An empty or missing directory owned by (or creatable by) `user`. */
  dataDir: string;
  /** @default 'postgres' */
  superuser?: string;
  /** A file readable by `user` whose first line is the superuser's password (initdb --pwfile). */
  passwordFile?: string;
  /** initdb --auth (both local and host). @default initdb's own default (trust) */
  authMethod?: string;
  /** @default 'C' */
  locale?: string;
  /** @default 'UTF8' */
  encoding?: string;
  /** initdb --no-sync: faster, for throw-away clusters. @default false */
  noSync?: boolean;
  /** initdb --data-checksums. @default initdb's default (on from 18) */
  dataChecksums?: boolean;
  /** More initdb arguments. */
  extraArgs?: string[];
  /** @default 120000 */
  timeoutMs?: number;
}

/** Builds the initdb argument list (pure). */
export function initdbArgs(
  o: Omit<InitClusterOptions, 'binaries' | 'user' | 'timeoutMs'>,
  major: number,
): string[] {
  const args = [
    '-D',
    o.dataDir,
    '-U',
    o.superuser ?? 'postgres',
    '-E',
    o.encoding ?? 'UTF8',
    `--locale=${o.locale ?? 'C'}`,
  ];
  if (o.noSync) args.push('--no-sync');
  if (o.passwordFile) args.push(`--pwfile=${o.passwordFile}`);
  if (o.authMethod) args.push(`--auth=${o.authMethod}`);
  if (o.dataChecksums === true) args.push('--data-checksums');
  // --no-data-checksums exists from PostgreSQL 18 (initdb.c); earlier majors are off by default.
  if (o.dataChecksums === false && major >= 18) args.push('--no-data-checksums');
  if (o.extraArgs) args.push(...o.extraArgs);
  return args;
}

/** initdb: creates a new cluster in `dataDir`. @throws RestoreError `RESTORE_SERVER_FAILED` */
export async function initCluster(o: InitClusterOptions): Promise<void> {
  const args = initdbArgs(o, o.binaries.major);
  const r = await runAsUser(o.binaries.initdb, args, o.user, { timeoutMs: o.timeoutMs ?? 120_000 });
  if (r.code !== 0) throw failure(`initdb of ${o.dataDir} failed`, r);
}

export interface StartServerOptions {
  binaries: ServerBinaries;
  user: ServerUser;
  dataDir: string;
  port: number;
  /** Directory for the Unix socket; never the data directory (base backups would meet the socket file). */
  socketDir: string;
  /** Server log (pg_ctl -l); the server user must be able to create or append to it. */
  logFile: string;
  /** More `-c name=value` settings. */
  settings?: Record<string, string | number | boolean>;
  /** listen_addresses. @default '127.0.0.1' */
  listenAddresses?: string;
  /** How long pg_ctl -w waits for the server to accept connections. @default 120000 */
  timeoutMs?: number;
  /**
   * More environment variables for the server, on top of serverEnv() (the server passes them on to
   * archive_command/restore_command, e.g. S3 credentials that must not be written into postgresql.conf).
   */
  env?: Record<string, string>;
}

/**
 * pg_ctl -w start. Returns once the server accepts connections (for a standby or a recovering server:
 * once it has reached a consistent state or, without hot standby, once pg_ctl sees it running).
 *
 * @throws RestoreError `RESTORE_SERVER_FAILED` with the end of the server log.
 */
export async function startServer(o: StartServerOptions): Promise<void> {
  if (o.socketDir === o.dataDir) {
    throw new RestoreError('RESTORE_SERVER_FAILED', 'the socket directory must not be the data directory');
  }
  const settings = {
    port: String(o.port),
    listen_addresses: o.listenAddresses ?? '127.0.0.1',
    unix_socket_directories: o.socketDir,
    ...o.settings,
  };
  const timeoutMs = o.timeoutMs ?? 120_000;
  const args = ['-D', o.dataDir, '-l', o.logFile, '-w', '-t', String(Math.ceil(timeoutMs / 1000)), '-s'];
  args.push('-o', buildServerOptions(settings), 'start');
  const env = o.env ? { ...serverEnv(), ...o.env } : undefined;
  const r = await runAsUser(o.binaries.pgCtl, args, o.user, { timeoutMs: timeoutMs + 10_000, env });
  if (r.code !== 0) throw failure(`server in ${o.dataDir} failed to start`, r, o.logFile);
}

export interface StopServerOptions {
  binaries: ServerBinaries;
  user: ServerUser;
  dataDir: string;
  /** @default 'fast' */
  mode?: StopMode;
  logFile?: string;
  /** @default 120000 */
  timeoutMs?: number;
}

/** pg_ctl -w stop; a no-op when no server runs in `dataDir`. @throws RestoreError `RESTORE_SERVER_FAILED` */
export async function stopServer(o: StopServerOptions): Promise<void> {
  if (!isServerRunning(o.dataDir)) return;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const args = [
    '-D',
    o.dataDir,
    '-m',
    o.mode ?? 'fast',
    '-w',
    '-t',
    String(Math.ceil(timeoutMs / 1000)),
    '-s',
    'stop',
  ];
  const r = await runAsUser(o.binaries.pgCtl, args, o.user, { timeoutMs: timeoutMs + 10_000 });
  if (r.code !== 0 && isServerRunning(o.dataDir))
    throw failure(`server in ${o.dataDir} failed to stop`, r, o.logFile);
}

/** pg_ctl promote (-w: waits until the server has left recovery). @throws RestoreError `RESTORE_SERVER_FAILED` */
export async function promote(o: {
  binaries: ServerBinaries;
  user: ServerUser;
  dataDir: string;
  logFile?: string;
  wait?: boolean;
  timeoutMs?: number;
}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  const args = [
    '-D',
    o.dataDir,
    o.wait === false ? '-W' : '-w',
    '-t',
    String(Math.ceil(timeoutMs / 1000)),
    '-s',
    'promote',
  ];
  const r = await runAsUser(o.binaries.pgCtl, args, o.user, { timeoutMs: timeoutMs + 10_000 });
  if (r.code !== 0) throw failure(`promotion of the server in ${o.dataDir} failed`, r, o.logFile);
}

/** The postmaster's pid from `postmaster.pid`, or undefined when the file is missing or unreadable. */
export function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const first = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '';
    const pid = Number(first.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when `postmaster.pid` names a live process. (A stale file left by a crash names a dead pid;
 * the pid may in rare cases have been reused by another process, as pg_ctl itself accepts.)
 */
export function isServerRunning(dataDir: string): boolean {
  const pid = readPostmasterPid(dataDir);
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
