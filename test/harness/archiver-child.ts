/**
 * A WAL archiver in its own process, for tests that SIGKILL it: `tsx test/harness/archiver-child.ts`
 * with the configuration as JSON in PGARK_ARCHIVER_CHILD (connection, slot, synchronous, and
 * either `fsRoot` or `s3` storage options). Every event is written to stdout as one JSON line;
 * SIGTERM stops it cleanly (exit 0), and the final result is printed as `{"type":"result",…}`.
 */
import {
  startWalArchiver,
  createFsStorage,
  createS3Storage,
  formatLsn,
  type ReplicationConnectionOptions,
  type S3StorageOptions,
} from '../../src/index';

interface ChildConfig {
  connection: ReplicationConnectionOptions;
  slot: string;
  createSlot?: boolean;
  synchronous?: boolean;
  blockingFlush?: boolean;
  stanza?: string;
  flushIntervalMs?: number;
  statusIntervalMs?: number;
  fsRoot?: string;
  s3?: S3StorageOptions;
}

const cfg = JSON.parse(process.env.PGARK_ARCHIVER_CHILD ?? '{}') as ChildConfig;
const storage = cfg.fsRoot ? createFsStorage({ root: cfg.fsRoot }) : createS3Storage(cfg.s3!);
const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? formatLsn(v) : v)) + '\n');
};
const archiver = startWalArchiver({
  connection: cfg.connection,
  storage,
  slot: cfg.slot,
  createSlot: cfg.createSlot ?? true,
  synchronous: cfg.synchronous ?? false,
  blockingFlush: cfg.blockingFlush ?? false,
  ...(cfg.stanza ? { stanza: cfg.stanza } : {}),
  ...(cfg.flushIntervalMs ? { flushIntervalMs: cfg.flushIntervalMs } : {}),
  ...(cfg.statusIntervalMs ? { statusIntervalMs: cfg.statusIntervalMs } : {}),
  reconnectInitialMs: 200,
  reconnectMaxMs: 2000,
  onEvent: (e) => out(e),
});
process.once('SIGTERM', () => void archiver.stop());
archiver.done.then(
  async (r) => {
    out({ type: 'result', ...r });
    await storage.close();
    process.exitCode = 0;
  },
  async (e: unknown) => {
    out({ type: 'error', code: (e as { code?: string }).code, message: String((e as Error).message) });
    await storage.close();
    process.exitCode = 1;
  },
);
