/**
 * Builds the BASE_BACKUP command text for the server's grammar: the legacy keyword form for 14 and
 * the parenthesised option list for 15+ (protocol notes §3.1; repl_gram.y `base_backup`). Pure: no I/O.
 *
 * Mixing the two forms is a syntax error (15+ has no legacy keywords, 14 has no parentheses), so the
 * form is chosen from server_version_num only.
 */
import { ConfigError, ReplicationError } from '../errors';

export type ManifestChecksumAlgorithm = 'NONE' | 'CRC32C' | 'SHA224' | 'SHA256' | 'SHA384' | 'SHA512';
export const MANIFEST_CHECKSUM_ALGORITHMS: readonly ManifestChecksumAlgorithm[] = [
  'NONE',
  'CRC32C',
  'SHA224',
  'SHA256',
  'SHA384',
  'SHA512',
];

export type CompressionMethod = 'gzip' | 'lz4' | 'zstd';

export interface ServerCompression {
  method: CompressionMethod;
  /** gzip 1-9, lz4 1-12, zstd ZSTD_minCLevel..ZSTD_maxCLevel (compression.c validate_compress_specification). */
  level?: number;
  /** zstd only: worker threads on the server. */
  workers?: number;
}

export interface BaseBackupCommandOptions {
  /** backup_label's LABEL; at most 1023 bytes (basebackup.c: MAXPGPATH). */
  label: string;
  /** Ask the server for its size estimate (the `size` column of the tablespace rows). */
  progress: boolean;
  checkpoint: 'fast' | 'spread';
  /** Include the WAL needed by the backup in base.tar (pg_basebackup -X fetch). */
  wal: boolean;
  /** Wait for the WAL to be archived at the end (false when pgark streams or fetches it itself). */
  wait: boolean;
  /** MAX_RATE in kB/s (32..1048576, basebackup.h MAX_RATE_LOWER/UPPER). */
  maxRateKbps?: number;
  tablespaceMap: boolean;
  verifyChecksums: boolean;
  manifestChecksums: ManifestChecksumAlgorithm;
  /** Server-side compression (15+ only). */
  compression?: ServerCompression;
}

export const MAX_RATE_LOWER_KBPS = 32;
export const MAX_RATE_UPPER_KBPS = 1024 * 1024;
const MAX_LABEL_BYTES = 1023;

/** A string constant for the replication grammar: single quotes doubled (repl_scanner.l `xqdouble`; no backslash escapes). */
export function quoteReplicationLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** Checks a backup label: non-empty, at most 1023 bytes, no NUL or control characters (it lands in backup_label). */
export function assertBackupLabel(label: string): void {
  if (
    typeof label !== 'string' ||
    label.length === 0 ||
    Buffer.byteLength(label) > MAX_LABEL_BYTES ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f]/.test(label)
  ) {
    throw new ConfigError(
      'CONFIG_INVALID_IDENTIFIER',
      `invalid backup label ${JSON.stringify(String(label).slice(0, 80))}`,
      {
        hint: 'a backup label has 1 to 1023 bytes and no control characters',
      },
    );
  }
}

function assertInteger(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `${name} must be an integer between ${min} and ${max} (got ${v})`,
    );
  }
}

/** Validates a compression level/workers for a method (ranges from PostgreSQL's compression.c). */
export function assertServerCompression(c: ServerCompression): void {
  if (!['gzip', 'lz4', 'zstd'].includes(c.method)) {
    throw new ConfigError(
      'CONFIG_UNSUPPORTED_COMPRESSION',
      `unknown compression method ${JSON.stringify(c.method)}`,
    );
  }
  if (c.level !== undefined) {
    const [min, max] = c.method === 'gzip' ? [1, 9] : c.method === 'lz4' ? [1, 12] : [-131072, 22];
    assertInteger(`${c.method} compression level`, c.level, min, max);
  }
  if (c.workers !== undefined) {
    if (c.method !== 'zstd')
      throw new ConfigError('CONFIG_INVALID_OPTION', 'compression workers are supported by zstd only');
    assertInteger('zstd workers', c.workers, 0, 256);
  }
}

/** COMPRESSION_DETAIL text (compression.c parse_compress_specification): `level=N,workers=N`. */
export function compressionDetail(c: ServerCompression): string | undefined {
  const parts: string[] = [];
  if (c.level !== undefined) parts.push(`level=${c.level}`);
  if (c.workers !== undefined) parts.push(`workers=${c.workers}`);
  return parts.length ? parts.join(',') : undefined;
}

/**
 * The BASE_BACKUP command for a server. The manifest is always requested (`MANIFEST 'yes'`), since
 * PG14's default is none and pgark keeps the manifest of every backup.
 *
 * Throws ConfigError for invalid options and ReplicationError REPLICATION_UNSUPPORTED_VERSION for
 * server-side compression on 14 or a server older than 14.
 */
export function buildBaseBackupCommand(o: BaseBackupCommandOptions, serverVersionNum: number): string {
  if (serverVersionNum < 140000) {
    throw new ReplicationError(
      'REPLICATION_UNSUPPORTED_VERSION',
      `server version ${serverVersionNum} is older than 14`,
    );
  }
  assertBackupLabel(o.label);
  if (o.maxRateKbps !== undefined)
    assertInteger('max rate (kB/s)', o.maxRateKbps, MAX_RATE_LOWER_KBPS, MAX_RATE_UPPER_KBPS);
  if (!MANIFEST_CHECKSUM_ALGORITHMS.includes(o.manifestChecksums)) {
    throw new ConfigError(
      'CONFIG_INVALID_OPTION',
      `unknown manifest checksum algorithm ${JSON.stringify(o.manifestChecksums)}`,
      {
        hint: `use one of ${MANIFEST_CHECKSUM_ALGORITHMS.join(', ')}`,
      },
    );
  }
  if (o.compression) assertServerCompression(o.compression);

  if (serverVersionNum < 150000) {
    if (o.compression) {
      throw new ReplicationError(
        'REPLICATION_UNSUPPORTED_VERSION',
        'server-side compression needs postgresql 15 or newer',
        {
          hint: 'use client-side compression with postgresql 14',
        },
      );
    }
    // PG14 repl_gram.y base_backup_opt: keywords, SCONST values, MAX_RATE UCONST.
    const parts = ['BASE_BACKUP', 'LABEL', quoteReplicationLiteral(o.label)];
    if (o.progress) parts.push('PROGRESS');
    if (o.checkpoint === 'fast') parts.push('FAST');
    if (o.wal) parts.push('WAL');
    if (!o.wait) parts.push('NOWAIT');
    if (o.maxRateKbps !== undefined) parts.push('MAX_RATE', String(o.maxRateKbps));
    if (o.tablespaceMap) parts.push('TABLESPACE_MAP');
    if (!o.verifyChecksums) parts.push('NOVERIFY_CHECKSUMS');
    parts.push('MANIFEST', "'yes'", 'MANIFEST_CHECKSUMS', quoteReplicationLiteral(o.manifestChecksums));
    return parts.join(' ');
  }

  // 15+: generic_option_list (basebackup.c parse_basebackup_options). Never empty: LABEL is always sent.
  const opts = [`LABEL ${quoteReplicationLiteral(o.label)}`];
  if (o.progress) opts.push('PROGRESS');
  opts.push(`CHECKPOINT '${o.checkpoint}'`);
  if (o.wal) opts.push('WAL');
  // pg_basebackup sends `WAIT 0` whenever it gets the WAL by itself.
  opts.push(`WAIT ${o.wait ? 1 : 0}`);
  if (o.maxRateKbps !== undefined) opts.push(`MAX_RATE ${o.maxRateKbps}`);
  if (o.tablespaceMap) opts.push('TABLESPACE_MAP');
  if (!o.verifyChecksums) opts.push('VERIFY_CHECKSUMS 0');
  opts.push("MANIFEST 'yes'", `MANIFEST_CHECKSUMS ${quoteReplicationLiteral(o.manifestChecksums)}`);
  opts.push("TARGET 'client'");
  if (o.compression) {
    opts.push(`COMPRESSION '${o.compression.method}'`);
    const detail = compressionDetail(o.compression);
    if (detail) opts.push(`COMPRESSION_DETAIL ${quoteReplicationLiteral(detail)}`);
  }
  return `BASE_BACKUP (${opts.join(', ')})`;
}
