/**
 * `pgark archive-push <path> --repo … [--stanza main]`: PostgreSQL's archive_command
 * (`archive_command = 'pgark archive-push %p --repo /var/lib/pgark'`).
 *
 * Exit codes: 0 only once the file is durable in the repository (PostgreSQL then deletes or recycles
 * it: pgarch.c, pgarch_archiveXlog); 1 on any failure, including a file that exists in the repository
 * with different content. The archiver retries a non-zero exit (three times, then again after a
 * pause) and keeps the file; an exit status above 125 would instead make the archiver process
 * FATAL (pgarch.c, via wait_result_is_any_signal), so errors stay at 1. Usage errors exit 2.
 * A repeated push of an identical file exits 0 (PostgreSQL re-runs the command after a crash).
 *
 * S3 credentials come from the AWS SDK's default chain (the server's environment), never from the
 * command line.
 */
import type { Command } from 'commander';
import { archivePush, isPgarkError } from '../../index';
import { printError, printResult } from '../output';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';
import { stderrLogger, withSignalAbort } from './archive-common';

export const PUSH_EXIT = { archived: 0, failed: 1 } as const;

interface PushOptions extends RepoOptions {
  systemIdentifier?: string;
  json?: boolean;
}

export function registerArchivePush(program: Command): void {
  const cmd = program
    .command('archive-push')
    .description('archive_command: store one WAL file (%p) in the repository; exit 0 only when it is durable')
    .argument('<path>', 'the file to archive (%p)')
    .option(
      '--system-identifier <id>',
      "refuse files of another cluster than this one (default: the stanza's)",
    )
    .option('--json', 'print the result as JSON');
  addRepoOptions(cmd);
  cmd.action(async (walPath: string, opts: PushOptions) => {
    const { signalled, signal, done } = withSignalAbort();
    let code: number;
    try {
      const storage = openRepoStorage(opts, stderrLogger);
      try {
        const result = await archivePush({
          storage,
          stanza: opts.stanza,
          walPath,
          systemIdentifier: opts.systemIdentifier,
          signal,
          logger: stderrLogger,
        });
        printResult(opts, [], result); // quiet on success: stdout goes to the server log
        code = PUSH_EXIT.archived;
      } finally {
        await storage.close().catch(() => undefined);
      }
    } catch (error) {
      if (!(signalled() && isPgarkError(error) && error.code === 'ABORTED')) printError(opts, error);
      code = PUSH_EXIT.failed;
    }
    done(code);
  });
}
