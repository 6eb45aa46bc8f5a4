/**
 * Chunk release: how a producer learns that a storage driver is done with a chunk of a put's body.
 *
 * A producer that will let its chunk's memory be reused (the replication connection's read slabs,
 * see MessageFramer's slab leases) attaches a release function to the chunk before writing it into
 * the body. A driver that copies every chunk and never reads it again afterwards calls
 * `releaseChunk` at that moment (the s3 driver, once the chunk is hashed and copied into its part
 * buffer). A driver or transform that keeps chunks (fs batching, compression) simply never calls
 * it, and the memory is then never reused: releasing is an optimisation, never needed for
 * correctness, and only ever done by the one party that is sure the bytes are no longer read.
 *
 * Kept beside the body rather than in it so the Storage interface (a Readable of Buffers) is
 * unchanged. A WeakMap: a chunk never released takes its entry with it when it is collected.
 */
const releases = new WeakMap<Buffer, () => void>();

/** Attaches `release` to `chunk` (the exact Buffer object that will be written into the body). */
export function attachChunkRelease(chunk: Buffer, release: () => void): void {
  releases.set(chunk, release);
}

/**
 * The driver will never read `chunk` (nor any view of it it made) again: runs its release, if any,
 * once. Harmless for chunks without one.
 */
export function releaseChunk(chunk: Buffer): void {
  const release = releases.get(chunk);
  if (release === undefined) return;
  releases.delete(chunk);
  release();
}
