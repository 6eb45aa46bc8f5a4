import { defineConfig } from 'vitest/config';

// Two projects: `unit` (pure, parallel, no servers) and `integration` (real PostgreSQL and a real
// S3-compatible server started by test/harness). Integration files run in few workers: the machines
// have 2 cores and every file starts its own clusters.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
          // Projects with different maxWorkers need distinct group orders (vitest 4); unit runs first.
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/faults/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // CI only: one more attempt for an integration test that failed, because a whole CI run is
          // lost to one timing-sensitive failure on a loaded 2-core machine (servers, Swift and the test
          // share it). A real defect fails both attempts; a retried pass is listed by the reporter.
          retry: process.env.CI ? 1 : 0,
          pool: 'forks',
          maxWorkers: 2,
          fileParallelism: true,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
