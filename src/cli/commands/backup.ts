/**
 * `pgark backup`: a base backup into the repository (runBaseBackup). Options follow pg_basebackup:
 * `-d/-h/-p/-U` and PG* for the connection, `-l/--label`, `-c/--checkpoint fast|spread`,
 * `-r/--max-rate`, `-X/--wal-method stream|fetch|none`, `--compress [server-|client-]METHOD[:LEVEL]`
 * (pg_basebackup's spelling). Prints the backup id, LSNs and sizes (or JSON with --json); a
 * progress line on a TTY. Exit code 0 only when the backup's catalog entry is written.
 */
import { Option, type Command } from 'commander';
import {
  ConfigError,
  formatLsn,
  runBaseBackup,
  type BackupCompression,
  type PgarkEvent,
  type WalMethod,
} from '../../index';
import { endProgress, formatBytes, printResult, progressLine, runAction } from '../output';
import { addConnectionOptions, connectionFromCli, type ConnectionCliOptions } from '../connection-options';
import { addRepoOptions, openRepoStorage, type RepoOptions } from '../repo-options';

interface BackupCliOptions extends ConnectionCliOptions, RepoOptions {
  label?: string;
  checkpoint?: 'fast' | 'spread';
  fast?: boolean;
  maxRate?: string;
  walMethod: WalMethod;
  compress?: string;
  manifestChecksums?: string;
  verifyChecksums: boolean;
  json?: boolean;
}

/** `gzip`, `server-zstd:level=3,workers=2`, `client-gzip:6`, `none` → BackupCompression. */
export function parseCompressOption(text: string | undefined): BackupCompression {
  if (!text || text === 'none') return { method: 'none' };
  const m = /^(?:(server|client)-)?(gzip|lz4|zstd)(?::(.+))?$/.exec(text);
  if (!m) {
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid --compress ${JSON.stringify(text)}`, {
      hint: 'use [server-|client-]gzip|lz4|zstd[:LEVEL|:level=N,workers=N] or none',
    });
  }
  const out: BackupCompression = { method: m[2] as 'gzip' | 'lz4' | 'zstd' };
  if (m[1]) out.location = m[1] as 'server' | 'client';
  if (m[3]) {
    for (const part of m[3].split(',')) {
      const [k, v] = part.includes('=') ? part.split('=', 2) : ['level', part];
      const n = Number(v);
      if (!Number.isInteger(n))
        throw new ConfigError('CONFIG_INVALID_OPTION', `invalid compression detail ${JSON.stringify(part)}`);
      if (k === 'level') out.level = n;
      else if (k === 'workers') out.workers = n;
      else throw new ConfigError('CONFIG_INVALID_OPTION', `unknown compression detail ${JSON.stringify(k)}`);
    }
  }
  return out;
}

/** pg_basebackup's -r: kB/s, or with a suffix k/M. */
export function parseMaxRate(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)([kKmM]?)$/.exec(text.trim());
  if (!m)
    throw new ConfigError('CONFIG_INVALID_OPTION', `invalid --max-rate ${JSON.stringify(text)}`, {
      hint: 'kB/s, or with a k or M suffix (32k..1024M)',
    });
  const n = Number(m[1]);
  return m[2] === 'M' || m[2] === 'm' ? n * 1024 : n;
}

export function registerBackup(program: Command): void {
  const cmd = program
    .command('backup')
    .description('take a base backup over the replication protocol into the repository')
    .helpOption('-?, --help', 'show help')
    .option('-l, --label <label>', 'backup label', 'pgark base backup')
    .addOption(
      new Option('-c, --checkpoint <mode>', 'checkpoint mode').choices(['fast', 'spread']).default('spread'),
    )
    .option('--fast', 'same as --checkpoint fast')
    .option('-r, --max-rate <rate>', 'maximum transfer rate (kB/s, or with k/M suffix)')
    .addOption(
      new Option('-X, --wal-method <method>', 'WAL in the backup: stream (self-contained), fetch, none')
        .choices(['stream', 'fetch', 'none'])
        .default('stream'),
    )
    .option('--compress <spec>', 'compression: [server-|client-]gzip|lz4|zstd[:LEVEL] or none', 'none')
    .addOption(
      new Option('--manifest-checksums <alg>', 'backup_manifest checksums')
        .choices(['NONE', 'CRC32C', 'SHA224', 'SHA256', 'SHA384', 'SHA512'])
        .default('CRC32C'),
    )
    .option('--no-verify-checksums', 'do not verify page checksums')
    .option('--json', 'print the result as JSON');
  addConnectionOptions(cmd);
  addRepoOptions(cmd);
  cmd.action(async (opts: BackupCliOptions) => {
    await runAction(opts, async () => {
      const storage = openRepoStorage(opts);
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const r = await runBaseBackup({
          connection: connectionFromCli(opts),
          storage,
          stanza: opts.stanza,
          label: opts.label,
          checkpoint: opts.fast ? 'fast' : opts.checkpoint,
          maxRateKbps: parseMaxRate(opts.maxRate),
          wal: opts.walMethod,
          compression: parseCompressOption(opts.compress),
          manifestChecksums: opts.manifestChecksums as 'CRC32C',
          verifyChecksums: opts.verifyChecksums,
          signal: controller.signal,
          onEvent: (e: PgarkEvent) => {
            if (e.type === 'backup.progress') {
              const est = e.bytesEstimated
                ? ` of ~${formatBytes(e.bytesEstimated)} (${Math.min(100, Math.floor((100 * e.bytesDone) / e.bytesEstimated))}%)`
                : '';
              progressLine(`backup ${e.backupId}: ${formatBytes(e.bytesDone)}${est}`);
            }
          },
        });
        endProgress();
        const s = r.entry.sizes;
        printResult(
          opts,
          [
            `backup ${r.backupId} completed`,
            `start lsn ${formatLsn(r.startLsn)} (timeline ${r.startTimeline}), end lsn ${formatLsn(r.endLsn)} (timeline ${r.endTimeline})`,
            `data ${formatBytes(s.dataBytes)}, stored ${formatBytes(s.storedBytes)} in ${r.entry.objects.length} objects (wal ${formatBytes(s.walBytes)}), ${(r.durationMs / 1000).toFixed(1)} s`,
          ],
          {
            backupId: r.backupId,
            stanza: r.stanza,
            startLsn: formatLsn(r.startLsn),
            startTimeline: r.startTimeline,
            endLsn: formatLsn(r.endLsn),
            endTimeline: r.endTimeline,
            systemIdentifier: r.systemIdentifier,
            serverVersionNum: r.serverVersionNum,
            sizes: s,
            compression: r.entry.compression,
            walMethod: r.entry.walMethod,
            durationMs: r.durationMs,
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
