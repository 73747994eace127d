import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ExportLog } from '../model/export.log';
import type { PoolFaults } from '../model/simulated-pool';
import type { SimulatorClock } from '../model/simulator.clock';
import type { DiskWorkload, RandomWrite } from '../workload/disk.workload';
import type { VdiNbdServer } from '../nbd/vdi-nbd.server';
import type { SlaveHostStatus } from './slave-host.server';
import { SimulatorError, XapiFailure } from '../xapi.failure';
import { readText, requestBody } from './http-request.body';

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

async function jsonBody<T>(request: IncomingMessage): Promise<T> {
  const text = await readText(request, 1024 * 1024);
  if (text.trim() === '') return {} as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new SimulatorError('SIM_BAD_REQUEST', 'the request body is not JSON');
  }
}

/**
 * The workload API under /_sim/ (no session: it plays the guests and the operator's hands, not a
 * XAPI client). It keeps answering while the pool is "unreachable" so that tests can heal it.
 *
 *   GET  /_sim/vms                              VMs with their disks
 *   POST /_sim/disks/:target/write?position=N   {blocks} | {bytes, offset} [, seed]
 *   PUT  /_sim/disks/:target/content            raw image body
 *   GET  /_sim/disks/:target/hash?blocks=1      {sha256, blocks?}
 *   GET|POST /_sim/faults                       {unreachable, latencyMs, exportFailAfterBytes, exportFailTimes, bandwidthBytesPerSecond}
 *   POST /_sim/srs/:sr/size                     {bytes}
 *   POST /_sim/flush                            persist the state now
 *   GET|POST /_sim/clock                        {now: ISO instant | null, frozen?: bool}: the time snapshots record
 *   GET|POST /_sim/nbd                          {enabled}: the NBD purpose of the pool's networks;
 *                                               answers {enabled, port, tls, connections, reads, bytesRead…}
 *   GET  /_sim/slave                            the slave host (with `slaveAddress`): {url, masterAddress,
 *                                               requests: [{method, path, rpc?}], requestCount}
 *   GET  /_sim/exports?since=N                  disk exports served after sequence N (default 0):
 *                                               {last, exports: [{sequence, vdi, uuid, snapshotOf, format,
 *                                               base, blocks, partialBlocks}]}
 */
export async function handleWorkload(
  sim: {
    workload: DiskWorkload;
    flush: () => Promise<void>;
    clock: SimulatorClock;
    nbd: VdiNbdServer;
    exports: ExportLog;
    slave?: (() => SlaveHostStatus | undefined) | undefined;
  },
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
): Promise<void> {
  const parts = url.pathname
    .split('/')
    .filter((part) => part !== '')
    .slice(1)
    .map(decodeURIComponent);
  const { workload, flush, clock, nbd } = sim;
  const method = request.method ?? 'GET';
  const position = Number(url.searchParams.get('position') ?? '0');
  try {
    const [resource, target, action] = [parts.at(0), parts.at(1), parts.at(2)];
    if (resource === 'vms' && method === 'GET') return sendJson(response, 200, workload.listVms());
    if (resource === 'faults' && method === 'GET') return sendJson(response, 200, workload.setFaults({}));
    if (resource === 'faults' && method === 'POST')
      return sendJson(response, 200, workload.setFaults(await jsonBody<Partial<PoolFaults>>(request)));
    if (resource === 'clock' && method === 'GET') return sendJson(response, 200, clock.state());
    if (resource === 'clock' && method === 'POST') {
      const { now, frozen } = await jsonBody<{ now?: unknown; frozen?: unknown }>(request);
      if ((now !== null && typeof now !== 'string') || (frozen !== undefined && typeof frozen !== 'boolean'))
        throw new SimulatorError(
          'SIM_BAD_REQUEST',
          'body needs {"now": "<ISO 8601 instant>", "frozen"?: true|false} or {"now": null}',
        );
      return sendJson(
        response,
        200,
        clock.set(now === null ? null : new Date(now), frozen === undefined ? {} : { frozen }),
      );
    }
    if (resource === 'nbd' && method === 'GET') return sendJson(response, 200, nbd.status());
    if (resource === 'exports' && method === 'GET') {
      const since = Number(url.searchParams.get('since') ?? '0');
      if (!Number.isSafeInteger(since) || since < 0)
        throw new SimulatorError('SIM_BAD_REQUEST', 'since must be an export sequence number (0 or more)');
      return sendJson(response, 200, { last: sim.exports.last, exports: sim.exports.since(since) });
    }
    if (resource === 'nbd' && method === 'POST') {
      const { enabled } = await jsonBody<{ enabled?: unknown }>(request);
      if (typeof enabled !== 'boolean')
        throw new SimulatorError('SIM_BAD_REQUEST', 'body needs {"enabled": true | false}');
      nbd.setEnabled(enabled);
      return sendJson(response, 200, nbd.status());
    }
    const slave = resource === 'slave' && method === 'GET' ? sim.slave?.() : undefined;
    if (slave !== undefined) return sendJson(response, 200, slave);
    if (resource === 'flush' && method === 'POST') {
      await flush();
      return sendJson(response, 200, { flushed: true });
    }
    if (resource === 'srs' && target !== undefined && action === 'size' && method === 'POST') {
      const { bytes } = await jsonBody<{ bytes?: number }>(request);
      if (typeof bytes !== 'number')
        throw new SimulatorError('SIM_BAD_REQUEST', 'body needs {"bytes": <number>}');
      workload.setSrSize(target, bytes);
      return sendJson(response, 200, { sr: target, bytes });
    }
    if (resource === 'disks' && target !== undefined) {
      if (action === 'write' && method === 'POST') {
        return sendJson(
          response,
          200,
          await workload.writeRandom(target, await jsonBody<RandomWrite>(request), position),
        );
      }
      if (action === 'content' && method === 'PUT') {
        return sendJson(response, 200, await workload.overwrite(target, requestBody(request), position));
      }
      if (action === 'hash' && method === 'GET') {
        return sendJson(
          response,
          200,
          await workload.hash(target, { blocks: url.searchParams.get('blocks') === '1' }, position),
        );
      }
    }
    sendJson(response, 404, {
      code: 'SIM_NOT_FOUND',
      message: `no workload route ${method} ${url.pathname}`,
    });
  } catch (error) {
    if (error instanceof SimulatorError)
      return sendJson(response, 400, { code: error.code, message: error.message });
    if (error instanceof XapiFailure)
      return sendJson(response, 400, { code: error.code, message: error.message, params: error.params });
    throw error;
  }
}
