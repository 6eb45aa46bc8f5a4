import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderReadme } from '../../scripts/gen-error-table';
import { ERROR_CODES, PgarkError } from '../../src/errors';
import * as api from '../../src/index';

describe('error registry', () => {
  it('is documented in the README exactly as generated (npx tsx scripts/gen-error-table.ts)', () => {
    const readme = readFileSync(resolve(__dirname, '../../README.md'), 'utf8');
    expect(renderReadme(readme)).toBe(readme);
  });

  it('maps every code to a class the public API exports', () => {
    for (const spec of Object.values(ERROR_CODES)) {
      const cls = (api as Record<string, unknown>)[spec.kind];
      expect(typeof cls).toBe('function');
      expect((cls as { prototype: unknown }).prototype instanceof PgarkError).toBe(true);
    }
  });
});
