import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  NBD_ENOSPC,
  NBD_FLAG_READ_ONLY,
  NbdClient,
  NbdConnectionDrop,
  NbdExportRefusal,
  NbdReadFailure,
  NbdServer,
  type NbdExport,
} from './index';
import { nbdRejection } from './testing';

const MiB = 1024 * 1024;
const SESSION = 'OpaqueRef:5ec2e7-session';
const NAME = `/d6a1c7b4-0000-4000-8000-000000000001?session_id=${SESSION}`;

/** A disk image of a known random content with a short last 2 MiB block. */
const source = randomBytes(9 * MiB + 4096 + 512);

function memoryExport(data: Buffer): NbdExport {
  return {
    size: data.length,
    read: (offset, length) => Promise.resolve(Buffer.from(data.subarray(offset, offset + length))),
  };
}

describe('NbdClient against NbdServer over a socket', () => {
  let server: NbdServer;
  let port: number;
  let exports: Map<string, () => NbdExport>;
  const clients: NbdClient[] = [];

  const connect = async (
    options: { exportName?: string; maxInFlight?: number; signal?: AbortSignal } = {},
  ) => {
    const client = await NbdClient.connect({
      host: '127.0.0.1',
      port,
      exportName: options.exportName ?? NAME,
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    clients.push(client);
    return client;
  };

  beforeEach(async () => {
    exports = new Map([[NAME, () => memoryExport(source)]]);
    server = new NbdServer({
      openExport: (name) => {
        const open = exports.get(name);
        if (open === undefined) throw new NbdExportRefusal(`no disk behind ${name.split('?')[0] ?? ''}`);
        return open();
      },
    });
    port = (await server.listen(0, '127.0.0.1')).port;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await server.close();
  });

  it('negotiates the export: its size and a read-only flag', async () => {
    const client = await connect();
    expect(client.size).toBe(source.length);
    expect(client.flags & NBD_FLAG_READ_ONLY).toBe(NBD_FLAG_READ_ONLY);
    expect(server.stats.exportsOpened).toBe(1);
  });

  it('reads at random offsets equal the source, the export end included', async () => {
    const client = await connect();
    let seed = 7;
    const next = (bound: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % bound;
    };
    const reads: Promise<void>[] = [];
    for (let index = 0; index < 60; index++) {
      const length = 1 + next(3 * MiB);
      const offset = next(source.length - length + 1);
      reads.push(
        client.read(offset, length).then((data) => {
          expect(data.equals(source.subarray(offset, offset + length))).toBe(true);
        }),
      );
    }
    const tail = 777;
    reads.push(
      client.read(source.length - tail, tail).then((data) => {
        expect(data.equals(source.subarray(source.length - tail))).toBe(true);
      }),
    );
    await Promise.all(reads);
    expect(server.stats.reads).toBe(61);
  });

  it('fills a caller buffer in place (a pooled block buffer)', async () => {
    const client = await connect();
    const target = Buffer.alloc(2 * MiB, 0xee);
    const data = await client.read(6 * MiB, 2 * MiB - 512, target);
    expect(data.buffer).toBe(target.buffer);
    expect(data.length).toBe(2 * MiB - 512);
    expect(data.equals(source.subarray(6 * MiB, 8 * MiB - 512))).toBe(true);
    expect(target.subarray(2 * MiB - 512).every((byte) => byte === 0xee)).toBe(true);
  });

  it('refuses an unknown export with NBD_EXPORT_UNKNOWN, the server message kept and the session left out', async () => {
    const otherName = `/00000000-0000-4000-8000-00000000dead?session_id=${SESSION}`;
    const error = await nbdRejection(connect({ exportName: otherName }));
    expect(error.code).toBe('NBD_EXPORT_UNKNOWN');
    expect(error.message).toContain('NBD_REP_ERR_UNKNOWN');
    expect(error.message).toContain('no disk behind /00000000-0000-4000-8000-00000000dead');
    expect(error.message).not.toContain(SESSION);
    expect(error.exportName).toBe('/00000000-0000-4000-8000-00000000dead?…');
  });

  it("surfaces the server's read error with its errno, and the connection keeps serving", async () => {
    exports.set(NAME, () => ({
      size: source.length,
      read: (offset, length) => {
        if (offset === 4 * MiB) return Promise.reject(new NbdReadFailure(NBD_ENOSPC, 'no space'));
        if (offset === 5 * MiB) return Promise.reject(new Error('disk on fire'));
        return memoryExport(source).read(offset, length);
      },
    }));
    const client = await connect();
    const failed = await nbdRejection(client.read(4 * MiB, MiB));
    expect(failed.code).toBe('NBD_READ_ERROR');
    expect(failed.errno).toBe(NBD_ENOSPC);
    expect(failed.message).toContain('ENOSPC');
    expect(failed.message).toContain(`offset ${4 * MiB}`);
    const io = await nbdRejection(client.read(5 * MiB, 512));
    expect(io.errno).toBe(5);
    expect(io.message).toContain('EIO');
    expect((await client.read(0, 4096)).equals(source.subarray(0, 4096))).toBe(true);
    expect(server.stats.readErrors).toBe(2);
  });

  it('keeps at most maxInFlight reads out, and matches replies answered out of order', async () => {
    const held: { offset: number; release: () => void }[] = [];
    let serving = 0;
    let mostServing = 0;
    exports.set(NAME, () => ({
      size: source.length,
      read: async (offset, length) => {
        serving++;
        mostServing = Math.max(mostServing, serving);
        await new Promise<void>((resolve) => {
          held.push({ offset, release: resolve });
          // Four requests at the server at once: answer them last first.
          if (held.length === 4) for (const read of held.splice(0).reverse()) read.release();
        });
        serving--;
        return Buffer.from(source.subarray(offset, offset + length));
      },
    }));
    const client = await connect({ maxInFlight: 4 });
    let mostPending = 0;
    const reads = Array.from({ length: 32 }, (_, index) => {
      const read = client.read(index * 256 * 1024, 64 * 1024);
      mostPending = Math.max(mostPending, client.pending);
      return read;
    });
    const results = await Promise.all(reads);
    results.forEach((data, index) => {
      expect(data.equals(source.subarray(index * 256 * 1024, index * 256 * 1024 + 64 * 1024))).toBe(true);
    });
    expect(mostPending).toBe(4);
    expect(mostServing).toBe(4);
  });

  it('fails the reads in flight with NBD_ABORTED when the signal fires mid-read, and drops the connection', async () => {
    let started!: () => void;
    const reading = new Promise<void>((resolve) => (started = resolve));
    const closed: string[] = [];
    exports.set(NAME, () => ({
      size: source.length,
      read: () => {
        started();
        return new Promise<Buffer>(() => undefined);
      },
      close: () => closed.push('closed'),
    }));
    const controller = new AbortController();
    const client = await connect({ signal: controller.signal });
    const read = nbdRejection(client.read(0, MiB));
    await reading;
    controller.abort(new Error('the backup was cancelled'));
    const error = await read;
    expect(error.code).toBe('NBD_ABORTED');
    expect((error.cause as Error).message).toBe('the backup was cancelled');
    expect((await nbdRejection(client.read(0, 512))).code).toBe('NBD_ABORTED');
    await new Promise<void>((resolve) => {
      const check = (): void => (closed.length === 1 ? resolve() : void setImmediate(check));
      check();
    });
  });

  it('refuses to start with an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(connect({ signal: controller.signal })).rejects.toThrow();
  });

  it('reports NBD_CONNECTION_LOST with the reads in flight when the server drops the connection mid-read', async () => {
    let started!: () => void;
    const reading = new Promise<void>((resolve) => (started = resolve));
    const hanging = new NbdServer({
      openExport: () => ({
        size: source.length,
        read: () => {
          started();
          return new Promise<Buffer>(() => undefined);
        },
      }),
    });
    const sockets: Socket[] = [];
    const raw = createServer((socket) => {
      sockets.push(socket);
      hanging.handle(socket);
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    try {
      const client = await NbdClient.connect({
        host: '127.0.0.1',
        port: (raw.address() as AddressInfo).port,
        exportName: NAME,
      });
      clients.push(client);
      const first = nbdRejection(client.read(0, MiB));
      const second = nbdRejection(client.read(MiB, MiB));
      await reading;
      for (const socket of sockets) socket.destroy();
      const error = await first;
      expect(error.code).toBe('NBD_CONNECTION_LOST');
      expect(error.message).toContain('2 read(s) in flight');
      expect((await second).code).toBe('NBD_CONNECTION_LOST');
    } finally {
      await hanging.close();
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    }
  });

  it('reports NBD_CONNECTION_LOST when the export drops the connection (NbdConnectionDrop)', async () => {
    exports.set(NAME, () => ({
      size: source.length,
      read: (offset, length) =>
        offset >= 2 * MiB
          ? Promise.reject(new NbdConnectionDrop('host crashed'))
          : memoryExport(source).read(offset, length),
    }));
    const client = await connect();
    expect((await client.read(0, MiB)).equals(source.subarray(0, MiB))).toBe(true);
    const error = await nbdRejection(client.read(2 * MiB, MiB));
    expect(error.code).toBe('NBD_CONNECTION_LOST');
    expect(error.message).toContain('1 read(s) in flight');
  });

  it('closes with NBD_CMD_DISC after the reads in flight, then refuses reads', async () => {
    const client = await connect();
    const read = client.read(MiB, MiB);
    const closing = client.close();
    expect((await read).equals(source.subarray(MiB, 2 * MiB))).toBe(true);
    await closing;
    expect((await nbdRejection(client.read(0, 512))).code).toBe('NBD_CLOSED');
  });

  it('refuses a read outside the export with NBD_BAD_REQUEST', async () => {
    const client = await connect();
    expect((await nbdRejection(client.read(source.length - 10, 11))).code).toBe('NBD_BAD_REQUEST');
    expect((await nbdRejection(client.read(-1, 10))).code).toBe('NBD_BAD_REQUEST');
    expect((await nbdRejection(client.read(0, 33 * MiB))).code).toBe('NBD_BAD_REQUEST');
  });

  it('says NBD_CONNECT_FAILED when nothing listens and NBD_HANDSHAKE_REFUSED for a server that is not NBD', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const free = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(free));
      });
    });
    const refused = await nbdRejection(
      NbdClient.connect({ host: '127.0.0.1', port: closedPort, exportName: NAME }),
    );
    expect(refused.code).toBe('NBD_CONNECT_FAILED');
    expect(refused.message).toContain(`127.0.0.1:${closedPort}`);

    const http: Server = createServer((socket) =>
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\nnot nbd, sorry'),
    );
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const error = await nbdRejection(
        NbdClient.connect({
          host: '127.0.0.1',
          port: (http.address() as AddressInfo).port,
          exportName: NAME,
        }),
      );
      expect(error.code).toBe('NBD_HANDSHAKE_REFUSED');
    } finally {
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });
});
