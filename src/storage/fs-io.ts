/**
 * Small file-system primitives shared by the fs driver, its fixed-size files and the restore's
 * archive extraction: one implementation of each durability-relevant step.
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** The errno code (`ENOENT`, `EEXIST`, …) of a Node fs error, if any. */
export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** fsync a directory so that entries created, renamed or linked in it are durable. */
export async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * writev until every byte of `buffers` is written (a regular file may take fewer bytes than asked),
 * at `position` when given, else at the file's current offset. A write that makes no progress
 * (never on a regular file) throws a plain Error for the caller's error mapping.
 */
export async function writevAll(fh: FileHandle, buffers: Buffer[], position?: number): Promise<void> {
  let rest = buffers;
  let pos = position;
  while (rest.length > 0) {
    const { bytesWritten } = pos === undefined ? await fh.writev(rest) : await fh.writev(rest, pos);
    if (pos !== undefined) pos += bytesWritten;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      if (skip > 0 || b.length > 0) next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    if (bytesWritten === 0 && next.length > 0) throw new Error('a write made no progress');
    rest = next;
  }
}
