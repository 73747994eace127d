import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describeIntegration, scratchDir } from '@haven/testing';
import { NbdClient, NbdServer, isNbdError } from './index';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const NAME = '/7c6f0d2a-0000-4000-8000-0000000000aa?session_id=OpaqueRef:qemu';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

// Another implementation on each side (QEMU's), so that client and server cannot agree on a
// protocol of their own.
describeIntegration('NBD against QEMU (qemu-nbd server, qemu-img client)', ['qemu-img'], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const image = randomBytes(5 * MiB + 1536);

  beforeAll(async () => {
    dir = await scratchDir('haven-nbd-qemu-');
  });

  afterAll(async () => {
    await dir.cleanup();
  });

  it('NbdClient reads what qemu-nbd serves, at random offsets, pipelined; an unknown name is refused', async () => {
    const file = join(dir.path, 'disk.raw');
    const pidFile = join(dir.path, 'qemu-nbd.pid');
    await writeFile(file, image);
    const port = await freePort();
    // --fork returns once the server listens.
    await run('qemu-nbd', [
      '--read-only',
      '--format=raw',
      `--export-name=${NAME}`,
      '--bind=127.0.0.1',
      `--port=${port}`,
      '--persistent',
      '--shared=4',
      '--fork',
      `--pid-file=${pidFile}`,
      file,
    ]);
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    try {
      const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: NAME, maxInFlight: 6 });
      try {
        expect(client.size).toBe(image.length);
        let seed = 11;
        const next = (bound: number): number => {
          seed = (seed * 1103515245 + 12345) % 2 ** 31;
          return seed % bound;
        };
        const reads = Array.from({ length: 40 }, () => {
          const length = 1 + next(2 * MiB);
          const offset = next(image.length - length + 1);
          return client
            .read(offset, length)
            .then((data) => data.equals(image.subarray(offset, offset + length)));
        });
        expect(await Promise.all(reads)).toEqual(reads.map(() => true));
      } finally {
        await client.close();
      }
      const refused: unknown = await NbdClient.connect({
        host: '127.0.0.1',
        port,
        exportName: '/other',
      }).catch((error: unknown) => error);
      expect(isNbdError(refused, 'NBD_EXPORT_UNKNOWN')).toBe(true);
    } finally {
      process.kill(pid, 'SIGTERM');
    }
  });

  it('qemu-img copies an export of NbdServer byte for byte', async () => {
    const server = new NbdServer({
      openExport: (name) => {
        if (name !== NAME) throw new Error(`unknown export ${name}`);
        return {
          size: image.length,
          read: (offset, length) => Promise.resolve(Buffer.from(image.subarray(offset, offset + length))),
        };
      },
    });
    const { port } = await server.listen(0, '127.0.0.1');
    try {
      const source = JSON.stringify({
        driver: 'raw',
        file: {
          driver: 'nbd',
          server: { type: 'inet', host: '127.0.0.1', port: String(port) },
          export: NAME,
        },
      });
      const target = join(dir.path, 'copy.raw');
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `json:${source}`, target]);
      expect((await readFile(target)).equals(image)).toBe(true);
      expect(server.stats.reads).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });
});
