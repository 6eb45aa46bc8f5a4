import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/errors';
import { scanTar, TarChunkParser, tarTerminator, type TarParseEvent } from '../../src/archive/tar-scan';

const FIX = join(__dirname, '../fixtures/backup');
const read = (p: string): Buffer => readFileSync(join(FIX, p));
const oidOf = (major: number): number =>
  (JSON.parse(read(`pg${major}/meta.json`).toString()) as { tablespaceOid: number }).tablespaceOid;

interface Seen {
  name: string;
  type: string;
  size: number;
  sha: string;
  linkname: string | undefined;
}

/** Members as TarChunkParser sees them, the input pushed in chunks of the given sizes (cycled). */
function parse(buf: Buffer, sizes: number[] = [buf.length]): Seen[] {
  const p = new TarChunkParser();
  const out: Seen[] = [];
  const events: TarParseEvent[] = [];
  let cur: { seen: Seen; h: ReturnType<typeof createHash>; n: number } | undefined;
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    p.push(Buffer.from(buf.subarray(off, off + n)), events);
    off += n;
    for (const ev of events) {
      if (ev.kind === 'header') {
        const { name, type, size, linkname } = ev.header;
        cur = { seen: { name, type, size, sha: '', linkname }, h: createHash('sha256'), n: 0 };
      } else if (ev.kind === 'data') {
        cur!.h.update(ev.data);
        cur!.n += ev.data.length;
      } else {
        expect(cur!.n).toBe(cur!.seen.type === 'file' ? cur!.seen.size : 0);
        cur!.seen.sha = cur!.h.digest('hex');
        out.push(cur!.seen);
        cur = undefined;
      }
    }
    events.length = 0;
  }
  p.end();
  return out;
}

/** The same members as scanTar (tar-stream) reports them. */
async function scanned(buf: Buffer): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const m of scanTar(Readable.from([buf]))) {
    const h = createHash('sha256');
    for await (const c of m.body as AsyncIterable<Buffer>) h.update(c);
    out.push({ name: m.name, type: m.type, size: m.size, sha: h.digest('hex'), linkname: m.linkname });
  }
  return out;
}

function packed(
  entries: { name: string; size?: number; type?: 'file' | 'symlink'; linkname?: string; body?: Buffer }[],
): Promise<Buffer> {
  const p = pack();
  for (const e of entries) {
    if (e.type === 'symlink') p.entry({ name: e.name, type: 'symlink', linkname: e.linkname! });
    else p.entry({ name: e.name, size: e.body!.length }, e.body!);
  }
  p.finalize();
  return (async () => {
    const chunks: Buffer[] = [];
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  })();
}

const expectArchiveInvalid = (f: () => unknown): void => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(IntegrityError);
    expect((e as IntegrityError).code).toBe('INTEGRITY_ARCHIVE_INVALID');
    return;
  }
  expect.fail('no error');
};

describe('TarChunkParser', () => {
  it('reports the same members as scanTar on real archives, at any chunking', async () => {
    for (const f of [
      'pg14/base-trimmed.tar',
      'pg17/base-trimmed.tar',
      `pg16/${oidOf(16)}.tar`,
      `pg18/${oidOf(18)}.tar`,
    ]) {
      const buf = read(f);
      const want = await scanned(buf);
      expect(want.length).toBeGreaterThan(3);
      for (const sizes of [[buf.length], [1], [7], [511], [512], [513], [3, 1021, 4099], [65536]]) {
        expect(parse(buf, sizes)).toEqual(want);
      }
    }
  });

  it('accepts an archive without the terminator (PG13/14) and ignores what follows a zero block', async () => {
    const raw = read(`pg14/${oidOf(14)}.tar.unterminated`);
    const a = parse(raw);
    expect(a).toEqual(await scanned(raw));
    const p = new TarChunkParser();
    const events: TarParseEvent[] = [];
    p.push(Buffer.concat([raw, tarTerminator(), Buffer.from('trailing garbage')]), events);
    expect(p.finished).toBe(true);
    p.end();
    expect(events.filter((e) => e.kind === 'header')).toHaveLength(a.length);
  });

  it('reads long names and link targets (pax records) as tar-stream writes them', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    const body = Buffer.alloc(3000, 9);
    const buf = await packed([
      { name: long, body },
      { name: 'l', type: 'symlink', linkname: `/${'t'.repeat(200)}` },
      { name: 'short', body: Buffer.from('x') },
    ]);
    const got = parse(buf, [100]);
    expect(got.map((m) => m.name)).toEqual([long, 'l', 'short']);
    expect(got[0]!.size).toBe(3000);
    expect(got[1]!.linkname).toBe(`/${'t'.repeat(200)}`);
    expect(got).toEqual(await scanned(buf));
  });

  it('decodes a GNU base-256 size (PostgreSQL writes it for members >= 8 GiB)', () => {
    const hdr = Buffer.from(read('pg14/base-trimmed.tar').subarray(0, 512));
    hdr.fill(0, 124, 136);
    hdr[124] = 0x80;
    let n = 10n * 1024n ** 3n;
    for (let i = 135; i > 124; i--, n >>= 8n) hdr[i] = Number(n & 0xffn);
    hdr.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += hdr[i]!;
    hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const events: TarParseEvent[] = [];
    new TarChunkParser().push(hdr, events);
    expect(events[0]).toMatchObject({
      kind: 'header',
      header: { name: 'backup_label', size: 10 * 1024 ** 3 },
    });
  });

  it('rejects a damaged header and a truncated archive with INTEGRITY_ARCHIVE_INVALID', () => {
    const tar = Buffer.from(read('pg14/base-trimmed.tar'));
    tar[1] = 0x41;
    expectArchiveInvalid(() => parse(tar));
    const whole = read(`pg16/${oidOf(16)}.tar`);
    expectArchiveInvalid(() => parse(whole.subarray(0, 512 * 7 + 100)));
    expectArchiveInvalid(() => parse(whole.subarray(0, 512 * 3 + 100)));
  });

  it('hands out slices of the pushed chunk, not copies', () => {
    const buf = read(`pg16/${oidOf(16)}.tar`);
    const events: TarParseEvent[] = [];
    new TarChunkParser().push(buf, events);
    const data = events.find((e) => e.kind === 'data') as { data: Buffer };
    expect(data.data.buffer).toBe(buf.buffer);
  });
});
