/**
 * Makes a restored directory tree durable in one pass at the end, as PostgreSQL's own tools do
 * (fsync_pgdata in src/common/file_utils.c, run by initdb --sync-only, pg_basebackup, pg_rewind,
 * pg_combinebackup): every regular file, then every directory (so new entries are durable too).
 *
 * Why at the end rather than one fsync per file as it is written: a serial fsync after each of a
 * data directory's thousands of files waits for one journal commit per file, while the files
 * written first have long been written back by the time of a final pass. Durability is the same:
 * the restore reports completion (and removes its incomplete-marker) only after this pass.
 * Symlinks are not followed (pg_tblspc/<oid>): tablespace directories are synced on their own.
 */
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** fsyncs in flight at once: enough to keep a disk's queue busy, few file descriptors. */
const SYNC_CONCURRENCY = 16;

// Read-only is enough for fsync(2) on Linux and macOS, for files and directories alike.
async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncs every regular file under `root`, then every directory (deepest first, `root` last). */
export async function syncTree(root: string): Promise<void> {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    dirs.push(dir);
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) files.push(p);
    }
  };
  if (!(await lstat(root)).isDirectory()) return;
  await walk(root);
  await inBatches(files, fsyncPath);
  await inBatches(dirs.reverse(), fsyncPath);
}

async function inBatches(paths: string[], each: (p: string) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) await each(paths[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(SYNC_CONCURRENCY, paths.length) }, worker));
}

/** Files in writeback at once while the extraction goes on: each holds one libuv pool thread. */
const EARLY_WRITEBACK_CONCURRENCY = 1;

/**
 * Best-effort early writeback of files already written and closed, while the restore goes on
 * extracting: the disk writes the first files while the CPU parses and writes the next ones,
 * instead of all of it waiting for the final syncTree pass (a few GB of dirty pages are below the
 * kernel's background writeback threshold, so nothing is written before that pass otherwise).
 * Durability still comes from syncTree alone: an fdatasync here that fails is ignored, and files
 * not reached when the extraction ends are simply left to syncTree (then cheap for the rest).
 */
export class EarlyWriteback {
  private readonly queue: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  add(path: string): void {
    if (this.stopped) return;
    this.queue.push(path);
    this.kick();
  }

  private kick(): void {
    while (!this.stopped && this.inFlight.size < EARLY_WRITEBACK_CONCURRENCY && this.queue.length > 0) {
      const path = this.queue.shift()!;
      const done: Promise<void> = datasyncPath(path)
        .catch(() => undefined)
        .finally(() => {
          this.inFlight.delete(done);
          this.kick();
        });
      this.inFlight.add(done);
    }
  }

  /** Drops the files not started; waits for those in writeback. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    await Promise.allSettled([...this.inFlight]);
  }
}

async function datasyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
