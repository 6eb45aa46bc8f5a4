/**
 * Cuts a body (a Buffer or a Readable) into parts of the sizes the upload asks for, computing the
 * sha256 and byte count of everything read. A stream is pulled only when the uploader asks for the
 * next part, so at most the parts being uploaded plus the one being filled are in memory.
 *
 * Part buffers of a stream come from a PartBufferPool (s3-part-pool.ts, shared by the puts of one
 * client) and go back to it when the uploader releases a part (once the store has confirmed it, or
 * the part failed for good). Without the pool, every finished part becomes garbage that V8 frees
 * only at its next full GC, and the process's RSS grows well past part size x (queue + 1).
 *
 * A chunk of a stream is released (chunk-release.ts) as soon as its last byte is copied into a part
 * (it was hashed when read), or, for a chunk handed out as a whole part, when that part is released:
 * the producer may then reuse its memory (the base backup's socket read slabs).
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { PartBufferPool } from './s3-part-pool';
import { releaseChunk } from './chunk-release';

export interface Part {
  data: Buffer;
  /**
   * Hands the memory back for reuse; call once the part is no longer needed (sent or failed).
   * Calling it again is harmless.
   */
  release(): void;
}

export interface PartSource {
  /** The next `size` bytes; shorter only at the end of the body, empty once it is exhausted. */
  next(size: number): Promise<Part>;
  /** Bytes handed out so far. */
  readonly bytesRead: number;
  /** sha256 (hex) of everything handed out; call once, after the body is exhausted. */
  digest(): string;
  /** Stops reading (destroys a stream source) after a failure or an abort. */
  destroy(err?: Error): void;
}

const noRelease = (): void => {};

export function bufferPartSource(body: Buffer): PartSource {
  let offset = 0;
  const hash = createHash('sha256').update(body);
  return {
    async next(size) {
      // subarray: parts share the caller's memory, nothing is copied.
      const data = body.subarray(offset, Math.min(body.length, offset + size));
      offset += data.length;
      return { data, release: noRelease };
    },
    get bytesRead() {
      return offset;
    },
    digest: () => hash.digest('hex'),
    destroy() {},
  };
}

export function streamPartSource(body: Readable, pool: PartBufferPool): PartSource {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const hash: Hash = createHash('sha256');
  /** The chunk being cut into parts, and how much of it is already in a part. */
  let current: Buffer | undefined;
  let currentOffset = 0;
  let ended = false;
  let bytesRead = 0;

  async function nextChunk(): Promise<Buffer | undefined> {
    if (current !== undefined) return current;
    if (ended) return undefined;
    const r = await iterator.next();
    if (r.done) {
      ended = true;
      return undefined;
    }
    const chunk = toBuffer(r.value);
    hash.update(chunk);
    current = chunk;
    currentOffset = 0;
    return chunk;
  }

  return {
    async next(size) {
      let out: Buffer | undefined;
      let pooled = false;
      /** The chunk handed out as the part itself (released with the part). */
      let whole: Buffer | undefined;
      let filled = 0;
      try {
        while (filled < size) {
          const chunk = await nextChunk();
          if (chunk === undefined) break;
          const rest = chunk.length - currentOffset;
          if (out === undefined && rest === size) {
            // The rest of a chunk is exactly one part: hand it out without copying.
            out = currentOffset === 0 ? chunk : chunk.subarray(currentOffset);
            whole = chunk;
            current = undefined;
            filled = size;
            break;
          }
          if (out === undefined) {
            out = pool.take(size);
            pooled = true;
          }
          const n = Math.min(size - filled, rest);
          chunk.copy(out, filled, currentOffset, currentOffset + n);
          filled += n;
          currentOffset += n;
          if (currentOffset === chunk.length) {
            // Hashed when read, copied now: never read again.
            current = undefined;
            releaseChunk(chunk);
          }
        }
      } catch (e) {
        // The body failed mid-part: the buffer goes back, not to the garbage.
        if (pooled && out !== undefined) pool.give(out);
        throw e;
      }
      bytesRead += filled;
      if (out === undefined) return { data: Buffer.alloc(0), release: noRelease };
      const buf = out;
      let released = false;
      return {
        data: out.subarray(0, filled),
        release: pooled
          ? () => {
              if (released) return;
              released = true;
              pool.give(buf);
            }
          : whole !== undefined
            ? () => releaseChunk(whole)
            : noRelease,
      };
    },
    get bytesRead() {
      return bytesRead;
    },
    digest: () => hash.digest('hex'),
    destroy(err) {
      if (!body.destroyed) body.destroy(err);
    },
  };
}

function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v);
  const u = v as Uint8Array;
  // A view over the same memory, not a copy.
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
