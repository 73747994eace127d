import type { INestApplication } from '@nestjs/common';
import { loadConfig } from '@haven/config';
import { scratchDir } from '@haven/testing';
import { gatewayScenario } from './gateway.scenario';
import { startAllInOne } from './haven.app';

describe('all-in-one on embedded defaults (PGlite, in-process bus)', () => {
  let app: INestApplication;
  let dataDir: { path: string; cleanup: () => Promise<void> };
  let remoteDir: { path: string; cleanup: () => Promise<void> };
  let baseUrl = '';

  beforeAll(async () => {
    dataDir = await scratchDir('haven-e2e-data-');
    remoteDir = await scratchDir('haven-e2e-remote-');
    const config = loadConfig({
      HAVEN_PORT: '0',
      HAVEN_HOST: '127.0.0.1',
      HAVEN_DATA: dataDir.path,
      LOG_LEVEL: 'error',
      HAVEN_PLUGINS: '@haven/remote-local,./examples/plugins/example-job',
    });
    app = await startAllInOne(config);
    baseUrl = await app.getUrl();
  });

  afterAll(async () => {
    await app.close();
    await dataDir.cleanup();
    await remoteDir.cleanup();
  });

  gatewayScenario(() => ({ baseUrl, dataDir: dataDir.path, remoteFolder: remoteDir.path }));
});
