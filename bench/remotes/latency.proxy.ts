import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface LatencyProxy {
  /** `http://127.0.0.1:<port>`: the upstream, `oneWayMs` further away in each direction. */
  endpoint: string;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 that delays every piece of data by `oneWayMs` in each direction: a
 * round trip costs 2 x `oneWayMs` more, as to a remote object store across a network. Order is
 * kept (timers of one duration fire in the order they were set); bandwidth is not limited.
 */
export async function startLatencyProxy(upstreamPort: number, oneWayMs: number): Promise<LatencyProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: upstreamPort });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    delayed(client, upstream, oneWayMs);
    delayed(upstream, client, oneWayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Everything `from` sends reaches `to` `delayMs` later; its end too. */
function delayed(from: Socket, to: Socket, delayMs: number): void {
  from.on('data', (data: Buffer) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(data);
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
}
