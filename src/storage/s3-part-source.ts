/**
 * Cuts a body (a Buffer or a Readable) into parts of the sizes the upload asks for, computing the
 * sha256 and byte count of everything read. A stream is pulled only when the uploader asks for the
 * next part, so at most the parts being uploaded plus the one being filled are in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';

export interface PartSource {
  /** The next `size` bytes; shorter only at the end of the body, empty once it is exhausted. */
  next(size: number): Promise<Buffer>;
  /** Bytes handed out so far. */
  readonly bytesRead: number;
  /** sha256 (hex) of everything handed out; call once, after the body is exhausted. */
  digest(): string;
  /** Stops reading (destroys a stream source) after a failure or an abort. */
  destroy(err?: Error): void;
}

export function bufferPartSource(body: Buffer): PartSource {
  let offset = 0;
  const hash = createHash('sha256').update(body);
  return {
    async next(size) {
      // subarray: parts share the caller's memory, nothing is copied.
      const part = body.subarray(offset, Math.min(body.length, offset + size));
      offset += part.length;
      return part;
    },
    get bytesRead() {
      return offset;
    },
    digest: () => hash.digest('hex'),
    destroy() {},
  };
}

export function streamPartSource(body: Readable): PartSource {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const hash: Hash = createHash('sha256');
  let leftover: Buffer | undefined;
  let ended = false;
  let bytesRead = 0;

  async function nextChunk(): Promise<Buffer | undefined> {
    if (leftover !== undefined) {
      const chunk = leftover;
      leftover = undefined;
      return chunk;
    }
    if (ended) return undefined;
    const r = await iterator.next();
    if (r.done) {
      ended = true;
      return undefined;
    }
    const chunk = toBuffer(r.value);
    hash.update(chunk);
    return chunk;
  }

  return {
    async next(size) {
      let out: Buffer | undefined;
      let filled = 0;
      while (filled < size) {
        const chunk = await nextChunk();
        if (chunk === undefined) break;
        if (out === undefined && filled === 0 && chunk.length === size) {
          // A chunk that is exactly one part: hand it out without copying.
          out = chunk;
          filled = size;
          break;
        }
        // Allocated once per part at the part's size: the copy bounds memory to the part size
        // however the producer sized its chunks.
        out ??= Buffer.allocUnsafe(size);
        const n = Math.min(size - filled, chunk.length);
        chunk.copy(out, filled, 0, n);
        filled += n;
        if (n < chunk.length) leftover = chunk.subarray(n);
      }
      bytesRead += filled;
      return out === undefined ? Buffer.alloc(0) : out.subarray(0, filled);
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
