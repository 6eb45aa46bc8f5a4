/**
 * What archive-push and archive-fetch share besides the repository options (../repo-options): a
 * stderr logger (the output of archive_command/restore_command lands in the server log), and
 * turning SIGTERM/SIGINT into an abort that cleans up and then ends the process by the same signal,
 * as PostgreSQL expects.
 */
import type { Logger } from '../../index';

/** warn and error go to stderr (the server log); info/debug stay silent, as archive commands run for every segment. */
export const stderrLogger: Logger = {
  debug() {},
  info() {},
  warn(msg, fields) {
    process.stderr.write(`pgark: warning: ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`);
  },
  error(msg, fields) {
    process.stderr.write(`pgark: error: ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`);
  },
};

/**
 * Aborts the returned signal on SIGTERM/SIGINT. `done(code)` sets the exit code, or, when a signal
 * came, re-raises it so that the parent (PostgreSQL) sees death by that signal: for restore_command
 * SIGTERM means "fast shutdown, exit cleanly" (shell_restore.c), anything else is FATAL.
 */
export function withSignalAbort(): {
  signal: AbortSignal;
  signalled: () => boolean;
  done: (code: number) => void;
} {
  const controller = new AbortController();
  let got: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    got ??= sig;
    controller.abort(new Error(`received ${sig}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    signal: controller.signal,
    signalled: () => got !== undefined,
    done(code: number) {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      if (got) process.kill(process.pid, got);
      else process.exitCode = code;
    },
  };
}
