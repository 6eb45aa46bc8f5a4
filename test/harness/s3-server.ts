/**
 * Starts a real S3-compatible server for tests: OpenStack Swift 2.30 with the s3api middleware
 * (Debian's python3-swift + memcached), configured by test/harness/swift/*.sh. One server per
 * integration run (see global-setup.ts); each test makes its own bucket (see s3.ts).
 *
 * Missing infrastructure fails loudly with the command that installs it; there is no silent skip.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SWIFT_DIR = join(dirname(fileURLToPath(import.meta.url)), 'swift');

export interface S3ServerInfo {
  endpoint: string;
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3Server extends S3ServerInfo {
  /** Where Swift keeps its config, logs and objects (removed by stop()). */
  dataDir: string;
  stop(): Promise<void>;
}

const INSTALL_HINT =
  'the S3 test server needs OpenStack Swift and memcached: ' +
  'apt-get update && apt-get install -y --no-install-recommends python3-swift memcached curl';

/** Throws with the install command when python3-swift, memcached or curl is missing. */
export function checkS3Prerequisites(): void {
  const missing: string[] = [];
  // /usr/bin/python3 on purpose: a pyenv python3 earlier on PATH does not see Debian's python3-swift.
  const py = spawnSync('/usr/bin/python3', ['-c', 'import swift'], { stdio: 'ignore' });
  if (py.status !== 0) missing.push('python3-swift (import swift failed under /usr/bin/python3)');
  for (const bin of ['memcached', 'curl']) {
    const r = spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    if (r.status !== 0) missing.push(bin);
  }
  if (missing.length > 0) {
    throw new Error(`${INSTALL_HINT} (missing: ${missing.join(', ')})`);
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A base port such that base..base+4 are all free on 127.0.0.1 (proxy, account, container, object, memcached). */
async function findBasePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const base = 20_000 + Math.floor(Math.random() * 8_000) * 5;
    let free = true;
    for (let p = base; p < base + 5 && free; p++) free = await portIsFree(p);
    if (free) return base;
  }
  throw new Error('no 5 consecutive free ports found on 127.0.0.1 for the Swift test server');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * start.sh waits for the proxy's /info, which answers before the account, container and object
 * servers listen; the first S3 call could then get 503. Wait for those ports too.
 */
async function waitForBackends(base: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (const port of [base + 1, base + 2, base + 3]) {
    while (!(await canConnect(port))) {
      if (Date.now() > deadline) throw new Error(`swift backend on port ${port} did not come up`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Starts Swift s3api on free ports with data under /tmp. Retries once on a port race. */
export async function startS3Server(): Promise<S3Server> {
  checkS3Prerequisites();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dataDir = mkdtempSync(join(tmpdir(), 'pgark-swift-'));
    const base = await findBasePort();
    try {
      await run('sh', [join(SWIFT_DIR, 'setup.sh'), dataDir, String(base)]);
      await run('sh', [join(SWIFT_DIR, 'start.sh'), dataDir, String(base)], { timeout: 60_000 });
      await waitForBackends(base);
    } catch (e) {
      lastError = e;
      await run('sh', [join(SWIFT_DIR, 'stop.sh'), dataDir]).catch(() => undefined);
      rmSync(dataDir, { recursive: true, force: true });
      continue;
    }
    let stopped = false;
    // Swift's servers setsid() away from us: if the run dies without calling stop(), kill them by
    // PID on the way out (exit handlers must be synchronous).
    const onExit = (): void => {
      if (!stopped) spawnSync('sh', [join(SWIFT_DIR, 'stop.sh'), dataDir], { stdio: 'ignore' });
    };
    process.once('exit', onExit);
    return {
      endpoint: `http://127.0.0.1:${base}`,
      region: 'us-east-1',
      accessKeyId: 'test:tester',
      secretAccessKey: 'testing',
      dataDir,
      async stop() {
        if (stopped) return;
        stopped = true;
        process.removeListener('exit', onExit);
        await run('sh', [join(SWIFT_DIR, 'stop.sh'), dataDir]);
      },
    };
  }
  const detail = lastError instanceof Error ? lastError.message : String(lastError);
  throw new Error(`the Swift S3 test server did not start: ${detail}`);
}
