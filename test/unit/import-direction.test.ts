/**
 * Keeps the layering of conventions.md §2 true: imports flow
 * protocol → connection → replication → {archive, restore, verify, ops}; storage depends only on
 * errors/observe; nothing imports cli/. A backward edge fails this test.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname, '../../src');

/** The folders (or root files) each top-level module may import from. */
const ALLOWED: Record<string, string[]> = {
  errors: [],
  observe: [],
  lsn: ['errors'],
  options: ['errors', 'observe', 'lsn'],
  protocol: ['errors', 'lsn'],
  connection: ['errors', 'observe', 'lsn', 'options', 'protocol'],
  replication: ['errors', 'observe', 'lsn', 'options', 'protocol', 'connection'],
  storage: ['errors', 'observe', 'options'],
  'local-server': ['errors', 'observe', 'options', 'lsn'],
  verify: ['errors', 'observe', 'lsn', 'options', 'storage', 'archive-pure'],
  archive: [
    'errors',
    'observe',
    'lsn',
    'options',
    'protocol',
    'connection',
    'replication',
    'storage',
    'verify',
  ],
  restore: [
    'errors',
    'observe',
    'lsn',
    'options',
    'connection',
    'replication',
    'storage',
    'archive',
    'verify',
    'local-server',
  ],
  ops: [
    'errors',
    'observe',
    'lsn',
    'options',
    'connection',
    'replication',
    'storage',
    'archive',
    'verify',
    'local-server',
  ],
  retention: ['errors', 'observe', 'lsn', 'options', 'storage', 'archive'],
  cli: ['index'],
  index: ['*'],
};

function moduleOf(file: string): string {
  const rel = relative(SRC, file);
  const first = rel.split('/')[0]!;
  return first.endsWith('.ts') ? first.slice(0, -3) : first;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('import direction', () => {
  it('has no backward edge between src/ folders', () => {
    const violations: string[] = [];
    for (const file of walk(SRC)) {
      const from = moduleOf(file);
      const allowed = ALLOWED[from];
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:import|export)[^'"]*?from\s+['"](\.[^'"]+)['"]/g)) {
        const target = moduleOf(resolve(dirname(file), m[1]!));
        if (target === from) continue;
        // verify may use the pure archive readers (tar-scan, backup-label, wal-segment) but nothing that writes.
        const ok =
          allowed === undefined ||
          allowed.includes('*') ||
          allowed.includes(target) ||
          (from === 'verify' &&
            target === 'archive' &&
            /archive\/(tar-scan|backup-label|wal-segment|compression|repo-layout)/.test(m[1]!));
        if (!ok) violations.push(`${relative(SRC, file)} imports ${m[1]} (${from} → ${target})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('knows every top-level folder', () => {
    const unknown = readdirSync(SRC)
      .map((n) => (n.endsWith('.ts') ? n.slice(0, -3) : n))
      .filter((n) => !(n in ALLOWED));
    expect(unknown).toEqual([]);
  });
});
