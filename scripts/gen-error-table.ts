/**
 * Generates the README's error table from the one registry (src/errors.ts ERROR_CODES) and writes it
 * between the `<!-- errors:start -->` and `<!-- errors:end -->` markers.
 * Usage: npx tsx scripts/gen-error-table.ts [--check]   (--check exits 1 when the README is stale)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CODES } from '../src/errors';

export function errorTable(): string {
  const rows = Object.entries(ERROR_CODES).map(
    ([code, spec]) => `| \`${code}\` | ${spec.kind} | ${spec.description.replace(/\|/g, '\\|')} |`,
  );
  return ['| code | class | meaning |', '|---|---|---|', ...rows].join('\n');
}

export function renderReadme(readme: string): string {
  return readme.replace(
    /<!-- errors:start -->[\s\S]*<!-- errors:end -->/,
    `<!-- errors:start -->\n${errorTable()}\n<!-- errors:end -->`,
  );
}

const isMain = process.argv[1]?.endsWith('gen-error-table.ts');
if (isMain) {
  const path = new URL('../README.md', import.meta.url);
  const before = readFileSync(path, 'utf8');
  const after = renderReadme(before);
  if (process.argv.includes('--check')) {
    if (before !== after) {
      process.stderr.write('README error table is stale: run npx tsx scripts/gen-error-table.ts\n');
      process.exit(1);
    }
  } else {
    writeFileSync(path, after);
  }
}
