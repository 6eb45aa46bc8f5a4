/**
 * `pgark wal-archive --repo … --slot NAME [--create-slot] [--synchronous]`: runs the continuous WAL
 * archiver (startWalArchiver) until SIGINT/SIGTERM, then makes what it received durable and exits 0
 * with the final durable position. Same connection and repository options as `pgark backup`.
 * Events go to stderr as one line each (JSON lines with --json); the result goes to stdout.
 */
import { Option, type Command } from 'commander';
import { ConfigError, formatLsn, startWalArchiver, type PgarkEvent } from '../../index';
import { printResult, runAction } from '../output';
import { addConnectionOptions, connectionFromCli, type ConnectionCliOptions } from '../connection-options';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';

interface WalArchiveCliOptions extends ConnectionCliOptions, RepoOptions {
  slot: string;
  createSlot?: boolean;
  synchronous?: boolean;
  statusInterval?: string;
  flushInterval?: string;
  applicationName?: string;
  json?: boolean;
  quiet?: boolean;
}

function positiveMs(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new ConfigError('CONFIG_INVALID_OPTION', `${name} must be a positive number of seconds`);
  return Math.round(n * 1000);
}

function eventLine(e: PgarkEvent): string {
  const { type, ...rest } = e;
  return `${type} ${Object.entries(rest)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ')}`;
}

export function registerWalArchive(program: Command): void {
  const cmd = program
    .command('wal-archive')
    .description(
      'stream WAL continuously into the repository through a physical replication slot (until SIGINT/SIGTERM)',
    )
    .requiredOption('--slot <name>', 'physical replication slot to stream through')
    .option('--create-slot', 'create the slot (RESERVE_WAL) if it does not exist')
    .option('--synchronous', 'make every byte durable at once and report it (for synchronous_standby_names)')
    .option(
      '--application-name <name>',
      'application_name to connect with (matched by synchronous_standby_names; default: the slot name)',
    )
    .addOption(new Option('-s, --status-interval <seconds>', 'status update interval').default('2'))
    .option(
      '--flush-interval <seconds>',
      'asynchronous mode: how often the incomplete segment is made durable (default 5)',
    )
    .option('--json', 'events on stderr and the result on stdout as JSON')
    .option('-q, --quiet', 'print no events');
  addConnectionOptions(cmd);
  addRepoOptions(cmd);
  cmd.action(async (opts: WalArchiveCliOptions) => {
    await runAction(opts, async () => {
      const connection = connectionFromCli(opts);
      if (opts.applicationName) connection.applicationName = opts.applicationName;
      const storage = openRepoStorage(opts);
      const archiver = startWalArchiver({
        connection,
        storage,
        stanza: opts.stanza,
        slot: opts.slot,
        createSlot: opts.createSlot ?? false,
        synchronous: opts.synchronous ?? false,
        // This process only archives: flush on its own thread, as pg_receivewal does.
        blockingFlush: true,
        statusIntervalMs: positiveMs(opts.statusInterval, '--status-interval'),
        flushIntervalMs: positiveMs(opts.flushInterval, '--flush-interval'),
        // Quiet: no handler at all, so no event is even built (one per flush in synchronous mode).
        ...(opts.quiet
          ? {}
          : {
              onEvent: (e: PgarkEvent) => {
                process.stderr.write((opts.json ? JSON.stringify(e) : eventLine(e)) + '\n');
              },
            }),
      });
      const onSignal = (): void => void archiver.stop();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const r = await archiver.done;
        printResult(
          opts,
          [
            `stopped: wal durable in the repository up to ${formatLsn(r.flushedLsn)} on timeline ${r.timeline} (${r.segmentsStored} segments stored, ${r.reconnects} reconnects)`,
          ],
          {
            flushedLsn: formatLsn(r.flushedLsn),
            timeline: r.timeline,
            segmentsStored: r.segmentsStored,
            reconnects: r.reconnects,
          },
        );
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await storage.close().catch(() => undefined);
      }
    });
  });
}
