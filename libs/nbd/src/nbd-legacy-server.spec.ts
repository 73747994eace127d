import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { NbdClient, isNbdError } from './index';
import {
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INIT_MAGIC,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_REPLY_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_ERR_UNSUP,
  NBD_SIMPLE_REPLY_MAGIC,
} from './nbd.protocol';
import { SocketByteReader } from './socket-byte.reader';

const image = randomBytes(3 * 1024 * 1024 + 512);
const NAME = '/5b1e0b8e-0000-4000-8000-0000000000bb?session_id=OpaqueRef:legacy';

/**
 * A scripted server that predates NBD_OPT_GO: it answers GO with NBD_REP_ERR_UNSUP, then takes
 * NBD_OPT_EXPORT_NAME (closing the connection for a name it does not serve) and answers reads.
 * Written from the protocol document byte by byte, independently of NbdServer.
 */
function legacyServer(noZeroes: boolean): Server {
  return createServer((socket) => {
    socket.on('error', () => undefined);
    const reader = new SocketByteReader(socket, () => new Error('ended'));
    void (async () => {
      const greeting = Buffer.alloc(18);
      greeting.writeBigUInt64BE(NBD_INIT_MAGIC, 0);
      greeting.writeBigUInt64BE(NBD_OPTS_MAGIC, 8);
      greeting.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_NO_ZEROES : 0), 16);
      socket.write(greeting);
      await reader.read(4);
      for (;;) {
        const header = await reader.read(16);
        const option = header.readUInt32BE(8);
        const data = await reader.read(header.readUInt32BE(12));
        if (option === NBD_OPT_GO) {
          const reply = Buffer.alloc(20);
          reply.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
          reply.writeUInt32BE(option, 8);
          reply.writeUInt32BE(NBD_REP_ERR_UNSUP, 12);
          socket.write(reply);
          continue;
        }
        if (option !== NBD_OPT_EXPORT_NAME || data.toString('utf8') !== NAME) {
          socket.destroy();
          return;
        }
        const answer = Buffer.alloc(10 + (noZeroes ? 0 : 124));
        answer.writeBigUInt64BE(BigInt(image.length), 0);
        answer.writeUInt16BE(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, 8);
        socket.write(answer);
        break;
      }
      for (;;) {
        const request = await reader.read(28);
        if (request.readUInt16BE(6) !== 0) {
          socket.end();
          return;
        }
        const offset = Number(request.readBigUInt64BE(16));
        const length = request.readUInt32BE(24);
        const reply = Buffer.alloc(16);
        reply.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
        request.copy(reply, 8, 8, 16);
        socket.write(Buffer.concat([reply, image.subarray(offset, offset + length)]));
      }
    })().catch(() => socket.destroy());
  });
}

describe.each([
  ['with NO_ZEROES', true],
  ['with the 124 zero bytes', false],
])('NbdClient against a server without NBD_OPT_GO (%s)', (_label, noZeroes) => {
  let server: Server;
  let port: number;

  beforeAll(async () => {
    server = legacyServer(noZeroes);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('falls back to NBD_OPT_EXPORT_NAME and reads the export', async () => {
    const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: NAME });
    try {
      expect(client.size).toBe(image.length);
      const [head, tail] = await Promise.all([
        client.read(0, 1024 * 1024),
        client.read(3 * 1024 * 1024, 512),
      ]);
      expect(head.equals(image.subarray(0, 1024 * 1024))).toBe(true);
      expect(tail.equals(image.subarray(3 * 1024 * 1024))).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('says NBD_EXPORT_UNKNOWN when the server closes on an unknown name', async () => {
    const error: unknown = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '/gone' }).catch(
      (failure: unknown) => failure,
    );
    expect(isNbdError(error, 'NBD_EXPORT_UNKNOWN')).toBe(true);
    expect((error as Error).message).toContain('NBD_OPT_EXPORT_NAME');
  });
});
