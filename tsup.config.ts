import { defineConfig } from 'tsup';

// The library (ESM + CJS + .d.ts) and the CLI (ESM, with a shebang) are built separately:
// `exports` exposes `.` only; the CLI is reached through the `bin` entry.
export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
    // import.meta.url in the CJS build (and __dirname in the ESM one): modules locate package files
    // (the CLI script, optional native codecs) relative to themselves.
    shims: true,
  },
  {
    entry: { cli: 'src/cli/main.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    banner: { js: '#!/usr/bin/env node' },
  },
]);
