/**
 * Repository locations given as text (CLI, config): `s3://bucket/prefix` or a directory path.
 * parseStorageLocation/parseS3Location parse only (no I/O); openStorage builds the matching driver.
 */
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../errors';
import type { ObserveOptions } from '../observe';
import { createFsStorage } from './fs-storage';
import { createS3Storage, type S3StorageOptions } from './s3-storage';
import type { Storage } from './storage';

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing `/` ('' for the bucket root). */
  prefix: string;
}

// S3's bucket naming rules (3-63 chars, lower case, digits, dots, hyphens), relaxed to allow the
// upper case and underscores of legacy buckets and of other S3-compatible stores.
const BUCKET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;

/**
 * Parses `s3://bucket[/prefix]`. Throws ConfigError CONFIG_INVALID_LOCATION for anything else
 * (another scheme, no bucket, a bucket name S3 cannot have, `.`/`..` or empty prefix segments).
 *
 * @example parseS3Location('s3://backups/prod/db1') // { bucket: 'backups', prefix: 'prod/db1' }
 */
export function parseS3Location(location: string): S3Location {
  const bad = (why: string): never => {
    throw new ConfigError(
      'CONFIG_INVALID_LOCATION',
      `invalid s3 location ${JSON.stringify(location)}: ${why}`,
      {
        hint: 'use s3://bucket or s3://bucket/prefix',
      },
    );
  };
  if (typeof location !== 'string' || !/^s3:\/\//i.test(location)) bad('it does not start with s3://');
  const rest = location.substring('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.substring(0, slash);
  const prefix = (slash < 0 ? '' : rest.substring(slash + 1)).replace(/\/+$/, '');
  if (bucket === '') bad('no bucket');
  if (!BUCKET_RE.test(bucket)) bad('not a valid bucket name');
  if (prefix !== '') {
    for (const segment of prefix.split('/')) {
      if (segment === '' || segment === '.' || segment === '..') bad('empty, "." or ".." prefix segment');
    }
  }
  return { bucket, prefix };
}

/** Where a repository lives: a local directory, or a bucket and key prefix of an S3-compatible store. */
export type StorageLocation = { kind: 'fs'; root: string } | ({ kind: 's3' } & S3Location);

/**
 * Parses a repository location: `s3://bucket[/prefix]` (see parseS3Location), `file:///abs/path`,
 * or a directory path (resolved against the current directory when relative).
 *
 * @throws ConfigError CONFIG_INVALID_LOCATION for an empty text, another URL scheme, a NUL
 *   character, or an invalid s3 location.
 * @example
 * parseStorageLocation('s3://backups/prod') // { kind: 's3', bucket: 'backups', prefix: 'prod' }
 * parseStorageLocation('/var/lib/pgark')    // { kind: 'fs', root: '/var/lib/pgark' }
 */
export function parseStorageLocation(text: string): StorageLocation {
  const bad = (why: string): never => {
    throw new ConfigError(
      'CONFIG_INVALID_LOCATION',
      `invalid repository location ${JSON.stringify(text)}: ${why}`,
      {
        hint: 'use a directory path or s3://bucket/prefix',
      },
    );
  };
  if (typeof text !== 'string' || text.trim() === '') bad('empty');
  if (text.includes('\0')) bad('contains a nul character');
  if (/^s3:\/\//i.test(text)) return { kind: 's3', ...parseS3Location(text) };
  if (/^file:\/\//i.test(text)) {
    const path = decodeURIComponent(text.substring('file://'.length));
    if (!isAbsolute(path)) bad('a file:// url needs an absolute path (file:///dir)');
    return { kind: 'fs', root: resolve(path) };
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) bad('unsupported url scheme');
  return { kind: 'fs', root: resolve(text) };
}

/** Options of openStorage: the s3 driver's connection and tuning options, and observability. */
export type OpenStorageOptions = ObserveOptions & Omit<S3StorageOptions, 'bucket' | 'prefix'>;

/**
 * Builds the storage driver for a location (text or parsed): createFsStorage for a directory,
 * createS3Storage for `s3://` (the s3 options are ignored for a directory).
 *
 * @throws ConfigError CONFIG_INVALID_LOCATION (see parseStorageLocation), CONFIG_INVALID_OPTION.
 * @example
 * const storage = openStorage('s3://backups/prod', { endpoint: 'http://127.0.0.1:9000', region: 'us-east-1' });
 */
export function openStorage(location: StorageLocation | string, options: OpenStorageOptions = {}): Storage {
  const loc = typeof location === 'string' ? parseStorageLocation(location) : location;
  if (loc.kind === 'fs') {
    return createFsStorage({ root: loc.root, logger: options.logger, onEvent: options.onEvent });
  }
  return createS3Storage({ ...options, bucket: loc.bucket, prefix: loc.prefix });
}
