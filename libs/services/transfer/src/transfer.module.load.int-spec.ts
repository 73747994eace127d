import { join } from 'node:path';
import { runScriptInFreshNode } from '@haven/testing';

/** The npm packages a fresh process has loaded once it imported the transfer worker's module. */
async function packagesLoadedByTransferModule(): Promise<string[]> {
  const script = `
    require(${JSON.stringify(join(__dirname, 'transfer.module'))});
    const names = new Set();
    for (const path of Object.keys(require.cache)) {
      const match = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(path);
      if (match) names.add(match[1]);
    }
    process.stdout.write(JSON.stringify([...names]));
  `;
  const stdout = await runScriptInFreshNode(script);
  return JSON.parse(stdout) as string[];
}

describe('TransferModule', () => {
  it('loads NestJS but not the OpenAPI generator, which only the gateway serves (memory of every worker)', async () => {
    const loaded = await packagesLoadedByTransferModule();
    // The check below can fail: the same process did load the framework the swagger package extends.
    expect(loaded).toContain('@nestjs/core');
    expect(loaded).not.toContain('@nestjs/swagger');
  }, 60_000);
});
