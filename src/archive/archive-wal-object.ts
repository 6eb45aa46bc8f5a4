/**
 * Finding and reading one archived WAL object for archive-push (duplicate check) and archive-fetch.
 * A segment may be stored with a compression suffix (repo-layout.ts), so it is looked up by listing
 * its key prefix (one request) rather than by a head of one guessed key.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { CallOptions, ObjectInfo, Storage } from '../storage/storage';
import { createDecompressStream, type CompressionName } from './compression';
import { parseRepositoryKey, walSegmentKey, type ArchiveCompression } from './repo-layout';

export interface WalSegmentObject extends ObjectInfo {
  walName: string;
  compression?: ArchiveCompression;
}

/**
 * The archived copy of a whole segment, or undefined. When several exist (an uncompressed and a
 * compressed one, written by different archivers) the uncompressed one wins: it needs no decoder.
 */
export async function findWalSegmentObject(
  storage: Storage,
  stanza: string,
  walName: string,
  options: CallOptions = {},
): Promise<WalSegmentObject | undefined> {
  const prefix = walSegmentKey(stanza, walName);
  let best: WalSegmentObject | undefined;
  for await (const obj of storage.list(prefix, { signal: options.signal })) {
    const parsed = parseRepositoryKey(obj.key);
    if (parsed?.kind !== 'wal-segment' || parsed.stanza !== stanza || parsed.walName !== walName) continue;
    const candidate: WalSegmentObject = { ...obj, walName };
    if (parsed.compression) candidate.compression = parsed.compression;
    if (!best || (best.compression && !candidate.compression)) best = candidate;
  }
  return best;
}

const CODEC_OF_SUFFIX: Record<ArchiveCompression, CompressionName> = { gz: 'gzip', lz4: 'lz4', zst: 'zstd' };

/**
 * Opens an archived object's bytes as PostgreSQL wrote them (decompressed with ./compression).
 * Corrupt compressed data fails the stream with IntegrityError INTEGRITY_ARCHIVE_INVALID.
 * @throws ConfigError CONFIG_UNSUPPORTED_COMPRESSION when the codec is not available on this
 *   runtime; StorageError from the store (STORAGE_NOT_FOUND when it vanished).
 */
export async function openWalObject(
  storage: Storage,
  key: string,
  compression: ArchiveCompression | undefined,
  options: CallOptions = {},
): Promise<Readable> {
  // Create the decoder first: an unavailable codec fails before any request.
  const decoder =
    compression === undefined ? undefined : createDecompressStream(CODEC_OF_SUFFIX[compression]);
  const raw = await storage.get(key, { signal: options.signal });
  if (!decoder) return raw;
  raw.on('error', (e) => decoder.destroy(e));
  decoder.on('close', () => raw.destroy());
  return raw.pipe(decoder);
}

/** sha256 (lower-case hex) of a stream's bytes, consuming it. */
export async function sha256OfStream(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}
