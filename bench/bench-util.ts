/** Small pieces every bench shares: argument lookup, median, directory size, the CLI bundle. */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI_SOURCE = join(HERE, '..', 'src', 'cli', 'main.ts');
const ESBUILD = join(HERE, '..', 'node_modules', '.bin', 'esbuild');

/** The value after `--name` on the command line, else `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

/** The middle value (the upper one of the two middles for an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Bytes of every regular file below `dir`. */
export function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  }
  return n;
}

/**
 * Bundles the CLI into one ESM file (dependencies stay in node_modules), as tsup does for
 * dist/cli.js, so a bench runs it as plain JavaScript: neither tsx's start-up nor its memory count.
 */
export function bundleCli(outfile: string): void {
  const r = spawnSync(
    ESBUILD,
    [
      CLI_SOURCE,
      '--bundle',
      '--platform=node',
      '--format=esm',
      '--target=node20',
      '--packages=external',
      // A real `require` in the ESM bundle (for the library's lazy require of the AWS SDK).
      "--banner:js=import { createRequire as __pgarkCreateRequire } from 'node:module'; const require = __pgarkCreateRequire(import.meta.url);",
      `--outfile=${outfile}`,
      '--log-level=warning',
    ],
    { stdio: 'inherit' },
  );
  if (r.status !== 0) throw new Error('esbuild of the CLI failed');
}
