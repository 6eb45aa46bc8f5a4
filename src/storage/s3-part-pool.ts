/**
 * Part buffers for the s3 driver's multipart loop, shared by every put made through one S3 client.
 *
 * Why one pool per client rather than per put: a per-put pool becomes garbage when its put ends,
 * and V8 frees it only at its next full GC; the next put (a base backup writes base.tar, then the
 * manifest, WAL segments, …) allocates fresh buffers meanwhile, so the process briefly holds both
 * and its RSS goes over `part size x (queue + 1)`. Here the buffers outlive the puts and are reused.
 *
 * Why one slab: the `slots` part buffers are views into a single allocation made once. An
 * allocation that large is always mmap()ed by glibc (above its 32 MiB ceiling for the dynamic mmap
 * threshold), so it never lands in, and fragments, the malloc arena; its pages become resident only
 * when first written, so a client that only ever needs one part (archive-push of one WAL segment)
 * only pays for one part. Free buffers are reused last-in first-out, so the warm ones go first.
 *
 * The pool never blocks: a put that finds no free buffer (more concurrent puts than one put's
 * `queue + 1`, or a part size other than the slab's) gets a buffer of its own, dropped on release.
 * Memory is therefore the slab plus whatever concurrent puts take beyond it.
 */
import { constants } from 'node:buffer';
import type { S3Client } from '@aws-sdk/client-s3';

export class PartBufferPool {
  private slab: Buffer | undefined;
  private slabPartSize = 0;
  /** Free slab buffers, the most recently released last. */
  private readonly free: Buffer[] = [];

  /** @param slots buffers in the slab: one put's `queueSize + 1`. */
  constructor(readonly slots: number) {}

  /** A buffer of exactly `size` bytes (uninitialised). */
  take(size: number): Buffer {
    if (this.slab === undefined || (size !== this.slabPartSize && this.idle())) this.makeSlab(size);
    if (size === this.slabPartSize) {
      const b = this.free.pop();
      if (b !== undefined) return b;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Hands a buffer from `take` back; buffers not from the slab are left to the GC. */
  give(buf: Buffer): void {
    if (this.slab !== undefined && buf.buffer === this.slab.buffer && buf.length === this.slabPartSize) {
      this.free.push(buf);
    }
  }

  /** Bytes held by the slab (resident only once written). */
  get slabBytes(): number {
    return this.slab?.length ?? 0;
  }

  /** True when no slab buffer is in use. */
  private idle(): boolean {
    return this.free.length === this.slots;
  }

  private makeSlab(size: number): void {
    this.free.length = 0;
    this.slab = undefined;
    this.slabPartSize = 0;
    // Parts too large for one Buffer together (only for objects of hundreds of GB) go unpooled.
    if (size * this.slots > constants.MAX_LENGTH) return;
    const slab = Buffer.allocUnsafeSlow(size * this.slots);
    this.slab = slab;
    this.slabPartSize = size;
    // Reversed so that pop() hands out the slab's start first.
    for (let i = this.slots - 1; i >= 0; i--) this.free.push(slab.subarray(i * size, (i + 1) * size));
  }
}

const pools = new WeakMap<S3Client, PartBufferPool>();

/**
 * The pool of a client (created on first use, kept as long as the client lives). A client used
 * with a larger queue than before gets a pool sized for it.
 */
export function partBufferPoolFor(client: S3Client, slots: number): PartBufferPool {
  let pool = pools.get(client);
  if (pool === undefined || pool.slots < slots) {
    pool = new PartBufferPool(slots);
    pools.set(client, pool);
  }
  return pool;
}
