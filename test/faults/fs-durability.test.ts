/**
 * The local-directory driver's durability order, observed on the real system calls (strace):
 * the temporary file is fsynced before it is renamed (or linked, for ifAbsent) to its final name,
 * the directory is fsynced after the rename, and every directory the put creates is fsynced into its
 * parent. A crash test (fs-faults.test.ts) shows nothing half-written is visible; this one shows the
 * bytes and the name are durable when put() resolves. strace is required: missing, the test fails
 * with what to install (no silent skip).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Call {
  name: string;
  /** The argument text as strace printed it (with -y, fds carry their path: `21</a/b>`). */
  args: string;
  start: number;
  end: number;
  ok: boolean;
}

/** Parses `strace -f -y` output into calls with the line index of their start and end. */
function parseStrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<string, Call>();
  text.split('\n').forEach((raw, i) => {
    const m = /^(?:\[pid\s+)?(\d+)\]?\s+(.*)$/.exec(raw);
    if (!m) return;
    const pid = m[1]!;
    const line = m[2]!;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(line);
    if (resumed) {
      const c = pending.get(pid);
      if (c && c.name === resumed[1]) {
        c.end = i;
        c.ok = /\)\s+=\s+0\b/.test(resumed[2]!);
        pending.delete(pid);
      }
      return;
    }
    const call = /^(\w+)\((.*)$/.exec(line);
    if (!call) return;
    const c: Call = { name: call[1]!, args: call[2]!, start: i, end: i, ok: false };
    if (/<unfinished \.\.\.>$/.test(line)) pending.set(pid, c);
    else c.ok = /\)\s+=\s+0\b/.test(line);
    calls.push(c);
  });
  return calls;
}

const isSync = (c: Call): boolean => c.name === 'fsync' || c.name === 'fdatasync';
/** The path of the fd argument of an fsync (`21</x/y>` → `/x/y`). */
const fdPath = (c: Call): string | undefined => /^\d+<([^>]*)>/.exec(c.args)?.[1];
/** The quoted path arguments of rename/renameat/link/linkat/mkdir. */
const pathArgs = (c: Call): string[] => [...c.args.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);

describe('fs driver durability order (strace)', () => {
  let base: string;
  let root: string;
  let calls: Call[];

  beforeAll(() => {
    const which = spawnSync('sh', ['-c', 'command -v strace'], { encoding: 'utf8' });
    if (which.status !== 0) {
      throw new Error('test/faults/fs-durability.test.ts needs strace: apt-get install -y strace');
    }
    base = mkdtempSync(join(tmpdir(), 'pgark-durability-'));
    root = join(base, 'repo');
    const script = join(base, 'writer.mts');
    writeFileSync(
      script,
      `import { Readable } from 'node:stream';
import { createFsStorage } from ${JSON.stringify(join(REPO_ROOT, 'src/storage/fs-storage.ts'))};
const storage = createFsStorage({ root: ${JSON.stringify(root)} });
await storage.put('top', Buffer.from('first'));
await storage.put('a/b/deep', Readable.from([Buffer.alloc(3 * 1024 * 1024, 1), Buffer.alloc(5, 2)]));
await storage.put('a/b/cond', Buffer.from('once'), { ifAbsent: true });
await storage.close();
process.stdout.write('done\\n');
`,
    );
    const log = join(base, 'strace.log');
    const r = spawnSync(
      'strace',
      [
        '-f',
        '-y',
        '-s',
        '512',
        '-e',
        'trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat,mkdir,mkdirat',
        '-o',
        log,
        process.execPath,
        '--import',
        'tsx',
        script,
      ],
      { cwd: REPO_ROOT, encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('done');
    calls = parseStrace(readFileSync(log, 'utf8'));
  }, 180_000);

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  /** The rename (or link) that gave `key` its final name, and the temporary path it came from. */
  function publish(key: string, kind: 'rename' | 'link'): { call: Call; temp: string } {
    const final = join(root, key);
    const c = calls.find(
      (x) => x.ok && x.name.startsWith(kind) && pathArgs(x).length === 2 && pathArgs(x)[1] === final,
    );
    expect(c, `${kind} to ${final}`).toBeDefined();
    const temp = pathArgs(c!)[0]!;
    expect(dirname(temp)).toBe(dirname(final));
    expect(temp).not.toBe(final);
    return { call: c!, temp };
  }

  it.each([
    ['top', 'rename'],
    ['a/b/deep', 'rename'],
    ['a/b/cond', 'link'],
  ] as const)('%s: the temp file is fsynced before its %s, the directory after it', (key, kind) => {
    const { call, temp } = publish(key, kind);
    const fileSync = calls.find((c) => isSync(c) && c.ok && fdPath(c) === temp && c.end < call.start);
    expect(fileSync, `fsync of ${temp} finished before the ${kind}`).toBeDefined();
    const dir = dirname(join(root, key));
    const dirSync = calls.find((c) => c.name === 'fsync' && c.ok && fdPath(c) === dir && c.start > call.end);
    expect(dirSync, `fsync of ${dir} after the ${kind}`).toBeDefined();
  });

  it('every directory a put creates is fsynced into its parent', () => {
    for (const dir of [join(root, 'a'), join(root, 'a', 'b')]) {
      const made = calls.find((c) => c.name.startsWith('mkdir') && c.ok && pathArgs(c).includes(dir));
      expect(made, `mkdir ${dir}`).toBeDefined();
      const parentSync = calls.find(
        (c) => c.name === 'fsync' && c.ok && fdPath(c) === dirname(dir) && c.start > made!.end,
      );
      expect(parentSync, `fsync of ${dirname(dir)} after mkdir ${dir}`).toBeDefined();
    }
  });
});
