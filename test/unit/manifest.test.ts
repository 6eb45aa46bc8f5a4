import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/errors';
import { createFileChecksummer, parseBackupManifest, type BackupManifest } from '../../src/verify/manifest';
import { crc32c, crc32cManifestHex } from '../../src/verify/crc32c';

const FIX = join(__dirname, '../fixtures/backup');
const read = (p: string): Buffer => readFileSync(join(FIX, p));
const meta = (major: number): { systemIdentifier: string; tablespaceOid: number } =>
  JSON.parse(read(`pg${major}/meta.json`).toString()) as { systemIdentifier: string; tablespaceOid: number };

const REAL: Array<[string, 1 | 2, string, number]> = [
  ['pg14/backup_manifest', 1, 'CRC32C', 14],
  ['pg14/backup_manifest.sha256-encoded', 1, 'SHA256', 14],
  ['pg15/backup_manifest.lz4-crc32c', 1, 'CRC32C', 15],
  ['pg15/backup_manifest.zst-sha512', 1, 'SHA512', 15],
  ['pg15/backup_manifest.gz-sha224', 1, 'SHA224', 15],
  ['pg16/backup_manifest', 1, 'SHA384', 16],
  ['pg17/backup_manifest', 2, 'CRC32C', 17],
  ['pg18/backup_manifest', 2, 'CRC32C', 18],
];

function expectInvalid(bytes: Buffer): IntegrityError {
  try {
    parseBackupManifest(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as IntegrityError).code).toBe('INTEGRITY_MANIFEST_INVALID');
    return e as IntegrityError;
  }
  throw new Error('expected parseBackupManifest to throw');
}

/** Re-signs an edited manifest body so only the edit (not the checksum) is what the parser sees. */
function resign(bytes: Buffer): Buffer {
  const text = bytes.toString('utf8');
  const penultimate = text.lastIndexOf('\n', text.length - 2);
  const body = text.slice(0, penultimate + 1);
  return Buffer.from(body + `"Manifest-Checksum": "${createHash('sha256').update(body).digest('hex')}"}\n`);
}

describe('parseBackupManifest on real manifests', () => {
  it.each(REAL)('%s parses (version %i, %s)', (file, version, algorithm, major) => {
    const m: BackupManifest = parseBackupManifest(read(file));
    expect(m.version).toBe(version);
    expect(m.files.length).toBeGreaterThan(900);
    expect(m.byPath.size).toBe(m.files.length);
    expect(m.byPath.get('global/pg_control')?.size).toBe(8192);
    expect(m.byPath.get('backup_label')?.checksumAlgorithm).toBe(algorithm);
    expect(m.walRanges).toHaveLength(1);
    expect(m.walRanges[0]!.timeline).toBe(1);
    expect(m.walRanges[0]!.endLsn).toBeGreaterThan(m.walRanges[0]!.startLsn);
    if (version === 2) expect(m.systemIdentifier).toBe(meta(major).systemIdentifier);
    else expect(m.systemIdentifier).toBeUndefined();
    const oid = meta(major).tablespaceOid;
    expect(m.files.some((f) => f.path.startsWith(`pg_tblspc/${oid}/PG_${major}_`))).toBe(true);
  });

  it('decodes Encoded-Path entries to the same paths as the plain manifest', () => {
    const plain = parseBackupManifest(read('pg14/backup_manifest'));
    const encoded = parseBackupManifest(read('pg14/backup_manifest.sha256-encoded'));
    expect(encoded.files.every((f) => f.encodedPath !== undefined)).toBe(true);
    expect([...encoded.byPath.keys()].sort()).toEqual([...plain.byPath.keys()].sort());
  });

  it('accepts any json whitespace once re-signed', () => {
    const text = read('pg17/backup_manifest').toString().replace(/": /g, '"  :\t');
    expect(parseBackupManifest(resign(Buffer.from(text))).version).toBe(2);
  });
});

describe('parseBackupManifest rejects', () => {
  const good = read('pg17/backup_manifest');

  it('a flipped byte anywhere in the body', () => {
    for (const offset of [0, 50, 300, Math.floor(good.length / 2), good.length - 120]) {
      const bad = Buffer.from(good);
      bad[offset] = bad[offset]! ^ 0x01;
      expectInvalid(bad);
    }
  });

  it('a wrong Manifest-Checksum', () => {
    const text = good.toString();
    const bad = text.replace(
      /"Manifest-Checksum": "([0-9a-f])/,
      (_m, c: string) => `"Manifest-Checksum": "${c === '0' ? '1' : '0'}`,
    );
    const err = expectInvalid(Buffer.from(bad));
    expect(err.expected).toMatch(/^[0-9a-f]{64}$/);
    expect(err.actual).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a duplicate path (correctly signed)', () => {
    const text = good.toString();
    const line = text.split('\n').find((l) => l.includes('"Path": "PG_VERSION"'))!;
    expectInvalid(resign(Buffer.from(text.replace(line, `${line}\n${line}`))));
  });

  it('an unknown version, v2 without System-Identifier, v1 with one', () => {
    const text = good.toString();
    expectInvalid(
      resign(
        Buffer.from(
          text.replace('"PostgreSQL-Backup-Manifest-Version": 2', '"PostgreSQL-Backup-Manifest-Version": 3'),
        ),
      ),
    );
    expectInvalid(resign(Buffer.from(text.replace(/"System-Identifier": \d+,\n/, ''))));
    expectInvalid(
      resign(
        Buffer.from(
          text.replace('"PostgreSQL-Backup-Manifest-Version": 2', '"PostgreSQL-Backup-Manifest-Version": 1'),
        ),
      ),
    );
  });

  it('missing trailing newline, one line, empty input, truncation, unknown fields, bad checksum length', () => {
    expectInvalid(good.subarray(0, good.length - 1));
    expectInvalid(Buffer.from('{}\n'));
    expectInvalid(Buffer.alloc(0));
    expectInvalid(good.subarray(0, 4000));
    const text = good.toString();
    expectInvalid(resign(Buffer.from(text.replace('"Size": 3,', '"Size": 3, "Color": "red",'))));
    expectInvalid(resign(Buffer.from(text.replace(/"Checksum": "([0-9a-f]{8})"/, '"Checksum": "$1aa"'))));
    expectInvalid(
      resign(Buffer.from(text.replace(/"Path": "PG_VERSION"/, '"Path": "PG_VERSION", "Encoded-Path": "00"'))),
    );
  });

  it('keeps the re-sign helper honest: an untouched re-signed manifest parses', () => {
    expect(parseBackupManifest(resign(good)).files.length).toBe(parseBackupManifest(good).files.length);
  });
});

describe('createFileChecksummer', () => {
  const data = Buffer.from('hello, postgres\n'.repeat(1000));
  it('produces the manifest hex form for each algorithm, incrementally', () => {
    const cases: Array<[Parameters<typeof createFileChecksummer>[0], string | undefined]> = [
      ['CRC32C', crc32cManifestHex(crc32c(data))],
      ['SHA224', createHash('sha224').update(data).digest('hex')],
      ['SHA256', createHash('sha256').update(data).digest('hex')],
      ['SHA384', createHash('sha384').update(data).digest('hex')],
      ['SHA512', createHash('sha512').update(data).digest('hex')],
      ['NONE', undefined],
    ];
    for (const [alg, expected] of cases) {
      const c = createFileChecksummer(alg);
      for (let i = 0; i < data.length; i += 777) c.update(data.subarray(i, i + 777));
      expect(c.digest()).toBe(expected);
    }
  });

  it('matches the server for real files (PG_VERSION of a PG14 CRC32C manifest)', () => {
    const m = parseBackupManifest(read('pg14/backup_manifest'));
    const c = createFileChecksummer('CRC32C');
    c.update(Buffer.from('14\n'));
    expect(c.digest()).toBe(m.byPath.get('PG_VERSION')!.checksum);
  });
});
