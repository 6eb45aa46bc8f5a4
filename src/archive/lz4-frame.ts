/**
 * A streaming LZ4 frame decoder in plain TypeScript (no native code), and XXH32 which the frame format uses for
 * its checksums.
 *
 * Why our own: no maintained npm LZ4 binding decodes a stream (lz4-napi only has whole-buffer frame calls; the
 * `lz4` package's native part is unmaintained since 2020). PostgreSQL's server-side lz4 (basebackup_lz4.c,
 * LZ4F_compressBegin with 256 KiB linked blocks) and the `lz4` CLI both write the LZ4 frame format
 * (lz4/lz4 doc/lz4_Frame_format.md, block format in doc/lz4_Block_format.md), which is small enough to decode here.
 *
 * Supports: concatenated frames, skippable frames, linked and independent blocks (a 64 KiB history window is
 * kept), uncompressed blocks, header / block / content checksums (all verified), content size (verified), dictID
 * (rejected: PostgreSQL never writes one). Memory: one compressed block (<= 4 MiB) plus the window.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { IntegrityError } from '../errors';

// ---------------------------------------------------------------------------------------------
// XXH32 (Cyan4973/xxHash spec), incremental.

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;
const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));
const rd32 = (b: Uint8Array, i: number): number =>
  b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
const round = (acc: number, lane: number): number => Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);

export class Xxh32 {
  private v1: number;
  private v2: number;
  private v3: number;
  private v4: number;
  private total = 0;
  private readonly tail = new Uint8Array(16);
  private tailLen = 0;

  constructor(private readonly seed = 0) {
    this.v1 = (seed + P1 + P2) | 0;
    this.v2 = (seed + P2) | 0;
    this.v3 = seed | 0;
    this.v4 = (seed - P1) | 0;
  }

  update(data: Uint8Array): this {
    let i = 0;
    const n = data.length;
    this.total += n;
    if (this.tailLen > 0) {
      const take = Math.min(16 - this.tailLen, n);
      this.tail.set(data.subarray(0, take), this.tailLen);
      this.tailLen += take;
      i = take;
      if (this.tailLen < 16) return this;
      this.stripe(this.tail, 0);
      this.tailLen = 0;
    }
    for (; i + 16 <= n; i += 16) this.stripe(data, i);
    if (i < n) {
      this.tail.set(data.subarray(i), 0);
      this.tailLen = n - i;
    }
    return this;
  }

  private stripe(b: Uint8Array, i: number): void {
    this.v1 = round(this.v1, rd32(b, i));
    this.v2 = round(this.v2, rd32(b, i + 4));
    this.v3 = round(this.v3, rd32(b, i + 8));
    this.v4 = round(this.v4, rd32(b, i + 12));
  }

  digest(): number {
    let h =
      this.total >= 16
        ? (rotl(this.v1, 1) + rotl(this.v2, 7) + rotl(this.v3, 12) + rotl(this.v4, 18)) | 0
        : (this.seed + P5) | 0;
    h = (h + this.total) | 0; // the spec adds the length modulo 2^32
    let i = 0;
    const t = this.tail;
    for (; i + 4 <= this.tailLen; i += 4) h = Math.imul(rotl((h + Math.imul(rd32(t, i), P3)) | 0, 17), P4);
    for (; i < this.tailLen; i++) h = Math.imul(rotl((h + Math.imul(t[i]!, P5)) | 0, 11), P1);
    h = Math.imul(h ^ (h >>> 15), P2);
    h = Math.imul(h ^ (h >>> 13), P3);
    return (h ^ (h >>> 16)) >>> 0;
  }
}

export function xxh32(data: Uint8Array, seed = 0): number {
  return new Xxh32(seed).update(data).digest();
}

// ---------------------------------------------------------------------------------------------
// LZ4 block and frame decoding

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const WINDOW = 64 * 1024;
const BLOCK_MAX: Record<number, number> = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 };

function corrupt(what: string): IntegrityError {
  return new IntegrityError('INTEGRITY_ARCHIVE_INVALID', `lz4 stream is corrupt: ${what}`, {
    hint: 'the compressed archive is damaged or is not lz4',
  });
}

/**
 * Decodes one LZ4 block from `src` into `dst` starting at `dstPos`; matches may reach back to `dstLow` (the start
 * of the history window). Returns the new end of output.
 */
export function decodeLz4Block(src: Uint8Array, dst: Uint8Array, dstPos: number, dstLow = dstPos): number {
  let s = 0;
  let d = dstPos;
  const sEnd = src.length;
  const dEnd = dst.length;
  while (s < sEnd) {
    const token = src[s++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= sEnd) throw corrupt('literal length runs past the block');
        b = src[s++]!;
        lit += b;
      } while (b === 255);
    }
    if (s + lit > sEnd || d + lit > dEnd) throw corrupt('literals run past the block');
    if (lit < 32) {
      // Short copies by hand: subarray()+set() costs more than the bytes for the typical short literal run.
      for (let k = 0; k < lit; k++) dst[d + k] = src[s + k]!;
    } else {
      dst.set(src.subarray(s, s + lit), d);
    }
    s += lit;
    d += lit;
    if (s === sEnd) break; // the last sequence has literals only
    if (s + 2 > sEnd) throw corrupt('match offset runs past the block');
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || d - offset < dstLow) throw corrupt('match offset points before the window');
    let len = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= sEnd) throw corrupt('match length runs past the block');
        b = src[s++]!;
        len += b;
      } while (b === 255);
    }
    if (d + len > dEnd) throw corrupt('match runs past the block size');
    let from = d - offset;
    if (offset >= len && len >= 32) {
      dst.copyWithin(d, from, from + len);
      d += len;
    } else {
      // Short or overlapping match (a run): byte by byte, as the format defines for overlaps.
      for (const end = d + len; d < end;) dst[d++] = dst[from++]!;
    }
  }
  return d;
}

type Step = 'magic' | 'skipSize' | 'skip' | 'descriptor' | 'blockSize' | 'block' | 'contentChecksum';

/** A Transform that turns an LZ4 frame stream (one or more frames) into the original bytes. */
export class Lz4FrameDecoder extends Transform {
  private chunks: Buffer[] = [];
  private have = 0;
  private step: Step = 'magic';
  private need = 4;
  private framesDone = 0;
  // Per-frame state.
  private independent = false;
  private blockChecksum = false;
  private contentChecksum = false;
  private contentSize: bigint | undefined;
  private produced = 0n;
  private blockMax = 0;
  private blockIsRaw = false;
  private blockLen = 0;
  private hash: Xxh32 | undefined;
  private window = new Uint8Array(0);
  private windowLen = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    try {
      while (this.have >= this.need) {
        const data = this.takeBytes(this.need);
        this.handle(data);
      }
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.step !== 'magic' || this.have !== 0 || this.framesDone === 0) {
      cb(
        corrupt(
          this.framesDone === 0 && this.have === 0 && this.step === 'magic'
            ? 'empty input'
            : 'truncated frame',
        ),
      );
      return;
    }
    cb();
  }

  private takeBytes(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let o = 0;
      while (o < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - o);
        c.copy(out, o, 0, k);
        o += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.have -= n;
    return out;
  }

  private handle(data: Buffer): void {
    switch (this.step) {
      case 'magic': {
        const magic = data.readUInt32LE(0);
        if (magic === FRAME_MAGIC) {
          this.step = 'descriptor';
          this.need = 2; // FLG, BD; the rest is read once FLG says how long it is
        } else if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
          this.step = 'skipSize';
          this.need = 4;
        } else {
          throw corrupt(`bad frame magic 0x${magic.toString(16)}`);
        }
        return;
      }
      case 'skipSize':
        this.step = 'skip';
        this.need = data.readUInt32LE(0);
        if (this.need === 0) this.endFrame();
        return;
      case 'skip':
        this.endFrame();
        return;
      case 'descriptor':
        this.descriptor(data);
        return;
      case 'blockSize': {
        const v = data.readUInt32LE(0);
        if (v === 0) {
          if (this.contentChecksum) {
            this.step = 'contentChecksum';
            this.need = 4;
          } else {
            this.finishFrame();
          }
          return;
        }
        this.blockIsRaw = (v & 0x80000000) !== 0;
        this.blockLen = v & 0x7fffffff;
        if (this.blockLen > this.blockMax) throw corrupt('block larger than the frame allows');
        this.step = 'block';
        this.need = this.blockLen + (this.blockChecksum ? 4 : 0);
        return;
      }
      case 'block':
        this.block(data);
        return;
      case 'contentChecksum':
        if (data.readUInt32LE(0) !== this.hash!.digest()) throw corrupt('content checksum mismatch');
        this.finishFrame();
        return;
    }
  }

  private descriptor(data: Buffer): void {
    if (data.length === 2) {
      const flg = data[0]!;
      if (flg >> 6 !== 1) throw corrupt('unsupported frame version');
      if (flg & 0x02) throw corrupt('reserved flag set');
      if (flg & 0x01) throw corrupt('dictionary frames are not supported');
      const extra = (flg & 0x08 ? 8 : 0) + 1; // content size + header checksum
      // Re-enter with FLG, BD and the rest in one buffer.
      this.chunks.unshift(Buffer.from(data));
      this.have += 2;
      this.need = 2 + extra;
      this.descriptorPending = true;
      return;
    }
    if (!this.descriptorPending) throw corrupt('descriptor state');
    this.descriptorPending = false;
    const flg = data[0]!;
    const bd = data[1]!;
    if (bd & 0x8f) throw corrupt('reserved block descriptor bits set');
    const max = BLOCK_MAX[(bd >> 4) & 7];
    if (max === undefined) throw corrupt('bad block maximum size');
    const hc = data[data.length - 1]!;
    if (((xxh32(data.subarray(0, data.length - 1)) >>> 8) & 0xff) !== hc)
      throw corrupt('frame header checksum mismatch');
    this.independent = (flg & 0x20) !== 0;
    this.blockChecksum = (flg & 0x10) !== 0;
    this.contentChecksum = (flg & 0x04) !== 0;
    this.contentSize = flg & 0x08 ? data.readBigUInt64LE(2) : undefined;
    this.produced = 0n;
    this.blockMax = max;
    this.hash = this.contentChecksum ? new Xxh32() : undefined;
    if (this.window.length < WINDOW + max) this.window = new Uint8Array(WINDOW + max);
    this.windowLen = 0;
    this.step = 'blockSize';
    this.need = 4;
  }

  private descriptorPending = false;

  private block(data: Buffer): void {
    const body = data.subarray(0, this.blockLen);
    if (this.blockChecksum && data.readUInt32LE(this.blockLen) !== xxh32(body))
      throw corrupt('block checksum mismatch');
    let out: Buffer;
    if (this.blockIsRaw) {
      out = Buffer.from(body);
      if (!this.independent) this.remember(out);
    } else if (this.independent) {
      const dst = Buffer.allocUnsafe(this.blockMax);
      out = dst.subarray(0, decodeLz4Block(body, dst, 0));
    } else {
      const start = this.windowLen;
      const end = decodeLz4Block(body, this.window, start, 0);
      out = Buffer.from(this.window.subarray(start, end));
      this.windowLen = end;
      this.slideWindow();
    }
    this.produced += BigInt(out.length);
    this.hash?.update(out);
    if (out.length > 0) this.push(out);
    this.step = 'blockSize';
    this.need = 4;
  }

  /** Appends raw bytes to the history window (linked mode). */
  private remember(bytes: Uint8Array): void {
    const keep = bytes.subarray(Math.max(0, bytes.length - WINDOW));
    if (this.windowLen + keep.length > this.window.length) this.slideWindow(keep.length);
    this.window.set(keep, this.windowLen);
    this.windowLen += keep.length;
    this.slideWindow();
  }

  /** Keeps only the last 64 KiB of history at the front of the window buffer. */
  private slideWindow(room = 0): void {
    const limit = WINDOW - Math.min(room, WINDOW);
    if (this.windowLen > limit) {
      this.window.copyWithin(0, this.windowLen - limit, this.windowLen);
      this.windowLen = limit;
    }
  }

  private finishFrame(): void {
    if (this.contentSize !== undefined && this.contentSize !== this.produced)
      throw corrupt('content size mismatch');
    this.endFrame();
  }

  private endFrame(): void {
    this.framesDone++;
    this.step = 'magic';
    this.need = 4;
  }
}
