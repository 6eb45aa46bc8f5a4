/**
 * `pgark archive-fetch <walName> <destPath> --repo … [--stanza main]`: PostgreSQL's restore_command
 * (`restore_command = 'pgark archive-fetch %f %p --repo /var/lib/pgark'`).
 *
 * Exit codes, chosen for how the startup process reads them (src/backend/access/transam/shell_restore.c,
 * ExecuteRecoveryCommand; src/common/wait_error.c, wait_result_is_any_signal):
 * - 0: the file is in place.
 * - 1: not in the archive. The normal answer at the end of the archive and for history files of
 *   timelines that do not exist: archive recovery ends there (a standby switches to streaming).
 * - 2: a real error (storage unreachable, damaged segment, bad options). PostgreSQL logs nothing
 *   for a non-zero exit below 126 and treats it like "not found" (it cannot tell the two apart, see
 *   the comment in shell_restore), so our own message on stderr is what lands in the server log.
 *   On a standby that means "retry later"; in archive recovery it means recovery stops at the last
 *   segment restored.
 * - with `--fatal-errors`, a real error exits 255 instead: any exit status above 125 (or death by a
 *   signal) makes the startup process FATAL, so the server stops rather than end recovery early on a
 *   transient storage failure. Use it for PITR where stopping short is worse than stopping.
 * On SIGTERM/SIGINT (a fast shutdown of the server) the fetch is aborted, its temporary file removed,
 * and the process ends by the same signal, which PostgreSQL expects (it then exits cleanly).
 *
 * S3 credentials come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in
 * the server's environment, a profile, instance metadata), never from the command line, which is
 * visible in postgresql.conf and the process list.
 */
import type { Command } from 'commander';
import { archiveFetch, isPgarkError, type ArchiveFetchResult } from '../../index';
import { printError, printResult } from '../output';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';
import { stderrLogger, withSignalAbort } from './archive-common';

/** restore_command exit statuses (see the module comment). */
export const FETCH_EXIT = {
  found: 0,
  notFound: 1,
  error: 2,
  /** Above 125: PostgreSQL's startup process treats it like death by a signal and stops (FATAL). */
  fatalError: 255,
} as const;

/** The exit status for a fetch outcome: a result, or the error it threw. */
export function fetchExitCode(
  outcome: { result: ArchiveFetchResult } | { error: unknown },
  fatalErrors = false,
): number {
  if ('result' in outcome) return outcome.result.found ? FETCH_EXIT.found : FETCH_EXIT.notFound;
  return fatalErrors ? FETCH_EXIT.fatalError : FETCH_EXIT.error;
}

interface FetchOptions extends RepoOptions {
  prefetch: string;
  spoolDir?: string;
  fatalErrors?: boolean;
  json?: boolean;
}

export function registerArchiveFetch(program: Command): void {
  const cmd = program
    .command('archive-fetch')
    .description(
      'restore_command: fetch one archived WAL file (%f) to %p; exit 0 found, 1 not in the archive, 2 error',
    )
    .argument('<walName>', 'the file PostgreSQL asks for (%f)')
    .argument('<destPath>', 'where to put it (%p)')
    .option('--prefetch <n>', 'segments to download ahead into the spool (0: off)', '8')
    .option('--spool-dir <dir>', 'where prefetched segments wait (default: .pgark-spool next to destPath)')
    .option('--fatal-errors', 'exit 255 on errors so that PostgreSQL stops instead of ending recovery early')
    .option('--json', 'print the result as JSON');
  addRepoOptions(cmd);
  cmd.action(async (walName: string, destPath: string, opts: FetchOptions) => {
    const prefetch = Number(opts.prefetch);
    const { signalled, signal, done } = withSignalAbort();
    let code: number;
    try {
      const storage = openRepoStorage(opts, stderrLogger);
      try {
        const result = await archiveFetch({
          storage,
          stanza: opts.stanza,
          walName,
          destPath,
          prefetch,
          spoolDir: opts.spoolDir,
          signal,
          logger: stderrLogger,
        });
        printResult(opts, [], result); // quiet on success: stdout goes to the server log
        if (!result.found) process.stderr.write(`pgark: ${walName} is not in the archive\n`);
        code = fetchExitCode({ result });
      } finally {
        await storage.close().catch(() => undefined);
      }
    } catch (error) {
      if (!(signalled() && isPgarkError(error) && error.code === 'ABORTED')) printError(opts, error);
      code = fetchExitCode({ error }, !!opts.fatalErrors);
    }
    done(code);
  });
}
