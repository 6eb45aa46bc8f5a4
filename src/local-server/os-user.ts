/**
 * The OS user a local PostgreSQL server runs as. PostgreSQL refuses to run as root
 * (src/backend/main/main.c, check_root), so when pgark runs as root it starts initdb, pg_ctl and
 * postgres as an unprivileged user, creating a dedicated system user `pgark` when none is configured.
 * When pgark is not root, the server simply runs as the current user.
 *
 * How the user is switched: child_process.spawn's `uid`/`gid` options, not `runuser`/`su`. spawn's
 * switch needs no external binary (runuser is util-linux, absent on macOS and minimal images), passes
 * arguments without a shell (no quoting of paths or settings), and libuv drops root's supplementary
 * groups (setgroups(0, NULL)) before setgid/setuid, so the child holds only the target user's ids.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, lchownSync, lstatSync, readdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { RestoreError } from '../errors';

export interface ServerUser {
  uid: number;
  gid: number;
  name: string;
}

export const DEFAULT_SERVER_USER = 'pgark';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Parses one `name:x:uid:gid:...` line of /etc/passwd (as printed by `getent passwd`). */
export function parsePasswdLine(line: string): ServerUser | undefined {
  const f = line.trim().split(':');
  if (f.length < 4 || !f[0]) return undefined;
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  return { name: f[0], uid, gid };
}

function lookupUser(name: string): ServerUser | undefined {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout) return undefined;
  return parsePasswdLine(r.stdout.split('\n')[0] ?? '');
}

const VALID_USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

export interface ResolveServerUserOptions {
  /** The OS user to run servers as when pgark runs as root. @default 'pgark' */
  name?: string;
  /** Create the user (useradd --system) when it does not exist. @default true */
  create?: boolean;
}

/**
 * Returns the user local servers run as: the current user when not root; otherwise `name`
 * (default `pgark`), created as a system user without home directory or login shell if missing.
 *
 * @throws RestoreError `RESTORE_SERVER_FAILED` when the user cannot be found or created.
 */
export function resolveServerUser(options: ResolveServerUserOptions = {}): ServerUser {
  if (!isRoot()) {
    const u = userInfo();
    return { uid: u.uid, gid: u.gid, name: u.username };
  }
  const name = options.name ?? DEFAULT_SERVER_USER;
  if (!VALID_USER_NAME.test(name) || name === 'root') {
    throw new RestoreError(
      'RESTORE_SERVER_FAILED',
      `invalid os user name for the server: ${JSON.stringify(name)}`,
      {
        hint: 'use an unprivileged user name such as pgark or postgres',
      },
    );
  }
  const existing = lookupUser(name);
  if (existing) return existing;
  if (options.create === false) {
    throw new RestoreError('RESTORE_SERVER_FAILED', `os user ${name} does not exist`, {
      hint: `create it (useradd --system ${name}) or let pgark create it`,
    });
  }
  const r = spawnSync(
    'useradd',
    [
      '--system',
      '--user-group',
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      name,
    ],
    { encoding: 'utf8' },
  );
  // Another process may have created it at the same moment (useradd exits 9): look again either way.
  const created = lookupUser(name);
  if (created) return created;
  throw new RestoreError(
    'RESTORE_SERVER_FAILED',
    `could not create os user ${name} to run postgresql (postgresql refuses to run as root): ${
      r.error ? r.error.message : (r.stderr ?? '').trim()
    }`,
    { hint: 'install the passwd package (useradd) or create an unprivileged user and configure it' },
  );
}

/** spawn options that make a child run as `user` (empty when no switch is needed). */
export function spawnIdentity(user: ServerUser): { uid?: number; gid?: number } {
  if (!isRoot() || user.uid === 0) return {};
  return { uid: user.uid, gid: user.gid };
}

/**
 * Gives `path` and everything under it to `user`. Only for directories pgark itself created
 * (data, log and socket directories); symlinks are re-owned, not followed.
 */
export function chownTree(path: string, user: ServerUser): void {
  if (!isRoot()) return;
  const st = lstatSync(path);
  if (st.isSymbolicLink()) {
    lchownSync(path, user.uid, user.gid);
    return;
  }
  chownSync(path, user.uid, user.gid);
  if (st.isDirectory()) {
    for (const entry of readdirSync(path)) chownTree(join(path, entry), user);
  }
}
