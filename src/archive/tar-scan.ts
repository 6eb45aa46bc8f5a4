/**
 * Streaming tar reading for base-backup archives, and a streaming check of an archive against its manifest.
 *
 * Built on tar-stream's `extract` (mafintosh/tar-stream). What PostgreSQL writes (src/port/tar.c tarCreateHeader,
 * src/backend/backup/basebackup.c): POSIX ustar, names <= 99 bytes, no PAX / GNU longname, sizes >= 8 GiB in the GNU
 * base-256 form. tar-stream decodes base-256 (exact up to 2^53 bytes, far beyond any file); names are normalised
 * here because the server writes the synthetic `./pg_wal/archive_status` (and 17+ `./pg_wal/summaries`) with a
 * leading `./` and directories with a trailing `/`. PG13/14 send archives without the 1024-byte terminator:
 * tar-stream accepts an input that ends at a member boundary, and `tarTerminator()` is there for writers.
 *
 * Backpressure: one member at a time. The next header is not parsed until the current member's body has been
 * read to its end (tar-stream holds its write callback meanwhile, so the input is not pulled either). A body the
 * consumer did not read is drained when the next member is asked for. Memory is bounded by stream high-water
 * marks, never by member size.
 */
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createRequire } from 'node:module';
import type * as TarStream from 'tar-stream';
import { AbortError, IntegrityError, PgarkError } from '../errors';
import type { BackupManifest, ManifestFile } from '../verify/manifest';
import { createFileChecksummer } from '../verify/manifest';

// tar-stream is required on first use, not when the library is imported (start-up cost of every
// archive-push/archive-fetch process). ESM build: import.meta.url; the CJS build: __filename.
// Not `typeof require`: an ESM bundle (esbuild, tsup) turns `require` into a shim that throws
// "Dynamic require ... is not supported"; createRequire works in both builds.
const requireModule: NodeRequire = createRequire((import.meta as { url?: string }).url ?? __filename);
const tarExtract = (): ReturnType<typeof TarStream.extract> =>
  (requireModule('tar-stream') as typeof TarStream).extract();

export type TarMemberType = 'file' | 'directory' | 'symlink' | 'link' | 'other';

export interface TarMember {
  /** Normalised: no leading `./`, no trailing `/`. */
  name: string;
  /** The name exactly as in the header. */
  rawName: string;
  type: TarMemberType;
  size: number;
  mode: number;
  mtime: Date;
  /** Symlink / hard link target, else undefined. */
  linkname: string | undefined;
  /** The member's data. Read it to its end (or leave it: it is drained when the next member is requested). */
  body: Readable;
}

/** The two 512-byte zero blocks that end a tar archive (PG13/14 do not send them). */
export function tarTerminator(): Buffer {
  return Buffer.alloc(1024);
}

/** `./pg_wal/archive_status/` -> `pg_wal/archive_status`. */
export function normaliseTarName(raw: string): string {
  let n = raw;
  while (n.startsWith('./')) n = n.slice(2);
  while (n.length > 1 && n.endsWith('/')) n = n.slice(0, -1);
  return n;
}

function memberType(t: string | null | undefined): TarMemberType {
  return t === 'file' || t === 'contiguous-file'
    ? 'file'
    : t === 'directory' || t === 'symlink' || t === 'link'
      ? (t as TarMemberType)
      : 'other';
}

function archiveInvalid(message: string, cause?: unknown): IntegrityError {
  return new IntegrityError('INTEGRITY_ARCHIVE_INVALID', message, {
    hint: 'the archive is truncated or damaged; for a compressed archive check that the right codec is used',
    cause,
  });
}

export interface ScanTarOptions {
  signal?: AbortSignal;
}

/**
 * Reads a tar stream member by member.
 *
 * Errors of the input stream itself are rethrown as they are (a PgarkError stays what it is); malformed tar
 * (bad header checksum, a member cut short) becomes IntegrityError `INTEGRITY_ARCHIVE_INVALID`.
 * Breaking out of the loop destroys the input.
 *
 * @example
 *   for await (const m of scanTar(createReadStream('base.tar'))) {
 *     if (m.name === 'backup_label') label = parseBackupLabel(await text(m.body));
 *   }
 */
export async function* scanTar(
  input: Readable | AsyncIterable<Uint8Array>,
  options: ScanTarOptions = {},
): AsyncGenerator<TarMember, void, undefined> {
  const source = input instanceof Readable ? input : Readable.from(input, { objectMode: false });
  const ex = tarExtract();
  let inputError: unknown;
  source.on('error', (e) => {
    inputError = e;
    ex.destroy(e);
  });
  const onAbort = (): void => {
    source.destroy(new AbortError('tar scan aborted', { cause: options.signal?.reason }));
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  source.pipe(ex);

  let extractError: unknown;
  ex.on('error', (e: unknown) => {
    extractError ??= e;
  });
  const mapError = (e: unknown): unknown => {
    if (options.signal?.aborted) return new AbortError('tar scan aborted', { cause: options.signal.reason });
    if (inputError !== undefined) return inputError;
    if (e instanceof PgarkError) return e;
    const why = extractError ?? e;
    const text = why instanceof Error ? why.message.toLowerCase() : 'unknown error';
    return archiveInvalid(`tar archive is malformed: ${text}`, why);
  };

  let done = false;
  let body: Readable | undefined;
  try {
    for await (const entry of ex) {
      const h = entry.header;
      // tar-stream hands out streamx streams; wrap each body in a Node Readable (pulled on demand, so
      // backpressure is kept) whose errors carry our codes.
      body = Readable.from(
        (async function* () {
          try {
            for await (const chunk of entry as AsyncIterable<Buffer>) yield chunk;
          } catch (e) {
            throw mapError(e);
          }
        })(),
        { objectMode: false },
      );
      const member: TarMember = {
        name: normaliseTarName(h.name),
        rawName: h.name,
        type: memberType(h.type),
        size: h.size ?? 0,
        mode: h.mode ?? 0,
        mtime: h.mtime ?? new Date(0),
        linkname: h.linkname ?? undefined,
        body,
      };
      yield member;
      if (!body.readableEnded) {
        body.resume();
        await finished(body);
      }
    }
    done = true;
  } catch (e) {
    throw mapError(e);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (!done) {
      source.unpipe(ex);
      source.destroy();
      ex.destroy();
      body?.destroy();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming verification against a manifest (pg_verifybackup's checks, one archive at a time)

/** Paths pg_verifybackup ignores (pg_verifybackup.c main: backup_manifest, pg_wal, postgresql.auto.conf, ...). */
export const VERIFY_IGNORED_PATHS: readonly string[] = [
  'backup_manifest',
  'pg_wal',
  'postgresql.auto.conf',
  'recovery.signal',
  'standby.signal',
];

function isIgnored(path: string, ignore: readonly string[]): boolean {
  // should_ignore_relpath: the path equals an ignored one or lies below it.
  return ignore.some((p) => path === p || path.startsWith(p + '/'));
}

export interface VerifyArchiveOptions {
  /** Set for a tablespace archive `<oid>.tar`: member names get the `pg_tblspc/<oid>/` prefix the manifest uses. */
  tablespaceOid?: number;
  /** Extra ignored paths (pg_verifybackup -i). */
  ignore?: readonly string[];
  /** Skip checksum computation (pg_verifybackup -s); sizes are still checked. @default false */
  skipChecksums?: boolean;
  signal?: AbortSignal;
}

export interface ArchiveFileMismatch {
  path: string;
  expected: string;
  actual: string;
}

export interface ArchiveVerifyReport {
  /** True when nothing below was found. */
  ok: boolean;
  members: number;
  filesChecked: number;
  bytesRead: number;
  /** Regular files in the archive that the manifest does not list. */
  notInManifest: string[];
  sizeMismatches: ArchiveFileMismatch[];
  checksumMismatches: ArchiveFileMismatch[];
  /** Manifest files that belong to this archive but were not in it. */
  missing: string[];
}

const TBLSPC_RE = /^pg_tblspc\/(\d+)\//;

/**
 * Checks one archive (base.tar or `<oid>.tar`, already decompressed) against the backup's manifest in a single
 * streaming pass, as pg_verifybackup does for a plain backup: files not in the manifest, size mismatches, checksum
 * mismatches (only when the size matched), and manifest files missing from this archive. "This archive" means: for
 * a tablespace archive, the manifest entries under `pg_tblspc/<oid>/`; for the base archive, every entry not
 * under `pg_tblspc/<oid>/` (plus in-place tablespaces found in the base archive itself). Ignored paths are
 * neither reported as extra nor as missing.
 *
 * Returns a report; throws only for unreadable input (INTEGRITY_ARCHIVE_INVALID, or the input's own error).
 */
export async function verifyArchiveAgainstManifest(
  archive: Readable | AsyncIterable<Uint8Array>,
  manifest: BackupManifest,
  options: VerifyArchiveOptions = {},
): Promise<ArchiveVerifyReport> {
  const prefix = options.tablespaceOid !== undefined ? `pg_tblspc/${options.tablespaceOid}/` : '';
  const ignore = [...VERIFY_IGNORED_PATHS, ...(options.ignore ?? [])];
  const report: ArchiveVerifyReport = {
    ok: false,
    members: 0,
    filesChecked: 0,
    bytesRead: 0,
    notInManifest: [],
    sizeMismatches: [],
    checksumMismatches: [],
    missing: [],
  };
  const seen = new Set<string>();
  const inPlaceOids = new Set<string>();

  const scanOptions: ScanTarOptions = {};
  if (options.signal) scanOptions.signal = options.signal;
  for await (const m of scanTar(archive, scanOptions)) {
    report.members++;
    if (m.type !== 'file') continue;
    const path = prefix + m.name;
    if (!prefix) {
      const t = TBLSPC_RE.exec(path);
      if (t) inPlaceOids.add(t[1]!);
    }
    if (isIgnored(path, ignore)) continue;
    const entry: ManifestFile | undefined = manifest.byPath.get(path);
    if (!entry) {
      report.notInManifest.push(path);
      continue;
    }
    seen.add(path);
    report.filesChecked++;
    const checksummer =
      m.size === entry.size && !options.skipChecksums
        ? createFileChecksummer(entry.checksumAlgorithm)
        : undefined;
    for await (const chunk of m.body as AsyncIterable<Buffer>) {
      report.bytesRead += chunk.length;
      checksummer?.update(chunk);
    }
    if (m.size !== entry.size) {
      report.sizeMismatches.push({ path, expected: String(entry.size), actual: String(m.size) });
      continue;
    }
    const actual = checksummer?.digest();
    if (actual !== undefined && entry.checksum !== undefined && actual !== entry.checksum) {
      report.checksumMismatches.push({ path, expected: entry.checksum, actual });
    }
  }

  for (const f of manifest.files) {
    if (seen.has(f.path) || isIgnored(f.path, ignore)) continue;
    const t = TBLSPC_RE.exec(f.path);
    const belongs = prefix ? f.path.startsWith(prefix) : !t || inPlaceOids.has(t[1]!);
    if (belongs) report.missing.push(f.path);
  }
  report.ok =
    report.notInManifest.length === 0 &&
    report.sizeMismatches.length === 0 &&
    report.checksumMismatches.length === 0 &&
    report.missing.length === 0;
  return report;
}

// ---------------------------------------------------------------------------------------------
// A synchronous, push-style tar parser for the restore's hot path (no streams per member)

/** A member's header as TarChunkParser reports it (the same fields as TarMember, without the body). */
export type TarHeaderInfo = Omit<TarMember, 'body'>;

/** What `TarChunkParser.push` reports, in archive order. `data` slices share memory with the pushed chunk. */
export type TarParseEvent =
  { kind: 'header'; header: TarHeaderInfo } | { kind: 'data'; data: Buffer } | { kind: 'member-end' };

const BLOCK = 512;

function cString(block: Buffer, start: number, length: number): string {
  const end = block.indexOf(0, start);
  return block.toString('utf8', start, end < 0 || end > start + length ? start + length : end);
}

function octal(block: Buffer, start: number, length: number, what: string): number {
  // GNU base-256 (tar.c tarCreateHeader writes sizes >= 8 GiB this way): high bit of the first byte set.
  if ((block[start]! & 0x80) !== 0) {
    let v = block[start]! & 0x7f;
    for (let i = start + 1; i < start + length; i++) v = v * 256 + block[i]!;
    if (!Number.isSafeInteger(v)) throw archiveInvalid(`tar header ${what} is too large`);
    return v;
  }
  const text = block
    .toString('latin1', start, start + length)
    .replace(/[\0 ]+$/, '')
    .trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw archiveInvalid(`tar header ${what} is not an octal number`);
  return parseInt(text, 8);
}

function headerChecksumOk(block: Buffer): boolean {
  const recorded = octal(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return recorded === unsigned || recorded === signed; // old tars summed signed chars
}

function typeOf(flag: number): TarMemberType {
  switch (flag) {
    case 0: // '\0': pre-POSIX regular file
    case 0x30: // '0'
    case 0x37: // '7' contiguous file
      return 'file';
    case 0x35:
      return 'directory';
    case 0x32:
      return 'symlink';
    case 0x31:
      return 'link';
    default:
      return 'other';
  }
}

/** pax extended header records `<len> <key>=<value>\n` (POSIX.1-2001); only path, linkpath and size matter here. */
function parsePax(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  while (off < body.length) {
    const sp = body.indexOf(0x20, off);
    const len = sp < 0 ? NaN : Number(body.toString('latin1', off, sp));
    if (!Number.isSafeInteger(len) || len <= 0 || off + len > body.length) {
      throw archiveInvalid('tar pax extended header is malformed');
    }
    const rec = body.toString('utf8', sp + 1, off + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    off += len;
  }
  return out;
}

/**
 * Parses a tar stream pushed in chunks of any size, synchronously: each `push` appends to `out` the
 * headers, body slices (sub-arrays of the pushed chunk, never copies) and member ends it completes.
 * No promise, stream or timer per member or per chunk: the caller decides how to write and when to
 * wait. Same reading rules as scanTar: ustar (with its prefix field), GNU base-256 sizes, GNU
 * longname/longlink and pax path/linkpath/size records; the archive ends at a zero block or at a
 * member boundary when the input ends (PG13/14 send no terminator). Malformed or truncated input is
 * IntegrityError INTEGRITY_ARCHIVE_INVALID.
 */
export class TarChunkParser {
  private readonly headerBuf = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Bytes of the current member's body still to come. */
  private bodyLeft = 0;
  /** Padding bytes after the body still to skip. */
  private padLeft = 0;
  /** Collecting the body of a GNU longname/longlink or pax header (not a member of its own). */
  private extended: { flag: number; parts: Buffer[]; size: number } | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;
  private pax: Map<string, string> | undefined;
  private inMember = false;
  private ended = false;

  /** True once the end-of-archive zero block was read (anything after it is ignored). */
  get finished(): boolean {
    return this.ended;
  }

  push(chunk: Buffer, out: TarParseEvent[]): void {
    let off = 0;
    const n = chunk.length;
    while (off < n && !this.ended) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, n - off);
        const part = chunk.subarray(off, off + take);
        if (this.extended) this.extended.parts.push(Buffer.from(part));
        else out.push({ kind: 'data', data: part });
        this.bodyLeft -= take;
        off += take;
        if (this.bodyLeft === 0) this.endBody(out);
        continue;
      }
      if (this.padLeft > 0) {
        const skip = Math.min(this.padLeft, n - off);
        this.padLeft -= skip;
        off += skip;
        continue;
      }
      // A header: whole in this chunk (the common case) or assembled across chunks.
      let block: Buffer;
      if (this.headerFill === 0 && n - off >= BLOCK) {
        block = chunk.subarray(off, off + BLOCK);
        off += BLOCK;
      } else {
        const take = Math.min(BLOCK - this.headerFill, n - off);
        chunk.copy(this.headerBuf, this.headerFill, off, off + take);
        this.headerFill += take;
        off += take;
        if (this.headerFill < BLOCK) return;
        this.headerFill = 0;
        block = this.headerBuf;
      }
      this.header(block, out);
    }
  }

  /** The input ended: checks that it ended at a member boundary. */
  end(): void {
    if (this.ended) return;
    if (this.bodyLeft > 0 || this.headerFill > 0 || this.extended || this.inMember) {
      throw archiveInvalid('tar archive is malformed: unexpected end of data');
    }
  }

  private header(block: Buffer, out: TarParseEvent[]): void {
    if (block.every((b) => b === 0)) {
      if (this.extended || this.longName !== undefined || this.pax) {
        throw archiveInvalid('tar archive is malformed: an extended header is not followed by a member');
      }
      this.ended = true;
      return;
    }
    if (!headerChecksumOk(block)) throw archiveInvalid('tar archive is malformed: invalid tar header');
    const flag = block[156]!;
    let size = octal(block, 124, 12, 'size');
    // 'L'/'K' (GNU long name/link), 'x' (pax, for the next member), 'g' (pax global: ignored).
    if (flag === 0x4c || flag === 0x4b || flag === 0x78 || flag === 0x67) {
      this.extended = { flag, parts: [], size };
      this.startBody(size, out);
      return;
    }
    let name = cString(block, 0, 100);
    const magic = block.toString('latin1', 257, 262);
    if (magic === 'ustar' && block[345] !== 0 && block.toString('latin1', 257, 263) === 'ustar\0') {
      name = `${cString(block, 345, 155)}/${name}`; // POSIX prefix (not GNU's, which uses that space for times)
    }
    let linkname: string | undefined = cString(block, 157, 100) || undefined;
    if (this.longName !== undefined) name = this.longName;
    if (this.longLink !== undefined) linkname = this.longLink;
    if (this.pax) {
      name = this.pax.get('path') ?? name;
      linkname = this.pax.get('linkpath') ?? linkname;
      const s = this.pax.get('size');
      if (s !== undefined) {
        if (!/^\d+$/.test(s)) throw archiveInvalid('tar pax size is not a number');
        size = Number(s);
      }
    }
    this.longName = this.longLink = this.pax = undefined;
    const type = typeOf(flag);
    // Only regular files carry data (links and directories have size 0 in practice; honour it anyway).
    const header: TarHeaderInfo = {
      name: normaliseTarName(name),
      rawName: name,
      type,
      size,
      mode: octal(block, 100, 8, 'mode'),
      mtime: new Date(octal(block, 136, 12, 'mtime') * 1000),
      linkname,
    };
    out.push({ kind: 'header', header });
    this.inMember = true;
    this.startBody(type === 'directory' || type === 'symlink' || type === 'link' ? 0 : size, out);
  }

  private startBody(size: number, out: TarParseEvent[]): void {
    this.bodyLeft = size;
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.endBody(out);
  }

  private endBody(out: TarParseEvent[]): void {
    const ext = this.extended;
    if (ext) {
      this.extended = undefined;
      const body = Buffer.concat(ext.parts);
      if (ext.flag === 0x4c) this.longName = cString(body, 0, body.length);
      else if (ext.flag === 0x4b) this.longLink = cString(body, 0, body.length);
      else if (ext.flag === 0x78) this.pax = parsePax(body);
      return;
    }
    this.inMember = false;
    out.push({ kind: 'member-end' });
  }
}
