/**
 * The pgark command-line interface: a thin layer over the public API (it imports only from ../index).
 * Each command lives in ./commands/<name>.ts and registers itself on the program.
 */
import { Command } from 'commander';
import { EXIT_USAGE } from './output';
import { COMMANDS } from './commands';

const program = new Command('pgark')
  .description('PostgreSQL backup, WAL archiving and restore over the replication protocol')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride((err) => {
    // commander's own usage errors exit 2 like PostgreSQL's tools; --help/--version exit 0.
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  });

for (const register of COMMANDS) register(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`pgark: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
