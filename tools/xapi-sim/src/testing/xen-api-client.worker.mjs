// Runs the real `xen-api` client (ESM) in a worker thread, outside Jest's module system (which
// cannot load ESM under Node 20), and serves its calls to XenApiClientDriver over messages.
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parentPort } from 'node:worker_threads';
import { createClient } from 'xen-api';

let xapi;

function plain(object) {
  return JSON.parse(JSON.stringify({ ...object, $ref: object.$ref, $type: object.$type }));
}

function serializeError(error) {
  return {
    message: String(error?.message ?? error),
    code: error?.code,
    params: error?.params,
    name: error?.name,
  };
}

async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error: serializeError(error) };
  }
}

const operations = {
  async connect({ url, user, password, transport = 'auto' }) {
    // eventPollDelay: the client's pause after a failed event.from (60 s by default). A fault test
    // that makes the pool unreachable fails one; later tests would wait that long for their tasks.
    xapi = createClient({
      url,
      auth: { user, password },
      allowUnauthorized: true,
      transport,
      debounce: 20,
      eventPollDelay: 200,
    });
    xapi.on('eventFetchingError', () => {});
    await xapi.connect();
    await xapi.objectsFetched;
    return { pool: xapi.pool.$ref, sessionId: xapi.sessionId };
  },
  call({ method, args }) {
    return xapi.call(method, ...args);
  },
  callAsync({ method, args }) {
    return xapi.callAsync(method, ...args);
  },
  async barrier() {
    await xapi.barrier();
    return null;
  },
  objects({ type }) {
    return Object.values(xapi.objects.all)
      .filter((object) => type === undefined || object.$type === type)
      .map(plain);
  },
  async getResource({ path, query, outFile }) {
    const response = await xapi.getResource(path, { query });
    const hash = createHash('sha256');
    let bytes = 0;
    const tap = new Transform({
      transform(chunk, _encoding, callback) {
        bytes += chunk.length;
        hash.update(chunk);
        callback(null, outFile === undefined ? undefined : chunk);
      },
    });
    const transfer = await settle(
      outFile === undefined
        ? pipeline(response.body, tap, async (source) => {
            for await (const _ of source);
          })
        : pipeline(response.body, tap, createWriteStream(outFile)),
    );
    const task = response.task === undefined ? { ok: true, value: null } : await settle(response.task);
    return { bytes, sha256: hash.digest('hex'), transfer, task };
  },
  async putResource({ path, query, inFile, unknownLength }) {
    const stream = createReadStream(inFile);
    if (!unknownLength) stream.length = (await stat(inFile)).size;
    return settle(xapi.putResource(stream, path, { query }));
  },
  async disconnect() {
    if (xapi !== undefined) await xapi.disconnect();
    return null;
  },
};

parentPort.on('message', async ({ id, op, input }) => {
  const outcome = await settle(Promise.resolve().then(() => operations[op](input)));
  parentPort.postMessage({ id, ...outcome });
});
