/**
 * A fault-injecting HTTP proxy in front of a real S3 endpoint (tests only). Every request is
 * forwarded verbatim (method, path, raw headers including Host, so SigV4 signatures stay valid),
 * with both bodies streamed, never buffered. `failNext()` arms a rule: the matching requests are
 * answered with an S3-style error (default 500 InternalError) or have their connection reset.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ProxiedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  /** What the proxy did: the upstream status, or the injected fault. */
  outcome?: number | 'reset' | 'upstream-error';
  injected: boolean;
}

export interface FailRule {
  /** HTTP status to answer with. @default 500 */
  status?: number;
  /** Reset the connection instead of answering. */
  reset?: boolean;
  /** How many matching requests fail. @default 1 */
  count?: number;
  /** Matching requests to let through before the first failure (fail the Nth: after = N - 1). @default 0 */
  after?: number;
  /** Which requests the rule applies to. @default every request */
  match?: (req: { method: string; url: string; headers: http.IncomingHttpHeaders }) => boolean;
}

export interface FaultProxy {
  endpoint: string;
  failNext(rule?: FailRule): void;
  /** Every request seen, in arrival order. */
  requests: ProxiedRequest[];
  /** Injected faults so far. */
  injectedCount(): number;
  stop(): Promise<void>;
}

interface ArmedRule {
  status: number;
  reset: boolean;
  remaining: number;
  skip: number;
  match: NonNullable<FailRule['match']>;
}

const S3_CODES: Record<number, string> = { 500: 'InternalError', 503: 'SlowDown', 403: 'AccessDenied' };

/** True for an S3 UploadPart request (PUT with partNumber and uploadId). */
export function isUploadPart(req: { method: string; url: string }): boolean {
  return req.method === 'PUT' && /[?&]partNumber=/.test(req.url) && /[?&]uploadId=/.test(req.url);
}

/** `isUploadPart` for one part number. */
export function isUploadPartNumber(n: number): (req: { method: string; url: string }) => boolean {
  return (req) => isUploadPart(req) && new RegExp(`[?&]partNumber=${n}(&|$)`).test(req.url);
}

export async function startFaultProxy(options: { target: string }): Promise<FaultProxy> {
  const target = new URL(options.target);
  const agent = new http.Agent({ keepAlive: true });
  const rules: ArmedRule[] = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let injected = 0;

  const pickRule = (req: IncomingMessage): ArmedRule | undefined => {
    const view = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers };
    for (const rule of rules) {
      if (rule.remaining <= 0 || !rule.match(view)) continue;
      if (rule.skip > 0) {
        rule.skip -= 1;
        continue;
      }
      rule.remaining -= 1;
      return rule;
    }
    return undefined;
  };

  const inject = (
    rule: ArmedRule,
    req: IncomingMessage,
    res: ServerResponse,
    entry: ProxiedRequest,
  ): void => {
    injected += 1;
    entry.injected = true;
    if (rule.reset) {
      entry.outcome = 'reset';
      // Reset (TCP RST) with the request, possibly a part body, only partly received.
      if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
      else req.socket.destroy();
      return;
    }
    entry.outcome = rule.status;
    // Drain the body first (streamed away, not kept) so the client reads a clean answer.
    req.resume();
    req.on('end', () => {
      const code = S3_CODES[rule.status] ?? 'InjectedFault';
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>fault injected by the test proxy</Message></Error>`;
      res.writeHead(rule.status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  };

  const forward = (req: IncomingMessage, res: ServerResponse, entry: ProxiedRequest): void => {
    const headers: Record<string, string | string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i] as string;
      const value = req.rawHeaders[i + 1] as string;
      const prev = headers[name];
      headers[name] = prev === undefined ? value : ([] as string[]).concat(prev, value);
    }
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
        agent,
      },
      (up) => {
        entry.outcome = up.statusCode;
        res.writeHead(up.statusCode ?? 502, up.rawHeaders);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => {
      entry.outcome = 'upstream-error';
      if (!res.headersSent) {
        res.writeHead(502);
        res.end();
      } else {
        res.destroy();
      }
    });
    req.pipe(upstream);
    req.on('error', () => upstream.destroy());
  };

  const server = http.createServer((req, res) => {
    const entry: ProxiedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', injected: false };
    requests.push(entry);
    const rule = pickRule(req);
    if (rule) inject(rule, req, res, entry);
    else forward(req, res, entry);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    injectedCount: () => injected,
    failNext(rule: FailRule = {}) {
      rules.push({
        status: rule.status ?? 500,
        reset: rule.reset ?? false,
        remaining: rule.count ?? 1,
        skip: rule.after ?? 0,
        match: rule.match ?? (() => true),
      });
    },
    async stop() {
      for (const s of sockets) s.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
