/**
 * A tiny TCP proxy for tests and the fixture capture: forwards one or more client connections to
 * a target, records what the server sent, and can cut a connection after N server bytes (to test
 * a connection that dies in the middle of a message).
 */
import net from 'node:net';

export interface ProxiedConnection {
  /** Every byte the server sent on this connection, in order. */
  serverChunks: Buffer[];
  serverBytes: number;
  client: net.Socket;
  server: net.Socket;
}

export interface TcpProxy {
  port: number;
  connections: ProxiedConnection[];
  /** Cut the next (or current) connection once this many more server bytes have been forwarded. */
  cutAfterServerBytes(n: number): void;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Rewrites server bytes before they are forwarded (recorded bytes are the rewritten ones). */
  transformServer?: (chunk: Buffer) => Buffer;
}

export async function startTcpProxy(
  targetHost: string,
  targetPort: number,
  options: TcpProxyOptions = {},
): Promise<TcpProxy> {
  const connections: ProxiedConnection[] = [];
  let cutBudget: number | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    const conn: ProxiedConnection = { serverChunks: [], serverBytes: 0, client, server: upstream };
    connections.push(conn);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (raw: Buffer) => {
      const d = options.transformServer ? options.transformServer(raw) : raw;
      if (cutBudget !== undefined) {
        if (d.length >= cutBudget) {
          const part = d.subarray(0, cutBudget);
          cutBudget = undefined;
          conn.serverChunks.push(part);
          conn.serverBytes += part.length;
          client.write(part, () => {
            client.destroy();
            upstream.destroy();
          });
          return;
        }
        cutBudget -= d.length;
      }
      conn.serverChunks.push(d);
      conn.serverBytes += d.length;
      client.write(d);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections,
    cutAfterServerBytes(n) {
      cutBudget = n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) {
          c.client.destroy();
          c.server.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/** Concatenated server bytes of a connection from byte offset `from`. */
export function serverBytesFrom(conn: ProxiedConnection, from: number): Buffer {
  return Buffer.concat(conn.serverChunks).subarray(from);
}
