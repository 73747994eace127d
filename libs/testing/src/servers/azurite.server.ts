import { join } from 'node:path';
import { scratchDir } from '../scratch';
import { ChildProcessServer, freeLoopbackPort } from './child-process.server';

/** Azurite's well-known development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = {
  accountName: 'devstoreaccount1',
  accountKey: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
} as const;

export interface AzuriteHandle {
  /** Blob service URL, path-style: http://127.0.0.1:PORT/devstoreaccount1 */
  blobEndpoint: string;
  port: number;
  accountName: string;
  accountKey: string;
  connectionString: string;
  server: ChildProcessServer;
  stop(): Promise<void>;
}

/**
 * Azurite 3.35 blob service in its own process on a free 127.0.0.1 port, in-memory, telemetry off.
 * A restart (server.restart()) loses every blob: in-memory persistence.
 */
export async function startAzurite(options: { inMemory?: boolean } = {}): Promise<AzuriteHandle> {
  const folder = await scratchDir('haven-azurite-');
  const port = await freeLoopbackPort();
  const args = [
    require.resolve('azurite/dist/src/blob/main.js'),
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(port),
    '--disableTelemetry',
    '--silent',
    '--skipApiVersionCheck',
  ];
  // Either in memory or in the private folder: never Azurite's default (the current directory).
  if (options.inMemory !== false) args.push('--inMemoryPersistence');
  else args.push('--location', join(folder.path, 'data'));
  const server = new ChildProcessServer('azurite-blob', port, process.execPath, args);
  try {
    await server.start();
  } catch (error) {
    await folder.cleanup();
    throw error;
  }
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT.accountName}`;
  return {
    blobEndpoint,
    port,
    ...AZURITE_ACCOUNT,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.accountName};` +
      `AccountKey=${AZURITE_ACCOUNT.accountKey};BlobEndpoint=${blobEndpoint};`,
    server,
    async stop() {
      await server.stop();
      await folder.cleanup();
    },
  };
}
