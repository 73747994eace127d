import { join } from 'node:path';
import { scratchDir } from '../scratch';
import { ChildProcessServer, freeLoopbackPort } from './child-process.server';

/** s3rver's built-in account (it checks signatures against it). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3rverHandle {
  endpoint: string;
  port: number;
  /** Where s3rver keeps buckets and objects (inspect it to see what the server really holds). */
  directory: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  server: ChildProcessServer;
  /** Stops the server and removes its data. */
  stop(): Promise<void>;
}

/**
 * s3rver 3.7 (an S3 API on the file system) in its own process on a free 127.0.0.1 port, data in a
 * private temporary folder, the given buckets created at start.
 */
export async function startS3rver(options: { buckets: readonly string[] }): Promise<S3rverHandle> {
  const folder = await scratchDir('haven-s3rver-');
  const port = await freeLoopbackPort();
  const directory = join(folder.path, 'data');
  const args = [
    // s3rver encrypts list continuation tokens with DES, which OpenSSL 3 only has in its legacy provider.
    '--openssl-legacy-provider',
    require.resolve('s3rver/bin/s3rver.js'),
    '--directory',
    directory,
    '--address',
    '127.0.0.1',
    '--port',
    String(port),
    '--silent',
    '--no-vhost-buckets',
  ];
  for (const bucket of options.buckets) args.push('--configure-bucket', bucket);
  const server = new ChildProcessServer('s3rver', port, process.execPath, args);
  try {
    await server.start();
  } catch (error) {
    await folder.cleanup();
    throw error;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    directory,
    region: 'us-east-1',
    ...S3RVER_CREDENTIALS,
    server,
    async stop() {
      await server.stop();
      await folder.cleanup();
    },
  };
}
