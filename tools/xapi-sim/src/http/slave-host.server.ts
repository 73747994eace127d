import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { SimulatedPool } from '../model/simulated-pool';
import type { RpcOutcome } from '../rpc/rpc.dispatcher';
import { XapiFailure } from '../xapi.failure';
import { HttpTransfer } from './http-transfer';
import { handleJsonRpc, handleXmlRpc } from './rpc.handler';

/** One request the slave received: its HTTP method and path (no query: it holds session ids), and the RPC method. */
export interface SlaveHostRequest {
  method: string;
  path: string;
  /** The XAPI method of an RPC request. */
  rpc?: string;
}

export interface SlaveHostStatus {
  /** The slave's `host` record. */
  host: string;
  address: string;
  url: string;
  /** What its logins answer in HOST_IS_SLAVE. */
  masterAddress: string;
  /** Everything it received, oldest first (the last MAX_RECORDED). */
  requests: SlaveHostRequest[];
  requestCount: number;
}

const MAX_RECORDED = 1000;

/**
 * A pool member that is not the master, as a client that logs in there meets it: its
 * `session.login_with_password` fails with `HOST_IS_SLAVE [master address]`, which makes the
 * xen-api client retry on that address, keeping its URL's protocol and port. The listener is
 * therefore another address at the master's port, as every host of a real pool serves one port.
 * Every other call fails the same way, and every HTTP request (transfers included) is refused
 * with its task failed, so that whatever did not follow the master fails and shows in `status()`.
 * A real slave would forward calls made with a master's session; refusing them is stricter.
 */
export class SlaveHostServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly requests: SlaveHostRequest[] = [];
  private requestCount = 0;
  private bound: AddressInfo | undefined;

  constructor(
    private readonly pool: SimulatedPool,
    readonly host: string,
    readonly address: string,
    readonly masterAddress: string,
  ) {
    this.server = createServer((request, response) => {
      this.handle(request, response).catch(() => {
        if (!response.headersSent) response.writeHead(500).end();
        else response.destroy();
      });
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  async listen(port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.address, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.bound = this.server.address() as AddressInfo;
    this.server.on('error', (error) => {
      process.stderr.write(`xapi-sim: slave host listener on ${this.url} failed: ${String(error)}\n`);
    });
    return this.bound.port;
  }

  get url(): string {
    return `http://${this.address}:${this.bound?.port ?? 0}`;
  }

  status(): SlaveHostStatus {
    return {
      host: this.host,
      address: this.address,
      url: this.url,
      masterAddress: this.masterAddress,
      requests: this.requests.map((request) => ({ ...request })),
      requestCount: this.requestCount,
    };
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://slave');
    const method = request.method ?? 'GET';
    const entry: SlaveHostRequest = { method, path: url.pathname };
    this.requestCount++;
    this.requests.push(entry);
    if (this.requests.length > MAX_RECORDED) this.requests.shift();
    if (this.pool.faults.unreachable) {
      request.socket.destroy();
      return;
    }
    if (this.pool.faults.latencyMs > 0) await delay(this.pool.faults.latencyMs);
    const isSlave = new XapiFailure('HOST_IS_SLAVE', [this.masterAddress]);
    const dispatcher = {
      call: (rpc: string): Promise<RpcOutcome> => {
        entry.rpc = rpc;
        return Promise.resolve({ ok: false, failure: isSlave });
      },
    };
    if (method === 'POST' && url.pathname === '/jsonrpc') return handleJsonRpc(request, response, dispatcher);
    if (method === 'POST') return handleXmlRpc(request, response, dispatcher);
    // A transfer sent here instead of to the master: refused, its task (created on the master) failed.
    request.resume();
    new HttpTransfer(this.pool, request, response, url).fail(isSlave);
  }
}
