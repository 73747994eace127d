import { createServer, type Server, type Socket } from 'node:net';

import { RpcError } from './rpc.errors';
import { RpcConnection, encodeCredential } from './rpc.transport';
import { XdrReader, XdrWriter } from './xdr.codec';

/**
 * A tiny ONC RPC peer on a real loopback socket: it parses record-marked calls and lets each test
 * decide how (and whether) to answer, so framing is checked byte for byte.
 */
interface Call {
  xid: number;
  program: number;
  procedure: number;
  credentialFlavor: number;
  credential: Buffer;
  args: Buffer;
  socket: Socket;
}

async function startPeer(
  onCall: (call: Call) => void,
): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readUInt32BE(0) & 0x7fffffff;
        if (pending.length < 4 + length) break;
        const record = pending.subarray(4, 4 + length);
        pending = pending.subarray(4 + length);
        const reader = new XdrReader(record);
        const xid = reader.uint32();
        reader.uint32(); // CALL
        reader.uint32(); // rpc version
        const program = reader.uint32();
        reader.uint32(); // version
        const procedure = reader.uint32();
        const credentialFlavor = reader.uint32();
        const credential = Buffer.from(reader.opaque());
        reader.uint32();
        reader.opaque();
        const args = Buffer.from(record.subarray(record.length - reader.remaining));
        onCall({ xid, program, procedure, credentialFlavor, credential, args, socket });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { port: typeof address === 'object' && address ? address.port : 0, server, sockets };
}

/** An accepted, successful reply carrying `results`, cut into fragments of `fragmentBytes`. */
function reply(xid: number, results: Buffer, fragmentBytes = Number.MAX_SAFE_INTEGER): Buffer {
  const body = Buffer.concat([
    new XdrWriter().uint32(xid).uint32(1).uint32(0).uint32(0).uint32(0).uint32(0).toBuffer(),
    results,
  ]);
  const parts: Buffer[] = [];
  for (let offset = 0; offset < body.length; offset += fragmentBytes) {
    const fragment = body.subarray(offset, Math.min(body.length, offset + fragmentBytes));
    const mark = Buffer.alloc(4);
    const last = offset + fragmentBytes >= body.length;
    mark.writeUInt32BE(((last ? 0x80000000 : 0) | fragment.length) >>> 0);
    parts.push(mark, fragment);
  }
  return Buffer.concat(parts);
}

describe('ONC RPC transport', () => {
  let peer: Awaited<ReturnType<typeof startPeer>> | undefined;
  let connection: RpcConnection | undefined;
  afterEach(async () => {
    await connection?.close();
    for (const socket of peer?.sockets ?? []) socket.destroy();
    await new Promise((resolve) => peer?.server.close(resolve) ?? resolve(undefined));
    peer = undefined;
    connection = undefined;
  });

  it('sends AUTH_SYS credentials and reassembles a reply split in fragments and in tiny TCP writes', async () => {
    let seen: Call | undefined;
    peer = await startPeer((call) => {
      seen = call;
      const bytes = reply(call.xid, new XdrWriter().uint32(42).string('fragmented reply').toBuffer(), 7);
      // One byte per write: headers and fragments cross every chunk boundary.
      let index = 0;
      const drip = (): void => {
        if (index >= bytes.length) return;
        call.socket.write(bytes.subarray(index, index + 1));
        index += 1;
        setImmediate(drip);
      };
      drip();
    });
    connection = new RpcConnection({
      host: '127.0.0.1',
      port: peer.port,
      credentials: { uid: 1001, gid: 1002, gids: [5, 6], machineName: 'worker-1' },
    });
    const result = await connection.call(100003, 3, 1, new XdrWriter().uint32(9));
    expect(result.uint32()).toBe(42);
    expect(result.string()).toBe('fragmented reply');
    expect(seen?.program).toBe(100003);
    expect(seen?.procedure).toBe(1);
    expect(seen?.credentialFlavor).toBe(1);
    const credential = new XdrReader(seen?.credential ?? Buffer.alloc(0));
    credential.uint32(); // stamp
    expect(credential.string()).toBe('worker-1');
    expect([
      credential.uint32(),
      credential.uint32(),
      credential.uint32(),
      credential.uint32(),
      credential.uint32(),
    ]).toEqual([1001, 1002, 2, 5, 6]);
    expect(new XdrReader(seen?.args ?? Buffer.alloc(0)).uint32()).toBe(9);
  });

  it('pipelines calls and matches replies answered out of order by xid', async () => {
    const calls: Call[] = [];
    peer = await startPeer((call) => {
      calls.push(call);
      if (calls.length === 3) {
        for (const waiting of [...calls].reverse()) {
          const value = new XdrReader(waiting.args).uint32();
          waiting.socket.write(reply(waiting.xid, new XdrWriter().uint32(value * 10).toBuffer()));
        }
      }
    });
    connection = new RpcConnection({ host: '127.0.0.1', port: peer.port, credentials: null });
    const results = await Promise.all(
      [1, 2, 3].map(async (value) =>
        (await connection!.call(1, 1, 1, new XdrWriter().uint32(value))).uint32(),
      ),
    );
    expect(results).toEqual([10, 20, 30]);
  });

  it('keeps at most maxInFlight calls on the wire', async () => {
    const calls: Call[] = [];
    peer = await startPeer((call) => calls.push(call));
    connection = new RpcConnection({ host: '127.0.0.1', port: peer.port, credentials: null, maxInFlight: 2 });
    const all = Promise.all(
      [1, 2, 3, 4].map((value) => connection!.call(1, 1, 1, new XdrWriter().uint32(value))),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toHaveLength(2);
    const answer = (call: Call): void => {
      call.socket.write(reply(call.xid, Buffer.alloc(0)));
    };
    calls.splice(0).forEach(answer);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toHaveLength(2);
    calls.splice(0).forEach(answer);
    await all;
  });

  it('fails pending calls with a transient RPC_CONNECTION_LOST when the socket drops, then reconnects', async () => {
    let drop = true;
    peer = await startPeer((call) => {
      if (drop) call.socket.destroy();
      else call.socket.write(reply(call.xid, new XdrWriter().uint32(7).toBuffer()));
    });
    connection = new RpcConnection({ host: '127.0.0.1', port: peer.port, credentials: null });
    const failure = await connection.call(1, 1, 1).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RpcError);
    expect((failure as RpcError).code).toBe('RPC_CONNECTION_LOST');
    expect((failure as RpcError).transient).toBe(true);
    drop = false;
    expect((await connection.call(1, 1, 1)).uint32()).toBe(7);
  });

  it('fails a call without reply with RPC_TIMEOUT', async () => {
    peer = await startPeer(() => undefined);
    connection = new RpcConnection({ host: '127.0.0.1', port: peer.port, credentials: null, timeoutMs: 200 });
    await expect(connection.call(100003, 3, 6)).rejects.toMatchObject({
      code: 'RPC_TIMEOUT',
      transient: true,
    });
  });

  it('maps a refused call (AUTH_ERROR) and an unavailable program to their codes', async () => {
    peer = await startPeer((call) => {
      const body =
        call.program === 1
          ? new XdrWriter().uint32(call.xid).uint32(1).uint32(1).uint32(1).uint32(2).toBuffer() // denied, AUTH_ERROR, badcred
          : new XdrWriter().uint32(call.xid).uint32(1).uint32(0).uint32(0).uint32(0).uint32(1).toBuffer(); // PROG_UNAVAIL
      const mark = Buffer.alloc(4);
      mark.writeUInt32BE((0x80000000 | body.length) >>> 0);
      call.socket.write(Buffer.concat([mark, body]));
    });
    connection = new RpcConnection({ host: '127.0.0.1', port: peer.port, credentials: null });
    await expect(connection.call(1, 1, 1)).rejects.toMatchObject({ code: 'RPC_AUTH_ERROR' });
    await expect(connection.call(2, 1, 1)).rejects.toMatchObject({ code: 'RPC_PROGRAM_UNAVAILABLE' });
  });

  it('fails with RPC_CONNECT_FAILED when nothing listens', async () => {
    peer = await startPeer(() => undefined);
    const port = peer.port;
    await new Promise((resolve) => peer!.server.close(resolve));
    connection = new RpcConnection({ host: '127.0.0.1', port, credentials: null });
    await expect(connection.call(1, 1, 1)).rejects.toMatchObject({
      code: 'RPC_CONNECT_FAILED',
      transient: true,
    });
  });

  it('fails at once with RPC_ABORTED for an aborted signal', async () => {
    peer = await startPeer(() => undefined);
    connection = new RpcConnection({ host: '127.0.0.1', port: peer.port, credentials: null });
    const controller = new AbortController();
    const call = connection.call(1, 1, 1, undefined, controller.signal);
    setTimeout(() => controller.abort(), 50);
    await expect(call).rejects.toMatchObject({ code: 'RPC_ABORTED' });
  });

  it('encodes AUTH_NONE as flavour 0 with an empty body, followed by a null verifier', () => {
    expect(encodeCredential(null).toString('hex')).toBe('00000000000000000000000000000000');
  });
});
