/**
 * The linter rules issue 3 asks for, proven on code rather than on the config text: in src/ (outside
 * src/cli) a console call and a floating promise are errors; the CLI may print. Uses the project's
 * own eslint.config.js through ESLint's API (type-aware, so it takes a while on a loaded machine).
 * Whether the tree is clean is `npm run lint`'s job, not this test's.
 */
import { resolve } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const SNIPPET = [
  'export async function later(): Promise<void> {}',
  'export function now(): void {',
  "  console.log('x');",
  '  later();',
  '}',
  '',
].join('\n');

async function errorsFor(filePath: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: REPO_ROOT });
  // lintText with the path of an existing file: linted under that file's config and TS project.
  const [result] = await eslint.lintText(SNIPPET, { filePath: resolve(REPO_ROOT, filePath) });
  return result!.messages.filter((m) => m.severity === 2).map((m) => m.ruleId ?? m.message);
}

describe('lint rules', () => {
  it('src/: console and floating promises are errors', async () => {
    const errors = await errorsFor('src/lsn.ts');
    expect(errors).toContain('no-console');
    expect(errors).toContain('@typescript-eslint/no-floating-promises');
  }, 180_000);

  it('src/cli/: console is allowed, floating promises are still errors', async () => {
    const errors = await errorsFor('src/cli/main.ts');
    expect(errors).not.toContain('no-console');
    expect(errors).toContain('@typescript-eslint/no-floating-promises');
  }, 180_000);
});
