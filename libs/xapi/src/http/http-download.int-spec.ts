import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { createSelfSignedCertificate } from '@haven/nbd';
import { ByteStreamCursor } from '@haven/vhd';
import { HttpStatusError, openHttpDownload } from './http-download';

const MiB = 1024 * 1024;
const payload = randomBytes(5 * MiB + 12345);

type Server = http.Server | https.Server | net.Server;
const servers: Server[] = [];

const sockets = new Set<net.Socket>();

async function listen<T extends Server>(server: T): Promise<URL> {
  servers.push(server);
  server.on(server instanceof https.Server ? 'secureConnection' : 'connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return new URL(`${server instanceof https.Server ? 'https' : 'http'}://127.0.0.1:${port}/`);
}

async function drain(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of body as AsyncIterable<Buffer>) parts.push(part);
  return Buffer.concat(parts);
}

const options = { allowUnauthorized: false, inactivityTimeoutMs: 10_000 };

afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('openHttpDownload', () => {
  it('reads a content-length body whole, sending the path and query it was given', async () => {
    let asked = '';
    const url = await listen(
      http.createServer((request, response) => {
        asked = request.url ?? '';
        response.writeHead(200, { 'content-length': payload.length });
        response.end(payload);
      }),
    );
    const download = await openHttpDownload(
      new URL('/export_raw_vdi/?vdi=OpaqueRef%3A1&format=vhd', url),
      options,
    );
    expect(download.statusCode).toBe(200);
    expect(download.headers['content-length']).toBe(String(payload.length));
    expect((await drain(download.body)).equals(payload)).toBe(true);
    expect(asked).toBe('/export_raw_vdi/?vdi=OpaqueRef%3A1&format=vhd');
  });

  it('reads a chunked body and one delimited by the close of the connection', async () => {
    const chunked = await listen(
      http.createServer((_request, response) => {
        response.writeHead(200, { 'content-type': 'application/octet-stream' });
        for (let offset = 0; offset < payload.length; offset += 700_001) {
          response.write(payload.subarray(offset, offset + 700_001));
        }
        response.end();
      }),
    );
    const toClose = await listen(
      net.createServer((socket) => {
        socket.once('data', () => {
          socket.write('HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
          socket.end(payload);
        });
      }),
    );
    for (const url of [chunked, toClose]) {
      const download = await openHttpDownload(url, options);
      expect(
        createHash('sha256')
          .update(await drain(download.body))
          .digest('hex'),
      ).toBe(createHash('sha256').update(payload).digest('hex'));
    }
  });

  it('fills the same few slabs again while a cursor copies the body out, and the bytes stay exact', async () => {
    const large = randomBytes(32 * MiB + 777);
    const url = await listen(
      http.createServer((_request, response) => {
        response.writeHead(200, { 'content-type': 'application/octet-stream' });
        for (let offset = 0; offset < large.length; offset += 300_007) {
          response.write(large.subarray(offset, offset + 300_007));
        }
        response.end();
      }),
    );
    const slabsSeen = async (giveBack: boolean): Promise<{ slabs: number; sha256: string }> => {
      const download = await openHttpDownload(url, options);
      const memory = new Set<ArrayBufferLike>();
      const hash = createHash('sha256');
      if (giveBack) {
        const cursor = new ByteStreamCursor(download.body);
        download.body.on('data', (chunk: Buffer) => memory.add(chunk.buffer));
        const block = Buffer.alloc(2 * MiB);
        for (;;) {
          const got = await cursor.readInto(block);
          hash.update(block.subarray(0, got));
          if (got < block.length) break;
        }
      } else {
        // A consumer that knows nothing of lent chunks keeps them: new slabs every time.
        for await (const chunk of download.body as AsyncIterable<Buffer>) {
          memory.add(chunk.buffer);
          hash.update(chunk);
        }
      }
      return { slabs: memory.size, sha256: hash.digest('hex') };
    };
    const expected = createHash('sha256').update(large).digest('hex');
    const kept = await slabsSeen(false);
    expect(kept.sha256).toBe(expected);
    expect(kept.slabs).toBeGreaterThanOrEqual(32);
    const reused = await slabsSeen(true);
    expect(reused.sha256).toBe(expected);
    // The slabs in use at once (what is buffered ahead of the cursor: the body's 1 MiB and the
    // cursor's 2 MiB request) and the few kept spare, whatever the size of the body.
    expect(reused.slabs).toBeLessThanOrEqual(8);
  });

  it('follows a redirect to the host that holds the data', async () => {
    const holder = await listen(
      http.createServer((request, response) => {
        response.writeHead(request.url === '/data?x=1' ? 200 : 404, { 'content-length': 5 });
        response.end('found');
      }),
    );
    const master = await listen(
      http.createServer((_request, response) => {
        response.writeHead(302, { location: new URL('/data?x=1', holder).toString(), 'content-length': 0 });
        response.end();
      }),
    );
    const download = await openHttpDownload(new URL('/export?session_id=secret', master), options);
    expect(download.url.toString()).toBe(new URL('/data?x=1', holder).toString());
    expect((await drain(download.body)).toString()).toBe('found');
  });

  it('turns a refusal into an error with the status, the body and the URL without its query', async () => {
    const url = await listen(
      http.createServer((_request, response) => {
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end('VDI_IO_ERROR\n  device busy');
      }),
    );
    const refused = openHttpDownload(new URL('/export_raw_vdi/?session_id=secret', url), options);
    await expect(refused).rejects.toBeInstanceOf(HttpStatusError);
    await expect(refused).rejects.toThrow(
      `unexpected 500 Internal Server Error from ${url.origin}/export_raw_vdi/: VDI_IO_ERROR device busy`,
    );
    await expect(refused).rejects.not.toThrow(/secret/);
  });

  it('fails the body, saying how far it got, when the connection drops before the announced length', async () => {
    const url = await listen(
      http.createServer((_request, response) => {
        response.writeHead(200, { 'content-length': payload.length });
        response.write(payload.subarray(0, 100_000), () => response.socket?.destroy());
      }),
    );
    const download = await openHttpDownload(url, options);
    await expect(drain(download.body)).rejects.toMatchObject({
      code: 'ERR_STREAM_PREMATURE_CLOSE',
      message: `the connection closed after 100000 body bytes, before ${payload.length} bytes announced by content-length`,
    });
  });

  it('stops reading the socket while the consumer does not read (back-pressure reaches the server)', async () => {
    let accepted = 0;
    let serverBlocked: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => (serverBlocked = resolve));
    const total = 256 * MiB;
    const piece = Buffer.alloc(MiB, 1);
    const url = await listen(
      http.createServer((_request, response) => {
        response.writeHead(200, { 'content-length': total });
        const pump = (): void => {
          while (accepted < total) {
            accepted += piece.length;
            if (!response.write(piece)) {
              serverBlocked();
              response.once('drain', pump);
              return;
            }
          }
          response.end();
        };
        pump();
      }),
    );
    const download = await openHttpDownload(url, options);
    await blocked;
    // Let the socket buffers fill: a paused reader leaves the server at a few MiB (socket
    // buffers plus the body's 1 MiB), one that kept reading took 100+ MiB in this second.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(accepted).toBeLessThan(24 * MiB);
    let received = 0;
    for await (const part of download.body as AsyncIterable<Buffer>) received += part.length;
    expect(received).toBe(total);
  });

  it('does not count a consumer that holds the body back as silence of the server', async () => {
    const url = await listen(
      http.createServer((_request, response) => {
        response.writeHead(200, { 'content-length': 64 * MiB });
        const piece = Buffer.alloc(MiB, 2);
        let sent = 0;
        const pump = (): void => {
          while (sent < 64 * MiB) {
            sent += piece.length;
            if (!response.write(piece)) {
              response.once('drain', pump);
              return;
            }
          }
          response.end();
        };
        pump();
      }),
    );
    // A timeout of 1 s: the drain below runs the server and the client in this one process, where
    // a loaded CI machine once left 0.2 s without data after the consumer came back.
    const download = await openHttpDownload(url, { ...options, inactivityTimeoutMs: 1000 });
    // Buffers fill and the socket pauses; the consumer then stays away four timeouts long.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    expect(download.body.destroyed).toBe(false);
    let received = 0;
    for await (const part of download.body as AsyncIterable<Buffer>) received += part.length;
    expect(received).toBe(64 * MiB);
  });

  it('speaks TLS: a self-signed certificate is refused unless allowed', async () => {
    const certificate = await createSelfSignedCertificate('localhost');
    const url = await listen(
      https.createServer({ key: certificate.key, cert: certificate.cert }, (_request, response) => {
        response.writeHead(200, { 'content-length': payload.length });
        response.end(payload);
      }),
    );
    await expect(openHttpDownload(url, options)).rejects.toThrow(/self[- ]signed/);
    const download = await openHttpDownload(url, { ...options, allowUnauthorized: true });
    expect((await drain(download.body)).equals(payload)).toBe(true);
  });

  it('closes the connection on abort and when the server goes quiet', async () => {
    const closed: Promise<unknown>[] = [];
    const url = await listen(
      http.createServer((_request, response) => {
        closed.push(once(response, 'close'));
        response.writeHead(200, { 'content-length': payload.length });
        response.write(payload.subarray(0, 1000));
      }),
    );
    const controller = new AbortController();
    const aborted = await openHttpDownload(url, { ...options, signal: controller.signal });
    const abortedBody = drain(aborted.body);
    controller.abort(new Error('the run was cancelled'));
    await expect(abortedBody).rejects.toThrow('the run was cancelled');
    const quiet = await openHttpDownload(url, { ...options, inactivityTimeoutMs: 200 });
    await expect(drain(quiet.body)).rejects.toMatchObject({
      code: 'ETIMEDOUT',
      message: `no data from ${url.host} for 0.2 s after 1000 body bytes`,
    });
    await Promise.all(closed);
  });

  it('gives up waiting for the response head when aborted', async () => {
    const url = await listen(net.createServer(() => undefined));
    const controller = new AbortController();
    const waiting = openHttpDownload(url, { ...options, signal: controller.signal });
    setImmediate(() => controller.abort(new Error('the run was cancelled')));
    await expect(waiting).rejects.toThrow('the run was cancelled');
  });

  it('refuses a server that does not speak HTTP, and one that closes before answering', async () => {
    const notHttp = await listen(net.createServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n')));
    await expect(openHttpDownload(notHttp, options)).rejects.toThrow(
      'not an HTTP/1.x status line: "SSH-2.0-OpenSSH_9.2"',
    );
    const silent = await listen(net.createServer((socket) => socket.once('data', () => socket.end())));
    await expect(openHttpDownload(silent, options)).rejects.toThrow(
      `${silent.host} closed the connection before the response head`,
    );
  });
});
