/**
 * Stream codecs by name for client-side compression of archives and for reading server-side compressed ones
 * (BASE_BACKUP COMPRESSION: gzip -> `.gz`, lz4 -> `.lz4` LZ4 frame, zstd -> `.zst` frame; basebackup_gzip.c,
 * basebackup_lz4.c, basebackup_zstd.c). Choices and measurements: docs/design-compression.md.
 *
 * - gzip: node:zlib.
 * - zstd: compression by node:zlib's zstd when the runtime has it (Node >= 22.15 / 23.8), else the `zstd-napi`
 *   binding (streaming Transform over libzstd; built from its vendored sources at install when no prebuilt binary can
 *   be fetched). Decompression prefers zstd-napi, which reports a truncated frame; node:zlib's decoder does not.
 * - lz4: decompression by our own streaming frame decoder (lz4-frame.ts, pure TS). Compression through `lz4-napi`
 *   (prebuilt binary shipped as an npm package; whole-buffer API only), one LZ4 frame per `lz4ChunkBytes` of
 *   input: concatenated frames are a valid LZ4 stream that `lz4 -d` and our decoder read.
 *
 * Decompression failures (corrupt or truncated data) surface as IntegrityError `INTEGRITY_ARCHIVE_INVALID`; a codec
 * that cannot be loaded as ConfigError `CONFIG_UNSUPPORTED_COMPRESSION`.
 */
import { createRequire } from 'node:module';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { ConfigError, IntegrityError, PgarkError } from '../errors';
import { Lz4FrameDecoder } from './lz4-frame';

export type CompressionName = 'none' | 'gzip' | 'lz4' | 'zstd';

export const COMPRESSION_NAMES: readonly CompressionName[] = ['none', 'gzip', 'lz4', 'zstd'];

export interface CompressOptions {
  /** Codec level: gzip 1-9 (default 6), lz4 ignored (lz4-napi has one fast level), zstd 1-19 (default 3). */
  level?: number;
  /** lz4 only: input bytes per LZ4 frame. @default 4 MiB */
  lz4ChunkBytes?: number;
}

/** The file-name suffix PostgreSQL gives a compressed archive (pg_basebackup / pg_verifybackup). */
export function compressionExtension(name: CompressionName): '' | '.gz' | '.lz4' | '.zst' {
  return name === 'gzip' ? '.gz' : name === 'lz4' ? '.lz4' : name === 'zstd' ? '.zst' : '';
}

/** The codec of an archive file name: `base.tar.gz`/`.tgz` -> gzip, `.lz4`, `.zst`, else none. */
export function compressionFromFileName(fileName: string): CompressionName {
  if (fileName.endsWith('.gz') || fileName.endsWith('.tgz')) return 'gzip';
  if (fileName.endsWith('.lz4')) return 'lz4';
  if (fileName.endsWith('.zst')) return 'zstd';
  return 'none';
}

// ---------------------------------------------------------------------------------------------
// Optional native modules, loaded on first use.

// ESM build: import.meta.url; the CJS build: __filename.
// Not `typeof require`: an ESM bundle (esbuild, tsup) turns `require` into a shim that throws
// "Dynamic require ... is not supported"; createRequire works in both builds.
const requireModule: NodeRequire = createRequire((import.meta as { url?: string }).url ?? __filename);

interface ZstdNapi {
  CompressStream: new (p?: { compressionLevel?: number }) => Transform;
  DecompressStream: new () => Transform;
}
interface Lz4Napi {
  compressFrame(data: Uint8Array): Promise<Buffer>;
}

let zstdNapi: ZstdNapi | undefined;
let lz4Napi: Lz4Napi | undefined;

function loadOptional<T>(name: string, what: string): T {
  try {
    return requireModule(name) as T;
  } catch (e) {
    throw new ConfigError(
      'CONFIG_UNSUPPORTED_COMPRESSION',
      `${what} is not available: the ${name} package could not be loaded`,
      {
        hint: `install ${name} (it needs a prebuilt binary or a C toolchain), or use gzip`,
        cause: e,
      },
    );
  }
}

type ZlibWithZstd = typeof zlib & {
  createZstdCompress?: (o?: { params?: Record<number, number> }) => Transform;
  createZstdDecompress?: () => Transform;
  constants: typeof zlib.constants & { ZSTD_c_compressionLevel?: number };
};
const zz = zlib as ZlibWithZstd;

/** Which implementation each codec uses on this runtime (for logs and the design doc). */
export function compressionImplementations(): Record<Exclude<CompressionName, 'none'>, string> {
  return {
    gzip: 'node:zlib',
    zstd: typeof zz.createZstdCompress === 'function' ? 'node:zlib' : 'zstd-napi',
    lz4: 'lz4-napi (compress) + pgark lz4-frame (decompress)',
  };
}

// ---------------------------------------------------------------------------------------------

function archiveInvalid(name: CompressionName, cause: unknown): IntegrityError {
  return new IntegrityError('INTEGRITY_ARCHIVE_INVALID', `${name} stream is corrupt or truncated`, {
    hint: 'the compressed archive is damaged, cut short, or not in this format',
    cause,
  });
}

/** Makes every error a stream ends with an IntegrityError (zlib/zstd report corrupt input as plain Errors). */
function withIntegrityErrors<T extends Transform>(stream: T, name: CompressionName): T {
  const orig = stream._destroy.bind(stream);
  stream._destroy = (err: Error | null, cb: (e?: Error | null) => void): void => {
    orig(err, (e?: Error | null) => {
      const final = e ?? err;
      cb(final && !(final instanceof PgarkError) ? archiveInvalid(name, final) : final);
    });
  };
  return stream;
}

/** Compresses lz4 as a sequence of frames, `chunkBytes` of input each, through lz4-napi (off the main thread). */
class Lz4FrameEncoder extends Transform {
  private parts: Buffer[] = [];
  private size = 0;
  constructor(
    private readonly lz4: Lz4Napi,
    private readonly chunkBytes: number,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size < this.chunkBytes) return cb();
    this.emitFrame().then(() => cb(), cb);
  }
  override _flush(cb: TransformCallback): void {
    // An empty input still yields one (empty) frame, so the output is a valid lz4 stream.
    if (this.size === 0 && this.pushedFrames > 0) return cb();
    this.emitFrame().then(() => cb(), cb);
  }
  private pushedFrames = 0;
  private async emitFrame(): Promise<void> {
    const input = Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    this.push(await this.lz4.compressFrame(input));
    this.pushedFrames++;
  }
}

/**
 * A compressing Transform for `name` ('none' gives a PassThrough).
 * @throws ConfigError `CONFIG_UNSUPPORTED_COMPRESSION` when the codec's binding cannot be loaded.
 */
export function createCompressStream(name: CompressionName, options: CompressOptions = {}): Transform {
  switch (name) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      return zlib.createGzip(options.level === undefined ? {} : { level: options.level });
    case 'zstd': {
      const level = options.level ?? 3;
      if (typeof zz.createZstdCompress === 'function' && zz.constants.ZSTD_c_compressionLevel !== undefined) {
        return zz.createZstdCompress({ params: { [zz.constants.ZSTD_c_compressionLevel]: level } });
      }
      zstdNapi ??= loadOptional<ZstdNapi>('zstd-napi', 'zstd compression');
      return new zstdNapi.CompressStream({ compressionLevel: level });
    }
    case 'lz4':
      lz4Napi ??= loadOptional<Lz4Napi>('lz4-napi', 'lz4 compression');
      return new Lz4FrameEncoder(lz4Napi, options.lz4ChunkBytes ?? 4 * 1024 * 1024);
    default:
      throw new ConfigError('CONFIG_UNSUPPORTED_COMPRESSION', `unknown compression "${String(name)}"`, {
        hint: `use one of ${COMPRESSION_NAMES.join(', ')}`,
      });
  }
}

/**
 * A decompressing Transform for `name` ('none' gives a PassThrough). Reads what the server writes for
 * BASE_BACKUP COMPRESSION gzip/lz4/zstd and what `createCompressStream` writes.
 * Corrupt or truncated input fails the stream with IntegrityError `INTEGRITY_ARCHIVE_INVALID`.
 * @throws ConfigError `CONFIG_UNSUPPORTED_COMPRESSION` when zstd is needed but neither node:zlib nor zstd-napi has it.
 */
export function createDecompressStream(name: CompressionName): Transform {
  switch (name) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      return withIntegrityErrors(zlib.createGunzip(), name);
    case 'zstd': {
      // zstd-napi first: node:zlib's zstd decoder (Node 22/24) ends without an error on a truncated
      // frame (seen in CI), which would let a cut-off archive pass as whole. zstd-napi reports it.
      try {
        zstdNapi ??= loadOptional<ZstdNapi>('zstd-napi', 'zstd decompression');
        return withIntegrityErrors(new zstdNapi.DecompressStream(), name);
      } catch (e) {
        if (typeof zz.createZstdDecompress !== 'function') throw e;
        return withIntegrityErrors(zz.createZstdDecompress(), name);
      }
    }
    case 'lz4':
      return new Lz4FrameDecoder();
    default:
      throw new ConfigError('CONFIG_UNSUPPORTED_COMPRESSION', `unknown compression "${String(name)}"`, {
        hint: `use one of ${COMPRESSION_NAMES.join(', ')}`,
      });
  }
}
