import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/errors';
import {
  normaliseTarName,
  scanTar,
  tarTerminator,
  verifyArchiveAgainstManifest,
} from '../../src/archive/tar-scan';
import { parseBackupManifest } from '../../src/verify/manifest';

const FIX = join(__dirname, '../fixtures/backup');
const read = (p: string): Buffer => readFileSync(join(FIX, p));
const oidOf = (major: number): number =>
  (JSON.parse(read(`pg${major}/meta.json`).toString()) as { tablespaceOid: number }).tablespaceOid;

function chunked(buf: Buffer, sizes: number[]): Readable {
  const parts: Buffer[] = [];
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    parts.push(Buffer.from(buf.subarray(off, off + n)));
    off += n;
  }
  return Readable.from(parts);
}

interface Seen {
  name: string;
  type: string;
  size: number;
  sha: string;
  linkname: string | undefined;
}
async function collect(input: Readable): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const m of scanTar(input)) {
    const h = createHash('sha256');
    let n = 0;
    for await (const c of m.body as AsyncIterable<Buffer>) {
      h.update(c);
      n += c.length;
    }
    expect(n).toBe(m.type === 'file' ? m.size : 0);
    out.push({ name: m.name, type: m.type, size: m.size, sha: h.digest('hex'), linkname: m.linkname });
  }
  return out;
}

async function expectArchiveInvalid(p: Promise<unknown>): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(IntegrityError);
  await p.catch((e: IntegrityError) => expect(e.code).toBe('INTEGRITY_ARCHIVE_INVALID'));
}

describe('scanTar on real archives', () => {
  it('reads the trimmed PG14 base.tar: names normalised, types and sizes', async () => {
    const members = await collect(Readable.from([read('pg14/base-trimmed.tar')]));
    expect(members.map((m) => m.name)).toEqual([
      'backup_label',
      'tablespace_map',
      'PG_VERSION',
      'global/pg_filenode.map',
      'pg_wal',
      'pg_wal/archive_status',
      'pg_xact/0000',
      'pg_tblspc',
      'global/pg_control',
    ]);
    expect(members.find((m) => m.name === 'pg_wal/archive_status')!.type).toBe('directory');
    expect(members.find((m) => m.name === 'global/pg_control')!.size).toBe(8192);
    expect(members.find((m) => m.name === 'PG_VERSION')!.sha).toBe(
      createHash('sha256').update('14\n').digest('hex'),
    );
  });

  it('reads the PG17 symlink for pg_tblspc/<oid> and ./pg_wal/summaries', async () => {
    const members = await collect(Readable.from([read('pg17/base-trimmed.tar')]));
    const link = members.find((m) => m.type === 'symlink')!;
    expect(link.name).toBe(`pg_tblspc/${oidOf(17)}`);
    expect(link.linkname).toMatch(/^\/tmp\/.*ts17$/);
    expect(members.map((m) => m.name)).toContain('pg_wal/summaries');
  });

  it('reads PG14 tablespace archive without the 1024-byte terminator, and with tarTerminator() appended', async () => {
    const raw = read(`pg14/${oidOf(14)}.tar.unterminated`);
    const a = await collect(Readable.from([raw]));
    const b = await collect(Readable.from([raw, tarTerminator()]));
    expect(a.length).toBeGreaterThan(3);
    expect(b).toEqual(a);
    expect(tarTerminator()).toEqual(Buffer.alloc(1024));
  });

  it('gives identical members when the input is split at odd chunk sizes', async () => {
    const buf = read(`pg16/${oidOf(16)}.tar`);
    const whole = await collect(Readable.from([buf]));
    for (const sizes of [[1], [7], [511], [513], [3, 1021, 4099], [100_000]]) {
      expect(await collect(chunked(buf, sizes))).toEqual(whole);
    }
  });

  it('lets a consumer skip bodies (drained on next) and break early (input destroyed)', async () => {
    const names: string[] = [];
    for await (const m of scanTar(Readable.from([read(`pg16/${oidOf(16)}.tar`)]))) names.push(m.name);
    expect(names.length).toBeGreaterThan(4);
    const src = Readable.from([read(`pg16/${oidOf(16)}.tar`)]);
    for await (const m of scanTar(src)) {
      expect(m.name).toMatch(/^PG_16_/);
      break;
    }
    expect(src.destroyed).toBe(true);
  });

  it('parses a GNU base-256 size field (as PostgreSQL writes for members >= 8 GiB)', async () => {
    const tar = Buffer.from(read('pg14/base-trimmed.tar'));
    // Re-encode the first member's size (backup_label) in base-256 form, fix the header checksum.
    const size = parseInt(tar.subarray(124, 135).toString(), 8);
    const setBase256 = (hdr: Buffer, n: bigint): void => {
      hdr.fill(0, 124, 136);
      hdr[124] = 0x80;
      for (let i = 135; i > 124; i--, n >>= 8n) hdr[i] = Number(n & 0xffn);
      hdr.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += hdr[i]!;
      hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    };
    setBase256(tar.subarray(0, 512), BigInt(size));
    const members = await collect(Readable.from([tar]));
    expect(members[0]!.name).toBe('backup_label');
    expect(members[0]!.size).toBe(size);
    expect(members).toHaveLength(9);

    // A 10 GiB member: the header decodes exactly; we stop before its data.
    const big = Buffer.from(read('pg14/base-trimmed.tar').subarray(0, 1024));
    setBase256(big.subarray(0, 512), 10n * 1024n ** 3n);
    for await (const m of scanTar(Readable.from([big]))) {
      expect(m.size).toBe(10 * 1024 ** 3);
      break;
    }
  });

  it('rejects a damaged header and a truncated member with INTEGRITY_ARCHIVE_INVALID', async () => {
    const tar = Buffer.from(read('pg14/base-trimmed.tar'));
    tar[1] = 0x41; // name byte: header checksum no longer matches
    await expectArchiveInvalid(collect(Readable.from([tar])));
    const cut = read(`pg16/${oidOf(16)}.tar`).subarray(0, 512 * 7 + 100);
    await expectArchiveInvalid(collect(Readable.from([cut])));
  });

  it('passes input errors through unchanged', async () => {
    const boom = new IntegrityError('INTEGRITY_CHECKSUM_MISMATCH', 'upstream failed');
    const src = new Readable({
      read() {
        this.destroy(boom);
      },
    });
    await expect(collect(src)).rejects.toBe(boom);
  });

  it('holds the input while a member body is unread (bounded memory)', async () => {
    const p = pack();
    p.entry({ name: 'big', size: 8 * 1024 * 1024 }, Buffer.alloc(8 * 1024 * 1024, 7));
    p.entry({ name: 'after' }, 'x');
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
    const archive = Buffer.concat(chunks);
    let pulled = 0;
    const src = Readable.from(
      (function* () {
        for (let off = 0; off < archive.length; off += 65536) {
          pulled += Math.min(65536, archive.length - off);
          yield archive.subarray(off, off + 65536);
        }
      })(),
    );
    const it = scanTar(src)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.name).toBe('big');
    await new Promise((r) => setTimeout(r, 100));
    expect(pulled).toBeLessThan(1024 * 1024);
    const second = await it.next(); // drains 'big'
    expect(second.value?.name).toBe('after');
    expect(pulled).toBe(archive.length);
    await it.return?.(undefined);
  });

  it('stops with AbortError when the signal is aborted mid-scan', async () => {
    const ac = new AbortController();
    const scan = (async () => {
      for await (const m of scanTar(chunked(read(`pg16/${oidOf(16)}.tar`), [512]), { signal: ac.signal })) {
        if (m.type === 'file') ac.abort();
        for await (const _ of m.body) void _;
      }
    })();
    await expect(scan).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('normalises names', () => {
    expect(normaliseTarName('./pg_wal/archive_status/')).toBe('pg_wal/archive_status');
    expect(normaliseTarName('base/1/')).toBe('base/1');
    expect(normaliseTarName('backup_label')).toBe('backup_label');
  });
});

describe('verifyArchiveAgainstManifest', () => {
  it.each([
    [14, 'pg14/backup_manifest', (o: number) => `pg14/${o}.tar.unterminated`],
    [16, 'pg16/backup_manifest', (o: number) => `pg16/${o}.tar`],
    [18, 'pg18/backup_manifest', (o: number) => `pg18/${o}.tar`],
  ])('a real PG%i tablespace archive matches its manifest', async (major, mf, tarName) => {
    const oid = oidOf(major);
    const manifest = parseBackupManifest(read(mf));
    const r = await verifyArchiveAgainstManifest(chunked(read(tarName(oid)), [777]), manifest, {
      tablespaceOid: oid,
    });
    expect(r).toMatchObject({
      ok: true,
      notInManifest: [],
      sizeMismatches: [],
      checksumMismatches: [],
      missing: [],
    });
    expect(r.filesChecked).toBe(manifest.files.filter((f) => f.path.startsWith(`pg_tblspc/${oid}/`)).length);
  });

  it('reports checksum and size mismatches, extra and missing files', async () => {
    const oid = oidOf(16);
    const manifest = parseBackupManifest(read('pg16/backup_manifest'));
    const tar = Buffer.from(read(`pg16/${oid}.tar`));
    // Flip one data byte of the first regular file with data (its body follows its header).
    let off = 0;
    let flipped = '';
    while (off < tar.length) {
      const size = parseInt(tar.subarray(off + 124, off + 135).toString() || '0', 8);
      if (tar[off + 156] === 0x30 && size > 0) {
        tar[off + 512 + 100] = tar[off + 512 + 100]! ^ 0xff;
        flipped = tar
          .subarray(off, off + 100)
          .toString()
          .replace(/\0.*$/s, '');
        break;
      }
      off += 512 + Math.ceil(size / 512) * 512;
    }
    const r = await verifyArchiveAgainstManifest(Readable.from([tar]), manifest, { tablespaceOid: oid });
    expect(r.ok).toBe(false);
    expect(r.checksumMismatches.map((m) => m.path)).toEqual([`pg_tblspc/${oid}/${flipped}`]);

    // The same archive checked as if it were another tablespace: everything is extra, nothing of oid is missing.
    const other = await verifyArchiveAgainstManifest(Readable.from([read(`pg16/${oid}.tar`)]), manifest, {
      tablespaceOid: 1,
    });
    expect(other.notInManifest.length).toBeGreaterThan(0);
    expect(other.missing).toEqual([]);

    // A size mismatch: a manifest whose entry claims another size (edit the parsed object).
    const edited = parseBackupManifest(read('pg16/backup_manifest'));
    const entry = edited.byPath.get(`pg_tblspc/${oid}/${flipped}`)!;
    entry.size += 1;
    const s = await verifyArchiveAgainstManifest(Readable.from([read(`pg16/${oid}.tar`)]), edited, {
      tablespaceOid: oid,
    });
    expect(s.sizeMismatches).toEqual([
      { path: entry.path, expected: String(entry.size), actual: String(entry.size - 1) },
    ]);
    expect(s.checksumMismatches).toEqual([]);
  });

  it('checks a trimmed base archive: present files match, the rest is missing, pg_wal and tablespaces are not', async () => {
    const manifest = parseBackupManifest(read('pg14/backup_manifest'));
    const r = await verifyArchiveAgainstManifest(Readable.from([read('pg14/base-trimmed.tar')]), manifest);
    expect(r.notInManifest).toEqual([]);
    expect(r.sizeMismatches).toEqual([]);
    expect(r.checksumMismatches).toEqual([]);
    expect(r.filesChecked).toBe(6); // backup_label, tablespace_map, PG_VERSION, pg_filenode.map, pg_xact/0000, pg_control
    expect(r.missing.some((p) => p.startsWith('pg_tblspc/') || p.startsWith('pg_wal/'))).toBe(false);
    const ignored = (p: string): boolean => p === 'postgresql.auto.conf';
    expect(r.missing.length).toBe(
      manifest.files.filter((f) => !f.path.startsWith('pg_tblspc/') && !ignored(f.path)).length - 6,
    );
  });
});
