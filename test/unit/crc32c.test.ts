import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  crc32c,
  crc32cFinal,
  crc32cInit,
  crc32cManifestHex,
  crc32cUpdate,
  crc32cUpdateBytewise,
} from '../../src/verify/crc32c';

describe('crc32c', () => {
  it('matches the standard check values (RFC 3720 B.4 and the CRC catalogue)', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i)))).toBe(0x46dd794e);
  });

  it('slice-by-8 equals the byte-wise table for every length 0..64 and random data', () => {
    const data = randomBytes(4096 + 7);
    for (let len = 0; len <= 64; len++) {
      const b = data.subarray(0, len);
      expect(crc32cUpdate(crc32cInit(), b)).toBe(crc32cUpdateBytewise(crc32cInit(), b));
    }
    expect(crc32cUpdate(crc32cInit(), data)).toBe(crc32cUpdateBytewise(crc32cInit(), data));
  });

  it('is incremental: any split gives the same result', () => {
    const data = randomBytes(1000);
    const whole = crc32c(data);
    for (let cut = 0; cut <= data.length; cut += 37) {
      const s = crc32cUpdate(crc32cUpdate(crc32cInit(), data.subarray(0, cut)), data.subarray(cut));
      expect(crc32cFinal(s)).toBe(whole);
    }
  });

  it('encodes for the manifest as little-endian bytes in hex', () => {
    expect(crc32cManifestHex(0xe3069283)).toBe('839206e3');
    expect(crc32cManifestHex(0)).toBe('00000000');
    // A real pair from a PG14 manifest: PG_VERSION holds "14\n".
    expect(crc32cManifestHex(crc32c(Buffer.from('14\n')))).toBe('fdece531');
  });
});
