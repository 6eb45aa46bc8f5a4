/**
 * The repository options every repository-using command shares: `--repo <dir | s3://bucket/prefix>`,
 * `--stanza` (default `main`), and the S3 endpoint, region, path style and part size. S3 credentials
 * come only from the AWS SDK's default credential chain (environment, profile, instance role),
 * never from the command line, so they never appear in `ps` or shell history.
 */
import { Option, type Command } from 'commander';
import { ConfigError, openStorage, type Logger, type Storage } from '../index';

export interface RepoOptions {
  repo?: string;
  stanza: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
  s3PartSize?: string;
}

export function addRepoOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--repo <location>', 'repository: a directory or s3://bucket/prefix').env('PGARK_REPO'),
    )
    .addOption(
      new Option('--stanza <name>', 'the stanza (one per cluster)').env('PGARK_STANZA').default('main'),
    )
    .addOption(new Option('--s3-endpoint <url>', 'S3 endpoint of a non-AWS store').env('PGARK_S3_ENDPOINT'))
    .addOption(new Option('--s3-region <region>', 'S3 region').env('PGARK_S3_REGION'))
    .addOption(new Option('--s3-path-style', 'path-style S3 URLs (default when --s3-endpoint is set)'))
    .addOption(new Option('--s3-part-size <MiB>', 'S3 multipart part size in MiB (memory: part size x 5)'));
}

/** The storage driver for the options. @throws ConfigError CONFIG_INVALID_LOCATION / CONFIG_INVALID_OPTION */
export function openRepoStorage(opts: RepoOptions, logger?: Logger): Storage {
  if (!opts.repo) {
    throw new ConfigError('CONFIG_INVALID_LOCATION', 'no repository given', {
      hint: 'pass --repo <dir|s3://bucket/prefix> or set PGARK_REPO',
    });
  }
  const s3: {
    endpoint?: string;
    region?: string;
    forcePathStyle?: boolean;
    partSizeBytes?: number;
    logger?: Logger;
  } = {};
  if (opts.s3Endpoint) s3.endpoint = opts.s3Endpoint;
  if (opts.s3Region) s3.region = opts.s3Region;
  if (opts.s3PathStyle) s3.forcePathStyle = true;
  if (opts.s3PartSize !== undefined) {
    const mib = Number(opts.s3PartSize);
    if (!Number.isInteger(mib) || mib < 5 || mib > 5120) {
      throw new ConfigError(
        'CONFIG_INVALID_OPTION',
        `--s3-part-size must be an integer number of MiB between 5 and 5120 (got ${opts.s3PartSize})`,
      );
    }
    s3.partSizeBytes = mib * 1024 * 1024;
  }
  if (logger) s3.logger = logger;
  return openStorage(opts.repo, s3);
}
