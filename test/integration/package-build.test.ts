/**
 * The package as a consumer sees it (issue 3, "Package"): built by tsup into ESM + CJS + .d.ts,
 * `exports` exposing `.` only, a working `bin`. The build goes to a temporary directory (the
 * shared dist/ is left alone), laid out like an installed package: <tmp>/pkg/{package.json,dist}
 * with its dependencies, and a consumer whose node_modules/pgark points at it. Then:
 * - `import` and `require` of 'pgark' both load, with the same export names, and errors that keep
 *   their class and code;
 * - a deep import ('pgark/dist/index.js', 'pgark/package.json') is refused (exports is `.` only);
 * - TypeScript resolves the types for an ESM and a CJS consumer (node16 resolution), and they are
 *   real types (a wrong use is a type error);
 * - the `bin` file runs and prints its usage.
 * Not a unit test: the build takes about a minute on the 2-core machine.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const pkgJson = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));

function node(cwd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('package.json', () => {
  it('is pgark for Node >= 20, ESM, exports "." only, with a pgark bin', () => {
    expect(pkgJson.name).toBe('pgark');
    expect(pkgJson.type).toBe('module');
    expect(pkgJson.engines.node).toBe('>=20');
    expect(Object.keys(pkgJson.exports)).toEqual(['.']);
    expect(Object.keys(pkgJson.exports['.']).sort()).toEqual(['import', 'require']);
    expect(Object.keys(pkgJson.bin)).toEqual(['pgark']);
    expect(pkgJson.files).toEqual(['dist']);
    for (const dep of [
      'pg',
      'pg-protocol',
      '@aws-sdk/client-s3',
      '@aws-sdk/lib-storage',
      'tar-stream',
      'pg-copy-streams',
    ])
      expect(pkgJson.dependencies[dep], dep).toBeDefined();
  });
});

describe('the built package, installed in a consumer', () => {
  let base: string;
  let pkg: string;
  let consumer: string;

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'pgark-pkg-'));
    pkg = join(base, 'pkg');
    consumer = join(base, 'consumer');
    mkdirSync(pkg);
    execFileSync(join(REPO_ROOT, 'node_modules/.bin/tsup'), ['--out-dir', join(pkg, 'dist'), '--silent'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 540_000,
    });
    cpSync(join(REPO_ROOT, 'package.json'), join(pkg, 'package.json'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(pkg, 'node_modules'));
    mkdirSync(join(consumer, 'node_modules'), { recursive: true });
    symlinkSync(pkg, join(consumer, 'node_modules', 'pgark'));
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  }, 600_000);

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('builds ESM, CJS and both declaration files', () => {
    for (const f of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts', 'cli.js']) {
      expect(readFileSync(join(pkg, 'dist', f)).length, f).toBeGreaterThan(1000);
    }
    // Each exports condition points at a file that was built.
    const cond = pkgJson.exports['.'];
    for (const p of [cond.import.default, cond.import.types, cond.require.default, cond.require.types])
      expect(readFileSync(join(pkg, p)).length, p).toBeGreaterThan(1000);
  });

  it('import and require of pgark load the same API; errors keep class and code', () => {
    const probe = (m: string): string =>
      `const names = Object.keys(m).sort();
       const e = new m.StorageError('STORAGE_IO', 'x', { key: 'k' });
       const out = { names, isPgark: e instanceof m.PgarkError, code: e.code, lsn: String(m.parseLsn('0/0174B2C8')),
         hasConn: typeof m.ReplicationConnection, s3: typeof m.createS3Storage, fs: typeof m.createFsStorage };
       process.stdout.write(JSON.stringify(out));`.replace(/\bm\b/g, m);
    const esm = node(consumer, [
      '--input-type=module',
      '-e',
      `import * as pgark from 'pgark';\n${probe('pgark')}`,
    ]);
    expect(esm.status, esm.stderr).toBe(0);
    const cjs = node(consumer, [
      '--input-type=commonjs',
      '-e',
      `const pgark = require('pgark');\n${probe('pgark')}`,
    ]);
    expect(cjs.status, cjs.stderr).toBe(0);
    const a = JSON.parse(esm.stdout);
    const b = JSON.parse(cjs.stdout);
    expect(a.names.length).toBeGreaterThan(30);
    expect(b.names).toEqual(a.names.filter((n: string) => n !== 'default'));
    for (const r of [a, b]) {
      expect(r).toMatchObject({
        isPgark: true,
        code: 'STORAGE_IO',
        lsn: String(0x174b2c8),
        hasConn: 'function',
        s3: 'function',
        fs: 'function',
      });
    }
  });

  it('refuses deep imports: exports exposes "." only', () => {
    for (const spec of ['pgark/dist/index.js', 'pgark/package.json', 'pgark/dist/cli.js']) {
      const esm = node(consumer, [
        '--input-type=module',
        '-e',
        `import(${JSON.stringify(spec)}).then(() => process.stdout.write('loaded'), (e) => process.stdout.write(String(e.code)));`,
      ]);
      expect(esm.stdout, spec).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
      const cjs = node(consumer, [
        '--input-type=commonjs',
        '-e',
        `try { require(${JSON.stringify(spec)}); process.stdout.write('loaded') } catch (e) { process.stdout.write(String(e.code)) }`,
      ]);
      expect(cjs.stdout, spec).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
    }
  });

  it('TypeScript resolves real types for ESM and CJS consumers (node16 resolution)', () => {
    writeFileSync(
      join(consumer, 'esm.mts'),
      `import { parseLsn, StorageError, type Storage } from 'pgark';\nconst l: bigint = parseLsn('0/1');\nconst e: StorageError = new StorageError('STORAGE_IO', 'x');\nexport const s: Storage | undefined = undefined;\nexport { l, e };\n`,
    );
    writeFileSync(
      join(consumer, 'cjs.cts'),
      `import pgark = require('pgark');\nconst l: bigint = pgark.parseLsn('0/1');\nexport = l;\n`,
    );
    writeFileSync(
      join(consumer, 'wrong.mts'),
      `import { parseLsn } from 'pgark';\nexport const n: number = parseLsn('0/1');\n`,
    );
    const tsc = (files: string[]): { status: number | null; out: string } => {
      const r = spawnSync(
        process.execPath,
        [
          join(REPO_ROOT, 'node_modules/typescript/bin/tsc'),
          '--noEmit',
          '--strict',
          '--module',
          'node16',
          '--moduleResolution',
          'node16',
          '--target',
          'es2022',
          '--typeRoots',
          join(REPO_ROOT, 'node_modules/@types'),
          '--types',
          'node',
          '--skipLibCheck',
          ...files,
        ],
        { cwd: consumer, encoding: 'utf8', timeout: 300_000 },
      );
      return { status: r.status, out: r.stdout + r.stderr };
    };
    const good = tsc(['esm.mts', 'cjs.cts']);
    expect(good.status, good.out).toBe(0);
    const bad = tsc(['wrong.mts']);
    expect(bad.status).not.toBe(0);
    expect(bad.out).toMatch(/TS2322/); // bigint is not assignable to number: the types are real, not any
  }, 300_000);

  it('the bin runs and prints its usage', () => {
    const bin = join(pkg, pkgJson.bin.pgark);
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const r = node(consumer, [bin, '--help']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: pgark\b/);
  });
});
