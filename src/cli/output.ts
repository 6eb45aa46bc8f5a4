/**
 * How the CLI speaks: results on stdout (human lines, or one JSON document with --json), errors on
 * stderr with their stable code and hint, a progress line on a TTY only. Exit code 0 only on success.
 * Nothing printed here may contain a secret: errors are printed from PgarkError.toJSON(), whose
 * messages are built without secrets.
 */
import { PgarkError } from '../index';

export interface OutputOptions {
  json?: boolean;
}

/** Exit codes: 0 success, 1 failure, 2 usage. archive-fetch uses its own (see its command). */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

export function printResult(opts: OutputOptions, human: string[], json: unknown): void {
  if (opts.json) {
    process.stdout.write(JSON.stringify(json, jsonReplacer, 2) + '\n');
  } else {
    for (const line of human) process.stdout.write(line + '\n');
  }
}

export function printError(opts: OutputOptions, err: unknown): void {
  if (opts.json) {
    const body = err instanceof PgarkError ? err.toJSON() : { name: 'Error', message: String(err) };
    process.stdout.write(JSON.stringify({ error: body }, jsonReplacer, 2) + '\n');
  }
  if (err instanceof PgarkError) {
    process.stderr.write(`pgark: error: ${err.message} [${err.code}]\n`);
    if (err.hint) process.stderr.write(`pgark: hint: ${err.hint}\n`);
  } else {
    process.stderr.write(`pgark: error: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

/** A single progress line, redrawn in place, only when stderr is a terminal. */
export function progressLine(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`);
}

export function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/** Runs a command action: prints the error and sets the exit code on failure. */
export async function runAction(
  opts: OutputOptions,
  action: () => Promise<void>,
  failureCode = EXIT_FAILURE,
): Promise<void> {
  try {
    await action();
  } catch (err) {
    endProgress();
    printError(opts, err);
    process.exitCode = failureCode;
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
