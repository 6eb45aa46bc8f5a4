/**
 * sha256 of a stream computed on a worker thread, so that the restore's main thread (tar parsing,
 * dispatching writes) and the hash run on two cores at once. On the restore of a 512 MB backup the
 * hash was about half of the main thread's CPU time (~0.7 s/GB).
 *
 * Bytes cross to the worker through a ring of shared memory slots (one memcpy per byte, ~10x cheaper
 * than hashing it); only slot numbers travel as messages. The caller keeps its own chunk, so the
 * data is never transferred away from the tar parser and the file writes. Memory: SLOTS x SLOT_BYTES
 * (8 MiB). When every slot waits to be hashed, `update` returns a promise: the reader is held back
 * rather than memory growing.
 *
 * The worker is plain JavaScript evaluated from a string (no file to resolve next to a bundled or
 * transpiled module). It is only worth its start-up (~30 ms, overlapping the first reads) for large
 * objects: see MIN_WORKER_HASH_BYTES in ./extract-archive.
 */
import { Worker } from 'node:worker_threads';
import { IntegrityError } from '../errors';

const SLOT_BYTES = 1024 * 1024;
const SLOTS = 8;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const ring = new Uint8Array(workerData.sab);
const slotBytes = workerData.slotBytes;
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m === -1) {
    parentPort.postMessage(hash.digest('hex'));
    return;
  }
  // m = slot * 2^24 + length
  const slot = Math.floor(m / 16777216);
  const len = m % 16777216;
  hash.update(ring.subarray(slot * slotBytes, slot * slotBytes + len));
  parentPort.postMessage(slot);
});
`;

export class WorkerSha256 {
  private readonly ring = new SharedArrayBuffer(SLOT_BYTES * SLOTS);
  private readonly view = Buffer.from(this.ring);
  private readonly free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
  private readonly worker: Worker;
  private slotWaiter: (() => void) | undefined;
  private digestWaiter: ((hex: string) => void) | undefined;
  private failure: Error | undefined;
  /** The slot being filled (not yet posted) and how full it is. */
  private slot: number | undefined;
  private slotFill = 0;
  bytes = 0;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { sab: this.ring, slotBytes: SLOT_BYTES },
    });
    this.worker.on('message', (m: number | string) => {
      if (typeof m === 'string') {
        this.digestWaiter?.(m);
        return;
      }
      this.free.push(m);
      const w = this.slotWaiter;
      this.slotWaiter = undefined;
      w?.();
    });
    this.worker.on('error', (e) => {
      this.failure = e;
      this.slotWaiter?.();
    });
    // Not unref()'d: while the reader waits for a slot or the digest, only the worker keeps the
    // event loop alive. extractArchive closes it on every path (digest() or close()).
  }

  /** Queues a chunk for hashing; returns a promise only when the ring is full (then await it). */
  update(chunk: Buffer): Promise<void> | undefined {
    this.bytes += chunk.length;
    return this.copyFrom(chunk, 0);
  }

  /**
   * Copies into the open slot, posting each slot once full: small chunks (an S3 body's 16-64 KiB)
   * share a slot, so there are two messages per MiB whatever the chunk size.
   */
  private copyFrom(chunk: Buffer, from: number): Promise<void> | undefined {
    let off = from;
    while (off < chunk.length) {
      if (this.failure) throw this.failureError();
      if (this.slot === undefined) {
        this.slot = this.free.pop();
        this.slotFill = 0;
        if (this.slot === undefined) return this.waitSlot().then(() => this.copyFrom(chunk, off));
      }
      const len = Math.min(SLOT_BYTES - this.slotFill, chunk.length - off);
      chunk.copy(this.view, this.slot * SLOT_BYTES + this.slotFill, off, off + len);
      this.slotFill += len;
      off += len;
      if (this.slotFill === SLOT_BYTES) this.post();
    }
    return undefined;
  }

  private post(): void {
    if (this.slot === undefined) return;
    if (this.slotFill > 0) this.worker.postMessage(this.slot * 16777216 + this.slotFill);
    else this.free.push(this.slot);
    this.slot = undefined;
    this.slotFill = 0;
  }

  private waitSlot(): Promise<void> {
    return new Promise((resolve) => {
      this.slotWaiter = resolve;
    });
  }

  /** The object cannot be verified without its hash: fail safe, as for a mismatch. */
  private failureError(): IntegrityError {
    return new IntegrityError(
      'INTEGRITY_CHECKSUM_MISMATCH',
      'the sha256 of the object could not be computed (its worker thread failed)',
      { cause: this.failure },
    );
  }

  /** The hex digest of everything queued; the worker is stopped afterwards. */
  async digest(): Promise<string> {
    if (this.failure) throw this.failureError();
    const hex = await new Promise<string>((resolve, reject) => {
      this.digestWaiter = resolve;
      this.worker.once('error', reject);
      this.post();
      this.worker.postMessage(-1);
    });
    await this.close();
    return hex;
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
