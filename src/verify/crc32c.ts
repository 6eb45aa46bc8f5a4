/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as PostgreSQL's pg_crc32c: init 0xFFFFFFFF, final xor
 * 0xFFFFFFFF (src/include/port/pg_crc32c.h INIT_CRC32C / FIN_CRC32C). Used for the backup manifest's CRC32C file
 * checksums (src/common/checksum_helper.c). Pure; no I/O.
 *
 * Slice-by-8 (eight 256-entry tables, 8 bytes per step): bench/crc32c.ts measured 722 MB/s against 339 MB/s for
 * the byte-wise table (Node 20, 2-vCPU EPYC under load; node's sha256 did 1352 MB/s in the same run). A native
 * package using the CPU's CRC32 instruction (e.g. @node-rs/crc32's crc32c) would be several times faster; not
 * installed, since CRC32C is the manifest default but not on the hot path of the network-bound backup stream.
 */

const POLY = 0x82f63b78;

/** T[k][b]: the CRC of byte b followed by k zero bytes; one flat array of 8 x 256 entries. */
const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + b] = c >>> 0;
    }
  }
  return t;
})();

/** The running state of an incremental CRC-32C: start with `crc32cInit()`, end with `crc32cFinal()`. */
export type Crc32cState = number;

/** INIT_CRC32C. */
export function crc32cInit(): Crc32cState {
  return 0xffffffff;
}

/** COMP_CRC32C: folds `buf` into the running state and returns the new state. */
export function crc32cUpdate(state: Crc32cState, buf: Uint8Array): Crc32cState {
  const t = TABLE;
  let crc = state >>> 0;
  let i = 0;
  const n = buf.length;
  const end8 = n - (n % 8);
  while (i < end8) {
    const lo = (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24)) ^ crc;
    crc =
      t[7 * 256 + (lo & 0xff)]! ^
      t[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      t[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      t[4 * 256 + (lo >>> 24)]! ^
      t[3 * 256 + buf[i + 4]!]! ^
      t[2 * 256 + buf[i + 5]!]! ^
      t[256 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
    i += 8;
  }
  while (i < n) {
    crc = t[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
    i++;
  }
  return crc >>> 0;
}

/** FIN_CRC32C: the final CRC value as an unsigned 32-bit number. */
export function crc32cFinal(state: Crc32cState): number {
  return (state ^ 0xffffffff) >>> 0;
}

/** CRC-32C of one buffer (standard check value: crc32c("123456789") = 0xE3069283). */
export function crc32c(buf: Uint8Array): number {
  return crc32cFinal(crc32cUpdate(crc32cInit(), buf));
}

/**
 * The backup manifest's hex form of a CRC-32C: the 4-byte pg_crc32c `memcpy`'d in server-native order
 * (little-endian on every platform PostgreSQL ships on), then lowercase hex (checksum_helper.c
 * pg_checksum_final). Not `crc.toString(16)`, which is big-endian order.
 */
export function crc32cManifestHex(crc: number): string {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(crc >>> 0, 0);
  return b.toString('hex');
}

/** Byte-wise (one table) variant, kept for the benchmark's comparison and as a test oracle. */
export function crc32cUpdateBytewise(state: Crc32cState, buf: Uint8Array): Crc32cState {
  let crc = state >>> 0;
  for (let i = 0; i < buf.length; i++) crc = TABLE[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}
