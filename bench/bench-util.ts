/** Small pieces every bench shares: argument lookup, median, directory size, the CLI bundle. */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
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

/** The median (the upper one of an even count); NaN for no values. */
export const median = (xs: number[]): number =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN;

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

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;

/** utime + stime of a process in seconds, from /proc/<pid>/stat; undefined once it is gone. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of proc(5)
  } catch {
    return undefined;
  }
}
