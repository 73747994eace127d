import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { SimulatedPool } from '../model/simulated-pool';
import type { RpcDispatcher } from '../rpc/rpc.dispatcher';
import type { DiskWorkload } from '../workload/disk.workload';
import type { VdiNbdServer } from '../nbd/vdi-nbd.server';
import { exportRawVdi } from './export-raw-vdi.handler';
import { HttpTransfer } from './http-transfer';
import { importRawVdi } from './import-raw-vdi.handler';
import { handleJsonRpc, handleXmlRpc } from './rpc.handler';
import type { SlaveHostStatus } from './slave-host.server';
import { handleWorkload } from './workload.handler';

export type TransferHandler = (pool: SimulatedPool, transfer: HttpTransfer) => Promise<void>;

export interface XapiHttpRoutes {
  pool: SimulatedPool;
  dispatcher: RpcDispatcher;
  workload: DiskWorkload;
  nbd: VdiNbdServer;
  /** The slave host's status (GET /_sim/slave), when the pool has one. */
  slave?: () => SlaveHostStatus | undefined;
  /** Extra transfer routes (`GET /export/`, `PUT /import/`), keyed `METHOD /path`. */
  transfers: Record<string, TransferHandler>;
}

/** The host's HTTP side: RPC (JSON and XML), disk and VM transfers, and the workload API. */
export function createXapiHttpServer(routes: XapiHttpRoutes): { server: Server; sockets: Set<Socket> } {
  const { pool, dispatcher, workload, nbd } = routes;
  const transfers = new Map<string, TransferHandler>(
    Object.entries({
      'GET /export_raw_vdi': exportRawVdi,
      'PUT /import_raw_vdi': importRawVdi,
      ...routes.transfers,
    }),
  );
  const sockets = new Set<Socket>();

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://simulator');
    const method = request.method ?? 'GET';
    if (url.pathname.startsWith('/_sim/')) {
      await handleWorkload(
        {
          workload,
          flush: () => pool.flush(),
          clock: pool.clock,
          nbd,
          exports: pool.exports,
          slave: routes.slave,
        },
        request,
        response,
        url,
      );
      return;
    }
    if (pool.faults.unreachable) {
      request.socket.destroy();
      return;
    }
    if (pool.faults.latencyMs > 0) await delay(pool.faults.latencyMs);
    if (method === 'POST' && url.pathname === '/jsonrpc') {
      await handleJsonRpc(request, response, dispatcher);
      return;
    }
    if (method === 'POST') {
      await handleXmlRpc(request, response, dispatcher);
      return;
    }
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const transfer = transfers.get(`${method} ${path}`);
    if (transfer === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end(`no handler for ${method} ${url.pathname}\n`);
      return;
    }
    const context = new HttpTransfer(pool, request, response, url);
    try {
      await transfer(pool, context);
    } catch (error) {
      context.fail(error);
    }
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end(`${error instanceof Error ? error.message : String(error)}\n`);
      } else {
        response.destroy();
      }
    });
  });
  // Transfers of large disks last longer than Node's default request timeout (5 min).
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 5_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return { server, sockets };
}
