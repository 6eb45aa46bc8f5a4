/**
 * Splits a backend byte stream into whole messages (`Byte1 code, Int32 length, body`).
 *
 * Pull model: `push(chunk)` hands over bytes, `next()` returns one whole message or undefined when
 * more bytes are needed. The framer never reads ahead of what the caller pulls, so a caller that
 * stops pulling (and pauses its socket) bounds memory to the chunks already pushed plus at most one
 * partially assembled message.
 *
 * Memory and aliasing: a body that lies wholly inside one pushed chunk is returned as a
 * `subarray` of that chunk (zero copy); a body that spans chunks is copied into a fresh Buffer
 * allocated once, when its length header is seen. The framer never writes into a chunk it was given
 * and never reuses a buffer it handed out, so a body stays valid for as long as the caller keeps it
 * (unlike pg-protocol's Parser, which may overwrite earlier CopyData chunks). The caller must not
 * mutate pushed chunks. Keeping a small body alive also keeps its whole chunk alive; copy tiny
 * bodies you keep for long.
 *
 * The declared length is checked against `maxMessageBytes` as soon as the 5-byte header is
 * complete, before any body byte is buffered.
 *
 * Owned-read mode (`readBuffer()` + `received(n)`, instead of `push`): the socket reads straight
 * into memory the framer hands out (net.Socket's `onread` option with a buffer function), so
 * there is no Buffer allocated per socket read and, except at slab boundaries, no copy at all:
 * reads fill a READ_SLAB_BYTES slab front to back, a message is a view of the slab, and a message
 * split over two reads is still contiguous. When fewer than MIN_READ_BYTES are left, a new slab is
 * taken and only the unconsumed tail (the start of one message) is copied into it. A slab region is
 * written once, by one read, and never again, so bodies stay valid as long as they are kept (the
 * copy-before-queue rule of protocol notes §1 holds without a copy). Measured on Debian PG15
 * (bench/base-backup-stages.ts): Node's default read path allocates a 64 KiB Buffer per read and
 * the push path copies every message that spans two reads (about half of a base backup's bytes).
 *
 * Slab leases (owned-read mode, opt-in per message): every body returned by `next()` counts as a
 * reference to its slab, and by default that reference is never dropped, so the slab is never
 * written again (the guarantee above). A caller that will be done with a body at a known moment
 * (it copies the bytes elsewhere, then forgets the view) may call `leaseLast()` right after
 * `next()` and get a `release` function for that body. A slab the framer has moved past, whose
 * every body was leased and released, goes to a small free list and is read into again. Why: a
 * base backup to S3 reads about one 1 MiB slab per MiB of data; the S3 driver copies each chunk
 * into its part buffers at once, so the slab is garbage within milliseconds, but its memory is
 * freed only when a GC finds it dead (a full GC for slabs promoted while their views were queued)
 * and the allocator does not hand all of it back. That resident garbage put `pgark backup` to S3
 * over its RSS budget (issue 5). Measured on a 512 MB data set, 16 MiB parts, queue 4 (bundled CLI,
 * Debian PG15, Swift): peak RSS 191-194 MiB with a fresh slab per MiB, 157-163 MiB with reuse, and
 * about 12% less CPU (fresh slabs are page-faulted in and zeroed by the kernel).
 */
import { ConfigError, ProtocolError } from '../errors';
import { backendCodeName } from './message-codes';

/** One whole backend message. `body` excludes the code byte and the length word. */
export interface BackendMessage {
  code: number;
  body: Buffer;
}

/** Default maximum body length accepted by the framer: 64 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const SLAB_BYTES = 256 * 1024;
const SLAB_MAX_BODY = 64 * 1024;
/** Owned-read mode: memory the socket reads into, carved front to back. */
export const READ_SLAB_BYTES = 1024 * 1024;
/**
 * Owned-read mode: the size of every read buffer offered to the socket (Node's own read size). Not
 * more: one read is what the framer may hold beyond the consumer's high-water mark before the
 * socket is paused, and 64 KiB reads measured cheaper than 256 KiB ones (cache-sized copies).
 */
export const MIN_READ_BYTES = 64 * 1024;
/**
 * Owned-read mode: released READ_SLAB_BYTES slabs kept for reuse. The slabs in use at once are the
 * consumer's high-water mark plus what its own queue holds, a few MiB: beyond this many free ones,
 * a released slab is left to the GC.
 */
const MAX_FREE_SLABS = 8;

/**
 * Owned-read mode: one slab and the bodies handed out of it. `refs` counts bodies (and
 * takeReceived views) not released: a body without a lease is never released, so its slab is never
 * reused. `retired` once reads go to another slab.
 */
interface ReadSlab {
  buf: Buffer;
  refs: number;
  retired: boolean;
}

export interface MessageFramerOptions {
  /** Largest message body accepted; longer → ProtocolError PROTOCOL_MESSAGE_TOO_LONG. @default 64 MiB */
  maxMessageBytes?: number;
}

export class MessageFramer {
  readonly maxMessageBytes: number;
  /** Pushed chunks not yet consumed; `chunkOffset` is the read position in chunks[0]. */
  private readonly chunks: Buffer[] = [];
  private chunkOffset = 0;
  private queuedBytes = 0;
  /** Header bytes collected across chunk boundaries. */
  private readonly header = Buffer.alloc(5);
  private headerFilled = 0;
  /** A message whose body spans chunks, being assembled. */
  private partial: { code: number; body: Buffer; filled: number } | undefined;
  private failed: ProtocolError | undefined;
  /** Fresh memory for bodies that span chunks, carved sequentially; a region is handed out once, never reused. */
  private slab: Buffer | undefined;
  private slabUsed = 0;
  /** Owned-read mode: the slab being read into; bytes [readPos, writePos) are received, not yet returned. */
  private owned: { slab: Buffer; readPos: number; writePos: number; rec: ReadSlab } | undefined;
  /** Owned-read mode: slabs whose every body was released, ready to be read into again. */
  private readonly freeSlabs: Buffer[] = [];
  /** Owned-read mode: the slab of the body `next()` returned last, until `leaseLast()` takes it. */
  private lastSlab: ReadSlab | undefined;
  private reused = 0;

  constructor(options: MessageFramerOptions = {}) {
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < 1 || max > 0x7fffffff - 4) {
      throw new ConfigError(
        'CONFIG_INVALID_OPTION',
        `invalid maxMessageBytes ${max}: an integer from 1 to ${0x7fffffff - 4}`,
      );
    }
    this.maxMessageBytes = max;
  }

  /**
   * Owned-read mode: memory for the next socket read (MIN_READ_BYTES). Fill it from its
   * start, then call `received(n)`. Never mix with `push`.
   */
  readBuffer(): Buffer {
    let o = this.owned;
    if (!o || o.slab.length - o.writePos < MIN_READ_BYTES) {
      const tail = o ? o.writePos - o.readPos : 0;
      let size = READ_SLAB_BYTES;
      if (o && tail >= 5) {
        // Room for the whole pending message, so that it ends up contiguous (its length is checked by next()).
        const length = o.slab.readInt32BE(o.readPos + 1);
        if (length >= 4 && length - 4 <= this.maxMessageBytes)
          size = Math.max(size, 1 + length + MIN_READ_BYTES);
      }
      size = Math.max(size, tail + MIN_READ_BYTES);
      let slab: Buffer;
      if (size === READ_SLAB_BYTES && this.freeSlabs.length > 0) {
        slab = this.freeSlabs.pop()!;
        this.reused++;
      } else {
        slab = Buffer.allocUnsafeSlow(size);
      }
      if (o && tail > 0) o.slab.copy(slab, 0, o.readPos, o.writePos);
      // Only now: the tail is copied, and the socket's next read goes to the new slab.
      if (o) this.retire(o.rec);
      o = this.owned = { slab, readPos: 0, writePos: tail, rec: { buf: slab, refs: 0, retired: false } };
    }
    return o.slab.subarray(o.writePos, o.writePos + MIN_READ_BYTES);
  }

  /** Owned-read mode: `n` bytes were read into the buffer from the last `readBuffer()`. */
  received(n: number): void {
    const o = this.owned;
    if (!o || n <= 0) return;
    o.writePos = Math.min(o.slab.length, o.writePos + n);
  }

  /**
   * Owned-read mode: returns every received byte not yet returned, as one view, and consumes it
   * (for bytes that belong to someone else: pg's startup parser before the socket is taken over).
   * The region is never written by the framer again.
   */
  takeReceived(): Buffer {
    const o = this.owned;
    if (!o) return Buffer.alloc(0);
    const view = o.slab.subarray(o.readPos, o.writePos);
    o.readPos = o.writePos;
    o.rec.refs++; // never released: the slab is never reused
    return view;
  }

  /**
   * Owned-read mode: a lease on the body the last `next()` returned. Call `release` once nothing
   * reads that body (or any view of it) any more: from then on the framer may read new bytes into
   * its memory. Not calling it is always safe (the slab is then never reused). Returns undefined in
   * push mode or when there is no body to lease; call at most once per body, right after `next()`.
   */
  leaseLast(): (() => void) | undefined {
    const rec = this.lastSlab;
    if (rec === undefined) return undefined;
    this.lastSlab = undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      rec.refs--;
      if (rec.refs === 0 && rec.retired) this.recycle(rec);
    };
  }

  /** Owned-read mode: the slab is no longer read into; reusable once its bodies are released. */
  private retire(rec: ReadSlab): void {
    rec.retired = true;
    if (rec.refs === 0) this.recycle(rec);
  }

  private recycle(rec: ReadSlab): void {
    if (rec.buf.length === READ_SLAB_BYTES && this.freeSlabs.length < MAX_FREE_SLABS) {
      this.freeSlabs.push(rec.buf);
    }
  }

  /** Hands over bytes read from the socket. The framer keeps a reference; do not mutate the chunk. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queuedBytes += chunk.length;
  }

  /** Owned-read mode: slabs read into again after all their bodies were released (tests, stats). */
  get slabsReused(): number {
    return this.reused;
  }

  /** Bytes pushed but not yet returned in a message (including a partially assembled one). */
  get bufferedBytes(): number {
    if (this.owned) return this.owned.writePos - this.owned.readPos;
    return (
      this.queuedBytes - this.chunkOffset + this.headerFilled + (this.partial ? 5 + this.partial.filled : 0)
    );
  }

  /** True when a message has started but is not complete: a stream ending now was cut mid-message. */
  get midMessage(): boolean {
    if (this.owned) return this.owned.writePos > this.owned.readPos;
    return this.headerFilled > 0 || this.partial !== undefined;
  }

  /**
   * Returns the next whole message, or undefined when more bytes are needed.
   * Throws ProtocolError (PROTOCOL_MESSAGE_TOO_LONG, PROTOCOL_MALFORMED_MESSAGE); after that every call throws the same error.
   */
  next(): BackendMessage | undefined {
    if (this.failed) throw this.failed;
    const o = this.owned;
    if (o) {
      // Owned-read mode: every received byte is contiguous in one slab (readBuffer carries the tail over).
      const avail = o.writePos - o.readPos;
      if (avail < 5) return undefined;
      const code = o.slab[o.readPos]!;
      const bodyLen = this.checkLength(code, o.slab.readInt32BE(o.readPos + 1));
      if (avail < 5 + bodyLen) return undefined;
      const start = o.readPos + 5;
      o.readPos = start + bodyLen;
      o.rec.refs++;
      this.lastSlab = o.rec;
      return { code, body: o.slab.subarray(start, start + bodyLen) };
    }
    for (;;) {
      const chunk = this.chunks[0];
      if (this.partial) {
        if (!chunk) return undefined;
        const p = this.partial;
        const take = Math.min(p.body.length - p.filled, chunk.length - this.chunkOffset);
        chunk.copy(p.body, p.filled, this.chunkOffset, this.chunkOffset + take);
        p.filled += take;
        this.advance(take);
        if (p.filled === p.body.length) {
          this.partial = undefined;
          return { code: p.code, body: p.body };
        }
        continue;
      }
      if (!chunk) return undefined;
      const avail = chunk.length - this.chunkOffset;
      if (this.headerFilled === 0 && avail >= 5) {
        // Fast path: header in the current chunk.
        const code = chunk[this.chunkOffset]!;
        const bodyLen = this.checkLength(code, chunk.readInt32BE(this.chunkOffset + 1));
        if (avail >= 5 + bodyLen) {
          const start = this.chunkOffset + 5;
          const body = chunk.subarray(start, start + bodyLen);
          this.advance(5 + bodyLen);
          return { code, body };
        }
        this.advance(5);
        this.partial = { code, body: this.allocBody(bodyLen), filled: 0 };
        continue;
      }
      // Slow path: header split across chunks.
      const take = Math.min(5 - this.headerFilled, avail);
      chunk.copy(this.header, this.headerFilled, this.chunkOffset, this.chunkOffset + take);
      this.headerFilled += take;
      this.advance(take);
      if (this.headerFilled < 5) continue;
      this.headerFilled = 0;
      const code = this.header[0]!;
      const bodyLen = this.checkLength(code, this.header.readInt32BE(1));
      if (bodyLen === 0) return { code, body: Buffer.alloc(0) };
      this.partial = { code, body: this.allocBody(bodyLen), filled: 0 };
    }
  }

  /**
   * Memory for a body assembled from several chunks. Bodies up to SLAB_MAX_BODY are carved from a
   * SLAB_BYTES slab (one allocation per ~8 CopyData messages instead of one each: the replay bench
   * in docs/design-connection.md measured the per-message allocation as the framer's main cost).
   * Regions never overlap and are never reused, so bodies stay valid; a kept body keeps its slab alive.
   */
  private allocBody(n: number): Buffer {
    if (n > SLAB_MAX_BODY) return Buffer.allocUnsafeSlow(n);
    if (!this.slab || this.slab.length - this.slabUsed < n) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.slabUsed = 0;
    }
    const body = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    this.slabUsed += n;
    return body;
  }

  private checkLength(code: number, length: number): number {
    if (length < 4) {
      this.failed = new ProtocolError(
        'PROTOCOL_MALFORMED_MESSAGE',
        `malformed ${backendCodeName(code)} message: length word ${length} is less than 4`,
      );
      throw this.failed;
    }
    const bodyLen = length - 4;
    if (bodyLen > this.maxMessageBytes) {
      this.failed = new ProtocolError(
        'PROTOCOL_MESSAGE_TOO_LONG',
        `${backendCodeName(code)} message of ${bodyLen} bytes exceeds the maximum of ${this.maxMessageBytes} bytes`,
        { hint: 'raise maxMessageBytes if the server legitimately sends messages this large' },
      );
      throw this.failed;
    }
    return bodyLen;
  }

  private advance(n: number): void {
    this.chunkOffset += n;
    const chunk = this.chunks[0]!;
    if (this.chunkOffset === chunk.length) {
      this.chunks.shift();
      this.queuedBytes -= chunk.length;
      this.chunkOffset = 0;
    }
  }
}
