/**
 * Oracle for WAL archiver tests: every archived segment is contiguous and byte-identical to the
 * server's own pg_wal file (read while it is still there), and the partial tail is a prefix of it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readArchivedPartial } from '../../src/archive/wal-partial';
import { parseRepositoryKey, walPrefix } from '../../src/archive/repo-layout';
import { parseWalFileName, segmentStartLsn, type Lsn } from '../../src/lsn';
import type { Storage } from '../../src/storage/storage';
import { createHash } from 'node:crypto';

export interface ArchiveCheck {
  segments: string[];
  partial?: string;
  /** End of the contiguous archived WAL on the newest timeline (complete segments + partial prefix). */
  durableEnd: Lsn;
  /** Segments compared byte for byte with pg_wal (some may be gone already). */
  compared: number;
  mismatches: string[];
  gaps: string[];
}

async function readAll(storage: Storage, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export async function checkArchive(
  storage: Storage,
  stanza: string,
  pgWalDir: string,
  timeline: number,
  segSize = 16 * 1024 * 1024,
): Promise<ArchiveCheck> {
  const segs: string[] = [];
  const partials = new Set<string>();
  for await (const o of storage.list(walPrefix(stanza))) {
    const p = parseRepositoryKey(o.key);
    if (!p || !('timeline' in p) || p.timeline !== timeline) continue;
    if (p.kind === 'wal-segment') segs.push(p.walName);
    if (p.kind === 'wal-partial' || p.kind === 'wal-partial-chunk' || p.kind === 'wal-partial-padded')
      partials.add(p.walName);
  }
  segs.sort();
  const out: ArchiveCheck = { segments: segs, durableEnd: 0n, compared: 0, mismatches: [], gaps: [] };
  let prev: bigint | undefined;
  for (const name of segs) {
    const { segno } = parseWalFileName(name, segSize);
    if (prev !== undefined && segno !== prev + 1n) out.gaps.push(name);
    prev = segno;
    const onDisk = join(pgWalDir, name);
    if (existsSync(onDisk)) {
      const a = createHash('sha256').update(readFileSync(onDisk)).digest('hex');
      const b = createHash('sha256')
        .update(await readAll(storage, `stanzas/${stanza}/wal/${name.substring(0, 8)}/${name}`))
        .digest('hex');
      out.compared++;
      if (a !== b) out.mismatches.push(name);
    }
    out.durableEnd = segmentStartLsn(segno + 1n, segSize);
  }
  // The tail: segments held as partial objects only, in order. In synchronous mode a complete
  // segment may be durable as chunks while its upload under its own name runs in the background.
  const tail = [...partials].filter((n) => !segs.includes(n)).sort();
  for (const [index, name] of tail.entries()) {
    const { segno } = parseWalFileName(name, segSize);
    if (prev !== undefined && segno < prev + 1n) continue; // an older leftover
    if (prev !== undefined && segno !== prev + 1n) out.gaps.push(name);
    prev = segno;
    out.partial = name;
    let bytes: Buffer;
    try {
      const read = await readArchivedPartial(storage, stanza, name, segSize);
      // A `.partial.padded` file followed by a newer segment is whole (the writer opens a segment's
      // file only once the previous one is wholly durable), even if its last bytes are zeros.
      bytes =
        read.paddedKey && index < tail.length - 1
          ? Buffer.concat([read.bytes, Buffer.alloc(segSize - read.bytes.length)])
          : read.bytes;
    } catch (e) {
      if ((e as { code?: string }).code !== 'STORAGE_NOT_FOUND') throw e;
      bytes = Buffer.alloc(0);
    }
    // A running archiver may have completed the segment (and deleted its chunks) since the listing.
    if (bytes.length === 0 && (await storage.head(`stanzas/${stanza}/wal/${name.substring(0, 8)}/${name}`))) {
      out.segments.push(name);
      delete out.partial;
      out.durableEnd = segmentStartLsn(segno + 1n, segSize);
      continue;
    }
    const onDisk = join(pgWalDir, name);
    if (existsSync(onDisk)) {
      const disk = readFileSync(onDisk);
      out.compared++;
      if (!disk.subarray(0, bytes.length).equals(bytes)) out.mismatches.push(`${name}.partial`);
    }
    out.durableEnd = segmentStartLsn(segno, segSize) + BigInt(bytes.length);
    if (bytes.length < segSize) break;
  }
  return out;
}
