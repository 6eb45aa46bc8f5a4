/**
 * Issue 4 points the contract suite and the s3/fault tests do not prove on their own, against the
 * real Swift s3api server of the run (and a real directory):
 * - every Storage call takes an AbortSignal (get/head/list/delete too, on both drivers);
 * - the SDK's default credential chain when no credentials are given;
 * - the checksum-mode option (no checksum header by default, a checksum header with when-supported,
 *   and Swift accepts both because bodies are Buffers, never aws-chunked);
 * - Content-MD5 on DeleteObjects; a small object as exactly one PutObject request;
 * - the fixed memory bound: with the store stalled, the driver pulls at most
 *   partSize x (queueSize + 1) bytes (+ the body's own buffer) from the body;
 * - on a failure, in-flight parts settle before AbortMultipartUpload is sent;
 * - a CompleteMultipartUpload answer without an ETag is refused (STORAGE_INCOMPLETE_UPLOAD);
 * - retries back off (each delay within [cap/2, cap], cap doubling) and really wait;
 * - S3 secrets appear in no log line of failing calls.
 * The HTTP proxy below forwards verbatim (SigV4 stays valid), records each request's headers and
 * timing, and can delay, fail or rewrite chosen requests. No mock: every answer comes from Swift.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AbortError, StorageError } from '../../src/errors';
import type { Logger, PgarkEvent } from '../../src/observe';
import { createFsStorage } from '../../src/storage/fs-storage';
import { createS3Storage, type S3StorageOptions } from '../../src/storage/s3-storage';
import type { Storage } from '../../src/storage/storage';
import { createTestBucket, type TestBucket } from '../harness/s3';

const MIB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// A small recording proxy in front of the real S3 endpoint.

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  arrivedAt: number;
  /** When the answer's head was sent back to the client (undefined while pending). */
  answeredAt?: number;
  status?: number;
}

interface Hook {
  match(r: { method: string; url: string }): boolean;
  /** Hold the request this long before forwarding it. */
  delayMs?: number;
  /** Answer with this status instead of forwarding. */
  failStatus?: number;
  /** Rewrite the (small, buffered) upstream answer body. */
  rewriteBody?: (body: string) => string;
  remaining: number;
}

interface RecordingProxy {
  endpoint: string;
  seen: Seen[];
  hook(h: Omit<Hook, 'remaining'> & { count?: number }): void;
  stop(): Promise<void>;
}

async function startRecordingProxy(targetUrl: string): Promise<RecordingProxy> {
  const target = new URL(targetUrl);
  const agent = new http.Agent({ keepAlive: true });
  const seen: Seen[] = [];
  const hooks: Hook[] = [];
  const sockets = new Set<Socket>();

  const forward = (req: IncomingMessage, res: ServerResponse, entry: Seen, hook: Hook | undefined): void => {
    const headers: Record<string, string | string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      const value = req.rawHeaders[i + 1]!;
      const prev = headers[name];
      headers[name] = prev === undefined ? value : ([] as string[]).concat(prev, value);
    }
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
      (answer) => {
        entry.status = answer.statusCode;
        if (hook?.rewriteBody) {
          const chunks: Buffer[] = [];
          answer.on('data', (c: Buffer) => chunks.push(c));
          answer.on('end', () => {
            const body = Buffer.from(hook.rewriteBody!(Buffer.concat(chunks).toString('utf8')));
            const h = { ...answer.headers, 'content-length': String(body.length) };
            delete h['transfer-encoding'];
            entry.answeredAt = Date.now();
            res.writeHead(answer.statusCode ?? 502, h);
            res.end(body);
          });
          return;
        }
        entry.answeredAt = Date.now();
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    up.on('error', () => {
      entry.answeredAt = Date.now();
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(up);
  };

  const server = http.createServer((req, res) => {
    const entry: Seen = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
      arrivedAt: Date.now(),
    };
    seen.push(entry);
    const hook = hooks.find((h) => h.remaining > 0 && h.match(entry));
    if (hook) hook.remaining--;
    if (hook?.failStatus !== undefined) {
      req.resume();
      req.on('end', () => {
        const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>injected</Message></Error>`;
        entry.status = hook.failStatus;
        entry.answeredAt = Date.now();
        res.writeHead(hook.failStatus!, { 'content-type': 'application/xml', 'content-length': body.length });
        res.end(body);
      });
      return;
    }
    if (hook?.delayMs) {
      req.pause();
      setTimeout(() => forward(req, res, entry, hook), hook.delayMs);
    } else {
      forward(req, res, entry, hook);
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    hook(h) {
      hooks.push({ ...h, remaining: h.count ?? 1 });
    },
    async stop() {
      for (const s of sockets) s.destroy();
      agent.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const isUploadPart = (r: { method: string; url: string }): boolean =>
  r.method === 'PUT' && /[?&]partNumber=/.test(r.url) && /[?&]uploadId=/.test(r.url);
const partNumberOf = (url: string): number => Number(/[?&]partNumber=(\d+)/.exec(url)?.[1]);
const isAbortUpload = (r: { method: string; url: string }): boolean =>
  r.method === 'DELETE' && /[?&]uploadId=/.test(r.url);
const isComplete = (r: { method: string; url: string }): boolean =>
  r.method === 'POST' && /[?&]uploadId=/.test(r.url);
const isDeleteObjects = (r: { method: string; url: string }): boolean =>
  r.method === 'POST' && /[?&]delete(=|&|$)/.test(r.url);

/** A body that counts what the driver pulled from it. */
function countingBody(total: number, chunk = 256 * 1024): { stream: Readable; pulled: () => number } {
  let pulled = 0;
  const stream = new Readable({
    highWaterMark: chunk,
    read() {
      if (pulled >= total) return void this.push(null);
      const n = Math.min(chunk, total - pulled);
      pulled += n;
      this.push(Buffer.alloc(n, pulled & 0xff));
    },
  });
  return { stream, pulled: () => pulled };
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

// ---------------------------------------------------------------------------------------------

describe.each(['fs', 's3'] as const)('AbortSignal on every call: %s', (kind) => {
  let storage: Storage;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    if (kind === 'fs') {
      const root = await mkdtemp(join(tmpdir(), 'pgark-gaps-'));
      storage = createFsStorage({ root });
      cleanup = () => rm(root, { recursive: true, force: true });
    } else {
      const b = await createTestBucket({ name: 'pgark-gaps' });
      storage = createS3Storage({ ...b.storageOptions, partSizeBytes: 5 * MIB, queueSize: 2 });
      cleanup = async () => {
        await storage.close();
        await b.cleanup();
      };
    }
    await storage.put('present/a', Buffer.alloc(3 * MIB, 1));
  });
  afterAll(async () => cleanup?.());

  it('an already aborted signal rejects get, head, list and delete with AbortError; nothing changes', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    const signal = ac.signal;
    const calls: [string, () => Promise<unknown>][] = [
      ['get', () => storage.get('present/a', { signal })],
      ['head', () => storage.head('present/a', { signal })],
      [
        'list',
        async () => {
          for await (const o of storage.list('present/', { signal })) void o;
        },
      ],
      ['delete', () => storage.delete(['present/a'], { signal })],
    ];
    for (const [name, call] of calls) {
      const err = await rejection(call());
      expect(err, name).toBeInstanceOf(AbortError);
      expect(err.code, name).toBe('ABORTED');
    }
    expect((await storage.head('present/a'))?.size).toBe(3 * MIB);
  });

  it('aborting while a get stream is being read ends the stream with AbortError', async () => {
    const ac = new AbortController();
    const stream = await storage.get('present/a', { signal: ac.signal });
    const err = await rejection(
      (async () => {
        let n = 0;
        for await (const c of stream) {
          n += (c as Buffer).length;
          if (n > 0) ac.abort(new Error('enough'));
          await new Promise((r) => setTimeout(r, 5));
        }
        // Reading all 3 MiB without noticing the abort would be a failure too.
        if (n === 3 * MIB) throw new Error('stream ended normally after the abort');
      })(),
    );
    expect(err, String(err) + ' ' + (err as Error).stack).toBeInstanceOf(AbortError);
    expect(err.code).toBe('ABORTED');
  });
});

describe('s3 driver: what the proxy sees', () => {
  let b: TestBucket;
  let proxy: RecordingProxy;
  const opened: Storage[] = [];
  const open = (extra: Partial<S3StorageOptions> = {}): Storage => {
    const s = createS3Storage({
      ...b.storageOptions,
      endpoint: proxy.endpoint,
      partSizeBytes: 5 * MIB,
      queueSize: 2,
      ...extra,
    });
    opened.push(s);
    return s;
  };

  beforeAll(async () => {
    b = await createTestBucket({ name: 'pgark-gaps-proxy' });
  });
  afterAll(async () => {
    await b?.cleanup();
  });
  // A fresh proxy per test: hooks and records do not leak between tests.
  const withProxy = async (fn: () => Promise<void>): Promise<void> => {
    proxy = await startRecordingProxy(inject('s3').endpoint);
    try {
      await fn();
    } finally {
      for (const s of opened.splice(0)) await s.close();
      await proxy.stop();
    }
  };

  it('a small object goes as exactly one PutObject request (no multipart calls)', () =>
    withProxy(async () => {
      const s = open();
      await s.put('small/one', Buffer.alloc(100_000, 7));
      await s.put('small/stream', Readable.from([Buffer.alloc(4 * MIB, 8)]), { contentLength: 4 * MIB });
      const writes = proxy.seen.filter((r) => r.method !== 'GET' && r.method !== 'HEAD');
      expect(writes.map((r) => r.method)).toEqual(['PUT', 'PUT']);
      expect(writes.some((r) => /uploads|uploadId|partNumber/.test(r.url))).toBe(false);
    }));

  it('checksumMode: none by default, a checksum header with when-supported; Swift accepts both', () =>
    withProxy(async () => {
      const checksumHeaders = (r: Seen): string[] =>
        Object.keys(r.headers).filter(
          (h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-sdk-checksum-algorithm',
        );
      const plain = open();
      await plain.put('ck/default', Buffer.from('abc'));
      const plainPut = proxy.seen.filter((r) => r.method === 'PUT').at(-1)!;
      expect(checksumHeaders(plainPut)).toEqual([]);
      expect(String(plainPut.headers['content-encoding'] ?? '')).not.toContain('aws-chunked');

      const supported = open({ checksumMode: 'when-supported' });
      await supported.put('ck/supported', Buffer.from('abcdef'));
      await supported.put('ck/supported-multi', Readable.from([Buffer.alloc(6 * MIB, 3)]));
      const puts = proxy.seen.filter((r) => r.method === 'PUT').slice(1);
      expect(puts.length).toBeGreaterThanOrEqual(3); // one PutObject + two UploadParts
      for (const r of puts) {
        expect(checksumHeaders(r).length, r.url).toBeGreaterThan(0);
        expect(String(r.headers['content-encoding'] ?? ''), r.url).not.toContain('aws-chunked');
      }
      expect((await supported.head('ck/supported'))?.size).toBe(6);
      expect((await supported.head('ck/supported-multi'))?.size).toBe(6 * MIB);
    }));

  it('DeleteObjects carries Content-MD5', () =>
    withProxy(async () => {
      const s = open();
      await s.put('md5/a', Buffer.from('a'));
      await s.delete(['md5/a', 'md5/absent']);
      const del = proxy.seen.filter(isDeleteObjects);
      expect(del).toHaveLength(1);
      expect(del[0]!.headers['content-md5']).toMatch(/^[A-Za-z0-9+/]{22}==$/);
      expect(await s.head('md5/a')).toBeUndefined();
    }));

  it('memory bound: with the store stalled, at most partSize x (queueSize + 1) is pulled from the body', () =>
    withProxy(async () => {
      const partSize = 5 * MIB;
      const queueSize = 2;
      const s = open({ partSizeBytes: partSize, queueSize });
      // Every UploadPart is held 1.5 s: the driver must stop reading instead of buffering.
      proxy.hook({ match: isUploadPart, delayMs: 1500, count: 100 });
      const body = countingBody(40 * MIB);
      const put = s.put('bound/x', body.stream);
      await new Promise((r) => setTimeout(r, 1200));
      const pulledWhileStalled = body.pulled();
      // parts in flight + the one being filled + the body's own read-ahead (one chunk).
      expect(pulledWhileStalled).toBeLessThanOrEqual(partSize * (queueSize + 1) + 2 * 256 * 1024);
      expect(pulledWhileStalled).toBeGreaterThanOrEqual(partSize * queueSize);
      const r = await put;
      expect(r.size).toBe(40 * MIB);
      expect(await b.openUploads()).toBe(0);
    }));

  it('a failing part: in-flight parts settle before AbortMultipartUpload; nothing visible, no upload left', () =>
    withProxy(async () => {
      const s = open({ maxAttempts: 1, queueSize: 3 });
      // Parts 1 and 3 are slow, part 2 fails at once: the abort must wait for 1 and 3.
      proxy.hook({ match: (r) => isUploadPart(r) && partNumberOf(r.url) === 1, delayMs: 1500 });
      proxy.hook({ match: (r) => isUploadPart(r) && partNumberOf(r.url) === 3, delayMs: 1500 });
      proxy.hook({ match: (r) => isUploadPart(r) && partNumberOf(r.url) === 2, failStatus: 500 });
      const err = await rejection(s.put('settle/x', countingBody(16 * MIB).stream));
      expect(err).toBeInstanceOf(StorageError);
      expect(err).toMatchObject({
        code: 'STORAGE_UNAVAILABLE',
        retryable: true,
        httpStatus: 500,
        key: 'settle/x',
      });
      const parts = proxy.seen.filter(isUploadPart);
      const abort = proxy.seen.find(isAbortUpload);
      expect(abort, 'an AbortMultipartUpload was sent').toBeDefined();
      expect(parts.map((p) => partNumberOf(p.url)).sort()).toEqual(expect.arrayContaining([1, 2, 3]));
      for (const p of parts) {
        expect(p.answeredAt, `part ${partNumberOf(p.url)} answered`).toBeDefined();
        expect(p.answeredAt!, `part ${partNumberOf(p.url)} settled before the abort`).toBeLessThanOrEqual(
          abort!.arrivedAt,
        );
      }
      expect(await b.openUploads()).toBe(0);
      expect(await s.head('settle/x')).toBeUndefined();
    }));

  it('a CompleteMultipartUpload answer without an ETag is refused with STORAGE_INCOMPLETE_UPLOAD', () =>
    withProxy(async () => {
      const s = open({ maxAttempts: 1 });
      proxy.hook({ match: isComplete, rewriteBody: (body) => body.replace(/<ETag>[^<]*<\/ETag>/g, '') });
      const err = await rejection(s.put('noetag/x', countingBody(11 * MIB).stream));
      expect(err).toBeInstanceOf(StorageError);
      expect(err.code).toBe('STORAGE_INCOMPLETE_UPLOAD');
      expect((err as StorageError).key).toBe('noetag/x');
    }));

  it('retries back off: each delay within [cap/2, cap] with the cap doubling, and the waits are real', () =>
    withProxy(async () => {
      const events: PgarkEvent[] = [];
      const s = open({ retryBaseDelayMs: 100, maxAttempts: 4, onEvent: (e) => events.push(e) });
      proxy.hook({ match: (r) => r.method === 'PUT', failStatus: 500, count: 3 });
      await s.put('backoff/x', Buffer.from('x'));
      const puts = proxy.seen.filter((r) => r.method === 'PUT');
      expect(puts).toHaveLength(4);
      const retries = events.filter(
        (e): e is Extract<PgarkEvent, { type: 'storage.retry' }> => e.type === 'storage.retry',
      );
      expect(retries.map((e) => e.attempt)).toEqual([1, 2, 3]);
      retries.forEach((e, i) => {
        const cap = 100 * 2 ** i;
        expect(e.delayMs).toBeGreaterThanOrEqual(cap / 2);
        expect(e.delayMs).toBeLessThanOrEqual(cap);
        // The request after retry i arrived no earlier than its announced delay after the failed one.
        expect(puts[i + 1]!.arrivedAt - puts[i]!.answeredAt!).toBeGreaterThanOrEqual(e.delayMs - 5);
      });
    }));

  it('no log line of failing calls carries the secret key', () =>
    withProxy(async () => {
      const lines: string[] = [];
      const logger: Logger = {
        debug: (m, f) => lines.push(m + inspect(f, { depth: 8 })),
        info: (m, f) => lines.push(m + inspect(f, { depth: 8 })),
        warn: (m, f) => lines.push(m + inspect(f, { depth: 8 })),
        error: (m, f) => lines.push(m + inspect(f, { depth: 8 })),
      };
      const secret = b.storageOptions.credentials!.secretAccessKey;
      const s = open({ logger, maxAttempts: 2, retryBaseDelayMs: 1 });
      // Parts fail, then the abort fails too (the driver logs that at error level).
      proxy.hook({ match: isUploadPart, failStatus: 500, count: 100 });
      proxy.hook({ match: isAbortUpload, failStatus: 500, count: 100 });
      proxy.hook({ match: (r) => r.method === 'PUT' || r.method === 'GET', failStatus: 500, count: 100 });
      await rejection(s.put('log/big', countingBody(11 * MIB).stream));
      await rejection(s.put('log/small', Buffer.from('x')));
      await rejection(s.get('log/small'));
      const wrong = open({
        logger,
        endpoint: b.storageOptions.endpoint,
        credentials: { accessKeyId: 'test:tester', secretAccessKey: 'Wr0ng-log-secret-77' },
      });
      await rejection(wrong.put('log/denied', Buffer.from('x')));
      expect(lines.length).toBeGreaterThan(3);
      expect(lines.some((l) => /abort/i.test(l))).toBe(true);
      const all = lines.join('\n');
      expect(all.includes(secret)).toBe(false);
      expect(all.includes('Wr0ng-log-secret-77')).toBe(false);
    }));
});

describe('s3 driver: the SDK default credential chain', () => {
  const saved: Record<string, string | undefined> = {};
  const VARS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE'];
  let b: TestBucket;
  beforeAll(async () => {
    b = await createTestBucket({ name: 'pgark-gaps-env' });
    for (const v of VARS) saved[v] = process.env[v];
  });
  afterAll(async () => {
    for (const v of VARS) {
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
    }
    await b?.cleanup();
  });

  it('without credentials the driver signs with the environment credentials; wrong ones are refused', async () => {
    const server = inject('s3');
    const { credentials: _omit, ...noCredentials } = b.storageOptions;
    delete process.env.AWS_SESSION_TOKEN;
    delete process.env.AWS_PROFILE;
    process.env.AWS_ACCESS_KEY_ID = server.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = server.secretAccessKey;
    const s = createS3Storage(noCredentials);
    try {
      await s.put('env/ok', Buffer.from('from env'));
      expect((await s.head('env/ok'))?.size).toBe(8);
      expect(await b.listKeys()).toEqual(['env/ok']);
    } finally {
      await s.close();
    }
    process.env.AWS_SECRET_ACCESS_KEY = 'env-wrong-secret-5512';
    const denied = createS3Storage(noCredentials);
    try {
      const err = await rejection(denied.put('env/denied', Buffer.from('x')));
      expect(err).toBeInstanceOf(StorageError);
      expect(err.code).toBe('STORAGE_ACCESS_DENIED');
      expect(JSON.stringify(err) + inspect(err, { depth: 8 })).not.toContain('env-wrong-secret-5512');
    } finally {
      await denied.close();
    }
  });
});

describe('s3 driver: fault errors carry code, retryable, key and HTTP status', () => {
  let b: TestBucket;
  beforeAll(async () => {
    b = await createTestBucket({ name: 'pgark-gaps-faults' });
  });
  afterAll(async () => {
    await b?.cleanup();
  });

  it('wrong credentials and a missing bucket, on put (single and multipart) and get', async () => {
    const cases: [string, Partial<S3StorageOptions>, string, number][] = [
      [
        'wrong credentials',
        { credentials: { accessKeyId: 'test:tester', secretAccessKey: 'not-the-secret-8841' } },
        'STORAGE_ACCESS_DENIED',
        403,
      ],
      ['missing bucket', { bucket: `${b.bucket}-absent` }, 'STORAGE_BUCKET_NOT_FOUND', 404],
    ];
    for (const [label, extra, code, httpStatus] of cases) {
      const s = createS3Storage({ ...b.storageOptions, partSizeBytes: 5 * MIB, maxAttempts: 1, ...extra });
      try {
        for (const [op, call] of [
          ['put', () => s.put('f/small', Buffer.from('x'))],
          ['put-multipart', () => s.put('f/big', countingBody(6 * MIB).stream)],
          ['get', () => s.get('f/small')],
        ] as const) {
          const err = await rejection(call());
          expect(err, `${label} ${op}`).toBeInstanceOf(StorageError);
          expect(err, `${label} ${op}`).toMatchObject({ code, httpStatus, retryable: false });
          expect((err as StorageError).key, `${label} ${op}`).toMatch(/^f\/(small|big)$/);
          expect(inspect(err, { depth: 8 }) + JSON.stringify(err)).not.toContain('not-the-secret-8841');
        }
      } finally {
        await s.close();
      }
    }
    expect(await b.listKeys()).toEqual([]);
    expect(await b.openUploads()).toBe(0);
  });
});
