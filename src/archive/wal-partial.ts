/**
 * Durable partial WAL segments in a repository: the newest, incomplete segment is kept as
 *
 * - `<segment>.partial`: bytes [0, n) of the segment (written on stop, at a timeline end, or when
 *   chunks are compacted), and
 * - `<segment>.partial.<offset 8 hex>`: sequenced chunks, each holding the bytes that start at
 *   that byte offset of the segment (the layout's "seq" is the chunk's start offset).
 *
 * Objects cannot be appended to (S3), so the archiver makes new WAL durable in small steps by
 * writing one new chunk object per flush; a crash leaves whole chunks only (a put is visible whole
 * or not at all). The durable bytes of a segment are the contiguous run from offset 0 over the
 * `.partial` object and the chunks; overlaps carry identical bytes (the same WAL re-streamed).
 * When the segment completes, it is stored under its own name and the partial objects are deleted.
 *
 * On a directory repository the synchronous writer keeps instead `<segment>.partial.padded`: a
 * segment-sized file, zero-filled when created and overwritten in place (one pwrite + fdatasync per
 * flush, as pg_receivewal's pre-padded `.partial`). Its size says nothing about its durable prefix,
 * so a reader takes its WRITTEN EXTENT: everything up to its last non-zero byte (trailing zeros are
 * neutral: a reader pads a partial segment with zeros anyway, and PostgreSQL reads zeros as the end
 * of WAL). Where both forms exist (a crash while one replaced the other) they hold the same WAL;
 * the exact pieces are laid over the padded file. See docs/design-wal.md.
 */
import type { Readable } from 'node:stream';
import { IntegrityError } from '../errors';
import type { Storage } from '../storage/storage';
import { parseRepositoryKey, walPartialKey } from './repo-layout';

export interface PartialPiece {
  key: string;
  /** Start offset within the segment. */
  offset: number;
  size: number;
}

export interface PartialAssemblyPlan {
  /** Pieces to read, in offset order, that together cover [0, durableBytes). */
  pieces: PartialPiece[];
  /** Every partial object of the segment (also those not needed), for deletion after completion. */
  allKeys: string[];
  /** Length of the contiguous durable prefix of the segment (exact pieces only). */
  durableBytes: number;
  /** The segment's `.partial.padded` file, when there is one. */
  paddedKey?: string;
}

/** Pure: which objects make up the durable prefix of a partial segment. */
export function planPartialAssembly(
  objects: readonly { key: string; size: number }[],
  segmentName: string,
): PartialAssemblyPlan {
  const pieces: PartialPiece[] = [];
  const allKeys: string[] = [];
  let paddedKey: string | undefined;
  for (const o of objects) {
    const p = parseRepositoryKey(o.key);
    if (!p || !('walName' in p) || p.walName !== segmentName) continue;
    if (p.kind === 'wal-partial-padded') paddedKey = o.key;
    else if (p.kind === 'wal-partial') pieces.push({ key: o.key, offset: 0, size: o.size });
    else if (p.kind === 'wal-partial-chunk') pieces.push({ key: o.key, offset: p.seq, size: o.size });
    else continue;
    allKeys.push(o.key);
  }
  // Offset order; at equal offsets the larger piece first (it covers the other).
  pieces.sort((a, b) => a.offset - b.offset || b.size - a.size);
  const used: PartialPiece[] = [];
  let end = 0;
  for (const p of pieces) {
    if (p.offset > end) break; // a hole: nothing after it is contiguous with the durable prefix
    if (p.offset + p.size <= end) continue;
    used.push(p);
    end = p.offset + p.size;
  }
  return { pieces: used, allKeys, durableBytes: end, ...(paddedKey ? { paddedKey } : {}) };
}

/** Pure: the written extent of a zero-padded file, i.e. the offset after its last non-zero byte. */
export function writtenExtent(buf: Buffer): number {
  let end = buf.length;
  // Whole 8-byte words first (the zero tail is usually megabytes long).
  while (end >= 8 && buf.readBigUInt64LE(end - 8) === 0n) end -= 8;
  while (end > 0 && buf[end - 1] === 0) end--;
  return end;
}

async function readInto(stream: Readable, target: Buffer, offset: number, key: string): Promise<number> {
  let pos = offset;
  for await (const raw of stream) {
    const chunk = raw as Buffer;
    if (pos + chunk.length > target.length) {
      stream.destroy();
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `partial wal object ${key} extends beyond the segment size`,
        { key },
      );
    }
    chunk.copy(target, pos);
    pos += chunk.length;
  }
  return pos - offset;
}

export interface ArchivedPartial {
  /**
   * The archived prefix of the segment (a view of a segment-sized buffer): the exact pieces, or,
   * when a `.partial.padded` file exists, up to the larger of their end and the file's written
   * extent (then the bytes past `exactBytes` may hold zeros where a write had not reached the disk
   * before a power loss; see docs/design-wal.md).
   */
  bytes: Buffer;
  /** Length of the prefix held by exact pieces (`.partial` and chunks). */
  exactBytes: number;
  /** Every partial object of the segment (the padded file included). */
  keys: string[];
  /** The segment's `.partial.padded` file, when there is one. */
  paddedKey?: string;
}

/**
 * Reads the durable bytes of a partial segment (the `.partial` object and its chunks), for the
 * archiver's restart and for a restore that wants the newest WAL. `into` (segment-sized) avoids an
 * allocation. Returns `bytes` of length 0 when there is nothing.
 */
export async function readArchivedPartial(
  storage: Storage,
  stanza: string,
  segmentName: string,
  segmentSize: number,
  into?: Buffer,
): Promise<ArchivedPartial> {
  const prefix = walPartialKey(stanza, segmentName);
  const objects: { key: string; size: number }[] = [];
  for await (const o of storage.list(prefix)) objects.push({ key: o.key, size: o.size });
  const plan = planPartialAssembly(objects, segmentName);
  const buf = into ?? Buffer.allocUnsafe(segmentSize);
  let extent = 0;
  if (plan.paddedKey) {
    const got = await readInto(await storage.get(plan.paddedKey), buf, 0, plan.paddedKey);
    if (got !== segmentSize) {
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `padded partial wal file ${plan.paddedKey} has ${got} bytes, not the segment size ${segmentSize}`,
        { key: plan.paddedKey },
      );
    }
    extent = writtenExtent(buf);
  }
  for (const p of plan.pieces) {
    const got = await readInto(await storage.get(p.key), buf, p.offset, p.key);
    if (got !== p.size) {
      throw new IntegrityError(
        'INTEGRITY_WAL_INVALID',
        `partial wal object ${p.key} has ${got} bytes, listed ${p.size}`,
        { key: p.key },
      );
    }
  }
  const out: ArchivedPartial = {
    bytes: buf.subarray(0, Math.max(plan.durableBytes, extent)),
    exactBytes: plan.durableBytes,
    keys: plan.allKeys,
  };
  if (plan.paddedKey) out.paddedKey = plan.paddedKey;
  return out;
}
