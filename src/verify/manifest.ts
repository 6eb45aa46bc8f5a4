/**
 * backup_manifest: parsing, self-checksum verification and per-file checksummers.
 *
 * Mirrors src/common/parse_manifest.c (json_parse_manifest, verify_manifest_checksum) and
 * src/common/checksum_helper.c: versions 1 (PG13-16) and 2 (PG17+, adds System-Identifier); file entries with
 * exactly one of `Path` / `Encoded-Path`; the Manifest-Checksum is SHA-256 over every byte up to and including
 * the penultimate newline. Duplicate paths and unknown versions are rejected, as pg_verifybackup does.
 *
 * Pure: bytes in, a typed manifest out. A manifest has one line per file (~150 bytes), so parsing a whole Buffer
 * is fine; the parser is a single linear pass. Integers (System-Identifier is 64-bit) are kept exact: the
 * small JSON reader here keeps number tokens as text instead of going through JSON.parse's doubles.
 */
import { createHash, type Hash } from 'node:crypto';
import { IntegrityError } from '../errors';
import { parseLsn, type Lsn } from '../lsn';
import { crc32cFinal, crc32cInit, crc32cManifestHex, crc32cUpdate } from './crc32c';

/** Checksum algorithms a manifest may name (checksum_helper.c pg_checksum_parse_type). */
export type ManifestChecksumAlgorithm = 'NONE' | 'CRC32C' | 'SHA224' | 'SHA256' | 'SHA384' | 'SHA512';

/** Hex length of each algorithm's checksum in the manifest. */
const CHECKSUM_HEX_LENGTH: Record<ManifestChecksumAlgorithm, number> = {
  NONE: 0,
  CRC32C: 8,
  SHA224: 56,
  SHA256: 64,
  SHA384: 96,
  SHA512: 128,
};

export interface ManifestFile {
  /** Path relative to PGDATA, as UTF-8 (for `Encoded-Path` entries: the decoded bytes read as UTF-8). */
  path: string;
  /** The raw `Encoded-Path` hex when the entry used it (non-UTF-8 names, or MANIFEST 'force-encode'). */
  encodedPath?: string;
  /** Bytes as sent in the archive. */
  size: number;
  /** `%Y-%m-%d %H:%M:%S GMT`, as written. */
  lastModified: string;
  checksumAlgorithm: ManifestChecksumAlgorithm;
  /** Lowercase hex; absent when the algorithm is NONE. */
  checksum?: string;
}

export interface ManifestWalRange {
  timeline: number;
  startLsn: Lsn;
  endLsn: Lsn;
}

export interface BackupManifest {
  version: 1 | 2;
  /** Version 2 only (PG17+): the cluster's system identifier as a decimal string (64-bit). */
  systemIdentifier?: string;
  /** Files in manifest order. */
  files: ManifestFile[];
  /** The same files by path. */
  byPath: Map<string, ManifestFile>;
  /** Newest timeline first, as the server writes them. */
  walRanges: ManifestWalRange[];
  /** SHA-256 of the manifest body, lowercase hex (already verified). */
  manifestChecksum: string;
}

function invalid(message: string, cause?: unknown): IntegrityError {
  return new IntegrityError('INTEGRITY_MANIFEST_INVALID', message, {
    key: 'backup_manifest',
    hint: 'the backup manifest is corrupt or was not written by postgresql 13-18; take a new backup',
    cause,
  });
}

// ---------------------------------------------------------------------------------------------
// A small strict JSON reader. Objects keep their keys in order (so duplicates are visible);
// numbers keep their text.

type JsonValue = string | JsonNumber | boolean | null | JsonValue[] | JsonObject;
interface JsonNumber {
  readonly number: string;
}
interface JsonObject {
  readonly entries: Array<[string, JsonValue]>;
}

function isJsonObject(v: JsonValue): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'entries' in v;
}
function isJsonNumber(v: JsonValue): v is JsonNumber {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'number' in v;
}

const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class JsonReader {
  pos = 0;
  constructor(private readonly text: string) {}

  parseDocument(): JsonValue {
    const v = this.value(0);
    this.ws();
    if (this.pos !== this.text.length)
      throw invalid(`unexpected data after the manifest object at offset ${this.pos}`);
    return v;
  }

  private ws(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  private value(depth: number): JsonValue {
    if (depth > 8) throw invalid('manifest json nests too deeply');
    this.ws();
    const t = this.text;
    const c = t[this.pos];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (t.startsWith('true', this.pos)) return ((this.pos += 4), true);
    if (t.startsWith('false', this.pos)) return ((this.pos += 5), false);
    if (t.startsWith('null', this.pos)) return ((this.pos += 4), null);
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(t);
    if (m) {
      this.pos += m[0].length;
      return { number: m[0] };
    }
    throw invalid(`unexpected character in manifest json at offset ${this.pos}`);
  }

  private string(): string {
    const t = this.text;
    const start = this.pos;
    let i = start + 1;
    for (;;) {
      if (i >= t.length) throw invalid('unterminated string in manifest json');
      const c = t.charCodeAt(i);
      if (c === 0x22) break;
      if (c === 0x5c) i += 2;
      else if (c < 0x20) throw invalid(`control character in a manifest string at offset ${i}`);
      else i++;
    }
    this.pos = i + 1;
    try {
      // JSON.parse of one string token handles every escape exactly as JSON defines it.
      return JSON.parse(t.slice(start, this.pos)) as string;
    } catch (e) {
      throw invalid(`bad escape in a manifest string at offset ${start}`, e);
    }
  }

  private expect(ch: string): void {
    this.ws();
    if (this.text[this.pos] !== ch) throw invalid(`expected "${ch}" in manifest json at offset ${this.pos}`);
    this.pos++;
  }

  private object(depth: number): JsonObject {
    this.pos++; // {
    const entries: Array<[string, JsonValue]> = [];
    this.ws();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return { entries };
    }
    for (;;) {
      this.ws();
      if (this.text[this.pos] !== '"') throw invalid(`expected a key in manifest json at offset ${this.pos}`);
      const key = this.string();
      this.expect(':');
      entries.push([key, this.value(depth + 1)]);
      this.ws();
      const c = this.text[this.pos++];
      if (c === '}') return { entries };
      if (c !== ',') throw invalid(`expected "," or "}" in manifest json at offset ${this.pos - 1}`);
    }
  }

  private array(depth: number): JsonValue[] {
    this.pos++; // [
    const out: JsonValue[] = [];
    this.ws();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') throw invalid(`expected "," or "]" in manifest json at offset ${this.pos - 1}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Field readers

function fieldsOf(obj: JsonObject, what: string): Map<string, JsonValue> {
  const m = new Map<string, JsonValue>();
  for (const [k, v] of obj.entries) {
    if (m.has(k)) throw invalid(`duplicate field "${k}" in ${what}`);
    m.set(k, v);
  }
  return m;
}

function asString(v: JsonValue | undefined, what: string): string {
  if (typeof v !== 'string') throw invalid(`${what} must be a string`);
  return v;
}

/** A non-negative integer that fits a JS number exactly. */
function asSafeInteger(v: JsonValue | undefined, what: string): number {
  if (v === undefined || !isJsonNumber(v) || !/^\d+$/.test(v.number))
    throw invalid(`${what} must be a non-negative integer`);
  const n = Number(v.number);
  if (!Number.isSafeInteger(n)) throw invalid(`${what} is too large`);
  return n;
}

function asLsn(v: JsonValue | undefined, what: string): Lsn {
  const text = asString(v, what);
  try {
    return parseLsn(text);
  } catch (e) {
    throw invalid(`${what} "${text}" is not an lsn`, e);
  }
}

function parseChecksumAlgorithm(text: string): ManifestChecksumAlgorithm {
  const up = text.toUpperCase();
  if (up in CHECKSUM_HEX_LENGTH) return up as ManifestChecksumAlgorithm;
  throw invalid(`unknown checksum algorithm "${text}"`);
}

const FILE_FIELDS = new Set([
  'Path',
  'Encoded-Path',
  'Size',
  'Last-Modified',
  'Checksum-Algorithm',
  'Checksum',
]);
const HEX_RE = /^[0-9a-f]*$/;

function parseFile(v: JsonValue, index: number): ManifestFile {
  const what = `file entry ${index}`;
  if (!isJsonObject(v)) throw invalid(`${what} is not an object`);
  const f = fieldsOf(v, what);
  for (const k of f.keys()) if (!FILE_FIELDS.has(k)) throw invalid(`unexpected field "${k}" in ${what}`);
  const hasPath = f.has('Path');
  const hasEncoded = f.has('Encoded-Path');
  if (hasPath === hasEncoded) throw invalid(`${what} must have exactly one of Path and Encoded-Path`);
  let path: string;
  let encodedPath: string | undefined;
  if (hasPath) {
    path = asString(f.get('Path'), `${what} Path`);
  } else {
    encodedPath = asString(f.get('Encoded-Path'), `${what} Encoded-Path`).toLowerCase();
    if (encodedPath.length % 2 !== 0 || !HEX_RE.test(encodedPath))
      throw invalid(`${what} Encoded-Path is not hex`);
    path = Buffer.from(encodedPath, 'hex').toString('utf8');
  }
  if (path.length === 0) throw invalid(`${what} has an empty path`);
  const size = asSafeInteger(f.get('Size'), `${what} Size`);
  const lastModified = asString(f.get('Last-Modified'), `${what} Last-Modified`);
  const algText = f.get('Checksum-Algorithm');
  const checksumAlgorithm =
    algText === undefined ? 'NONE' : parseChecksumAlgorithm(asString(algText, `${what} Checksum-Algorithm`));
  const file: ManifestFile = { path, size, lastModified, checksumAlgorithm };
  if (encodedPath !== undefined) file.encodedPath = encodedPath;
  if (checksumAlgorithm !== 'NONE') {
    const checksum = asString(f.get('Checksum'), `${what} Checksum`).toLowerCase();
    if (checksum.length !== CHECKSUM_HEX_LENGTH[checksumAlgorithm] || !HEX_RE.test(checksum)) {
      throw invalid(`${what} checksum is not ${CHECKSUM_HEX_LENGTH[checksumAlgorithm]} hex digits`);
    }
    file.checksum = checksum;
  } else if (f.has('Checksum')) {
    throw invalid(`${what} has a checksum but no checksum algorithm`);
  }
  return file;
}

function parseWalRange(v: JsonValue, index: number): ManifestWalRange {
  const what = `wal range ${index}`;
  if (!isJsonObject(v)) throw invalid(`${what} is not an object`);
  const f = fieldsOf(v, what);
  for (const k of f.keys()) {
    if (k !== 'Timeline' && k !== 'Start-LSN' && k !== 'End-LSN')
      throw invalid(`unexpected field "${k}" in ${what}`);
  }
  const timeline = asSafeInteger(f.get('Timeline'), `${what} Timeline`);
  if (timeline < 1 || timeline > 0xffffffff) throw invalid(`${what} timeline ${timeline} is out of range`);
  const startLsn = asLsn(f.get('Start-LSN'), `${what} Start-LSN`);
  const endLsn = asLsn(f.get('End-LSN'), `${what} End-LSN`);
  if (endLsn < startLsn) throw invalid(`${what} ends before it starts`);
  return { timeline, startLsn, endLsn };
}

// ---------------------------------------------------------------------------------------------

/**
 * Parses and verifies a backup_manifest.
 *
 * Checks, as parse_manifest.c and pg_verifybackup do: the file ends with a newline and has at least two lines;
 * the Manifest-Checksum (SHA-256 over the bytes up to and including the penultimate newline) matches; the version
 * is 1 or 2 (2 requires System-Identifier, 1 forbids it); every field is known and well-typed; no path appears
 * twice.
 *
 * @throws IntegrityError `INTEGRITY_MANIFEST_INVALID` for any of the above.
 * @example
 *   const manifest = parseBackupManifest(await readFile('backup_manifest'));
 *   manifest.byPath.get('global/pg_control')?.checksum;
 */
export function parseBackupManifest(bytes: Buffer): BackupManifest {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a)
    throw invalid('the manifest does not end with a newline');
  const penultimate = bytes.lastIndexOf(0x0a, bytes.length - 2);
  if (penultimate < 0) throw invalid('the manifest has fewer than two lines');

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw invalid('the manifest is not valid utf-8', e);
  }
  const root = new JsonReader(text).parseDocument();
  if (!isJsonObject(root)) throw invalid('the manifest is not a json object');

  const first = root.entries[0];
  if (!first || first[0] !== 'PostgreSQL-Backup-Manifest-Version') {
    throw invalid('the manifest does not start with PostgreSQL-Backup-Manifest-Version');
  }
  const top = fieldsOf(root, 'the manifest');
  for (const k of top.keys()) {
    if (
      ![
        'PostgreSQL-Backup-Manifest-Version',
        'System-Identifier',
        'Files',
        'WAL-Ranges',
        'Manifest-Checksum',
      ].includes(k)
    ) {
      throw invalid(`unexpected top-level field "${k}"`);
    }
  }
  const versionNumber = asSafeInteger(
    top.get('PostgreSQL-Backup-Manifest-Version'),
    'PostgreSQL-Backup-Manifest-Version',
  );
  if (versionNumber !== 1 && versionNumber !== 2)
    throw invalid(`unsupported manifest version ${versionNumber}`);
  const version: 1 | 2 = versionNumber;

  let systemIdentifier: string | undefined;
  const sysid = top.get('System-Identifier');
  if (version === 1 && sysid !== undefined) throw invalid('a version 1 manifest has a System-Identifier');
  if (version === 2) {
    if (
      sysid === undefined ||
      !isJsonNumber(sysid) ||
      !/^\d+$/.test(sysid.number) ||
      BigInt(sysid.number) >= 1n << 64n
    ) {
      throw invalid('a version 2 manifest needs a 64-bit System-Identifier');
    }
    systemIdentifier = BigInt(sysid.number).toString();
  }

  const filesValue = top.get('Files');
  if (!Array.isArray(filesValue)) throw invalid('Files is missing or not an array');
  const files: ManifestFile[] = [];
  const byPath = new Map<string, ManifestFile>();
  filesValue.forEach((v, i) => {
    const f = parseFile(v, i);
    if (byPath.has(f.path)) throw invalid(`duplicate path "${f.path}" in the manifest`);
    byPath.set(f.path, f);
    files.push(f);
  });

  const walValue = top.get('WAL-Ranges');
  if (!Array.isArray(walValue)) throw invalid('WAL-Ranges is missing or not an array');
  const walRanges = walValue.map(parseWalRange);

  const manifestChecksum = asString(top.get('Manifest-Checksum'), 'Manifest-Checksum').toLowerCase();
  if (manifestChecksum.length !== 64 || !HEX_RE.test(manifestChecksum))
    throw invalid('Manifest-Checksum is not 64 hex digits');
  const actual = createHash('sha256')
    .update(bytes.subarray(0, penultimate + 1))
    .digest('hex');
  if (actual !== manifestChecksum) {
    throw new IntegrityError('INTEGRITY_MANIFEST_INVALID', 'backup manifest checksum mismatch', {
      key: 'backup_manifest',
      expected: manifestChecksum,
      actual,
      hint: 'the backup manifest was changed or damaged after the server wrote it',
    });
  }
  const manifest: BackupManifest = { version, files, byPath, walRanges, manifestChecksum };
  if (systemIdentifier !== undefined) manifest.systemIdentifier = systemIdentifier;
  return manifest;
}

// ---------------------------------------------------------------------------------------------

/** An incremental file checksum in the manifest's form. */
export interface FileChecksummer {
  readonly algorithm: ManifestChecksumAlgorithm;
  update(chunk: Uint8Array): void;
  /** The checksum as the manifest writes it (lowercase hex); `undefined` for NONE. Call once. */
  digest(): string | undefined;
}

const NODE_HASH: Record<'SHA224' | 'SHA256' | 'SHA384' | 'SHA512', string> = {
  SHA224: 'sha224',
  SHA256: 'sha256',
  SHA384: 'sha384',
  SHA512: 'sha512',
};

/**
 * Creates an incremental hasher producing the manifest's hex form for `algorithm` (checksum_helper.c): CRC32C as
 * the little-endian bytes of the pg_crc32c, the SHA-2 family as their plain hex digests.
 */
export function createFileChecksummer(algorithm: ManifestChecksumAlgorithm): FileChecksummer {
  if (algorithm === 'NONE') {
    return { algorithm, update: () => undefined, digest: () => undefined };
  }
  if (algorithm === 'CRC32C') {
    let state = crc32cInit();
    return {
      algorithm,
      update: (chunk) => {
        state = crc32cUpdate(state, chunk);
      },
      digest: () => crc32cManifestHex(crc32cFinal(state)),
    };
  }
  const hash: Hash = createHash(NODE_HASH[algorithm]);
  return {
    algorithm,
    update: (chunk) => {
      hash.update(chunk);
    },
    digest: () => hash.digest('hex'),
  };
}
