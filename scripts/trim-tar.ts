/**
 * Fixture helper for scripts/capture-backup-fixtures.sh: copies chosen members of a real tar archive, block for
 * block (header and padded data untouched), into a smaller archive ended by the 1024-byte terminator.
 * Usage: tsx scripts/trim-tar.ts <in.tar> <out.tar> <name,name,prefix/*,...>
 * Names are compared without a leading "./" and trailing "/" (PostgreSQL writes "./pg_wal/archive_status").
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

const [input, output, list] = process.argv.slice(2);
if (!input || !output || !list) throw new Error('usage: trim-tar.ts <in.tar> <out.tar> <names>');
const wanted = list.split(',');
const matches = (name: string): boolean =>
  wanted.some((w) => (w.endsWith('/*') ? name.startsWith(w.slice(0, -1)) : name === w));

const fin = openSync(input, 'r');
const fout = openSync(output, 'w');
const header = Buffer.alloc(512);
let pos = 0;
let kept = 0;
for (;;) {
  if (readSync(fin, header, 0, 512, pos) < 512 || header.every((b) => b === 0)) break;
  const rawName = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
  const name = rawName.replace(/^\.\//, '').replace(/\/$/, '');
  const size = parseInt(header.subarray(124, 136).toString('latin1').replace(/[\0 ]/g, '') || '0', 8);
  const total = 512 + Math.ceil(size / 512) * 512;
  if (matches(name)) {
    const member = Buffer.alloc(total);
    readSync(fin, member, 0, total, pos);
    writeSync(fout, member);
    kept++;
  }
  pos += total;
}
writeSync(fout, Buffer.alloc(1024));
closeSync(fin);
closeSync(fout);
process.stderr.write(`trim-tar: kept ${kept} members of ${input}\n`);
