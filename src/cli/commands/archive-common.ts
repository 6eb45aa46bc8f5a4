/**
 * What archive-push and archive-fetch share: the repository options, a stderr logger (the output of
 * archive_command/restore_command lands in the server log), and turning SIGTERM/SIGINT into an
 * abort that cleans up and then ends the process by the same signal, as PostgreSQL expects.
 *
 * (The repository options mirror the common ones of the other commands: --repo, --stanza,
 * --s3-endpoint, --s3-region, --s3-path-style. S3 credentials come only from the AWS SDK's default
 * chain, i.e. the environment of the server process, never from the command line.)
 */
import { Option, type Command } from 'commander';
import { ConfigError, openStorage, type Logger, type Storage } from '../../index';

export interface ArchiveRepoOptions {
  repo?: string;
  stanza: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
}

export function addArchiveRepoOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--repo <location>', 'repository: a directory or s3://bucket/prefix').env('PGARK_REPO'))
    .addOption(new Option('--stanza <name>', 'the stanza (one per cluster)').env('PGARK_STANZA').default('main'))
    .addOption(new Option('--s3-endpoint <url>', 'S3 endpoint of a non-AWS store').env('PGARK_S3_ENDPOINT'))
    .addOption(new Option('--s3-region <region>', 'S3 region').env('PGARK_S3_REGION'))
    .addOption(new Option('--s3-path-style', 'path-style S3 URLs (default when --s3-endpoint is set)'));
}

export function openArchiveStorage(opts: ArchiveRepoOptions): Storage {
  if (!opts.repo) {
    throw new ConfigError('CONFIG_INVALID_LOCATION', 'no repository given', { hint: 'pass --repo <dir|s3://bucket/prefix> or set PGARK_REPO' });
  }
  const s3: { endpoint?: string; region?: string; forcePathStyle?: boolean } = {};
  if (opts.s3Endpoint) s3.endpoint = opts.s3Endpoint;
  if (opts.s3Region) s3.region = opts.s3Region;
  if (opts.s3PathStyle) s3.forcePathStyle = true;
  return openStorage(opts.repo, s3);
}

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
export function withSignalAbort(): { signal: AbortSignal; signalled: () => boolean; done: (code: number) => void } {
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
