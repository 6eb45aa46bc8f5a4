/** A repository (stanza) that belongs to another cluster is refused with a typed error, at once. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError, startWalArchiver, createFsStorage } from '../../src/index';
import { startCluster, type TestCluster } from '../harness/postgres';

describe('wal archiver refuses another cluster (PG16, fs)', () => {
  let a: TestCluster;
  let b: TestCluster;
  let dir: string;
  beforeAll(async () => {
    [a, b] = await Promise.all([startCluster({ major: 16 }), startCluster({ major: 16 })]);
    dir = mkdtempSync(join(tmpdir(), 'pgark-walid-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await Promise.all([a?.destroy(), b?.destroy()]);
  });

  it('archives cluster A, then refuses cluster B into the same stanza', async () => {
    const storage = createFsStorage({ root: dir });
    const conn = (c: TestCluster) => ({
      ...c.connectionConfig({ user: c.replicationUser }),
      ssl: 'disable' as const,
    });
    const first = startWalArchiver({ connection: conn(a), storage, slot: 'arch', createSlot: true });
    await new Promise((r) => setTimeout(r, 1000));
    await first.stop();
    await first.done;

    const second = startWalArchiver({
      connection: conn(b),
      storage,
      slot: 'arch',
      createSlot: true,
      reconnectInitialMs: 50,
    });
    const err = await second.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).code).toBe('INTEGRITY_SYSTEM_ID_MISMATCH');
    expect(second.stats().state).toBe('failed');
    await storage.close();
  });
});
