import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import { startXapiSimulator, type XapiSimulator, type XapiSimulatorOptions } from '../xapi-simulator';
import { XenApiClientDriver } from './xen-api-client.driver';

/** A simulator in a scratch folder with the real xen-api client logged in to it. */
export interface SimulatorClientLab {
  /** The scratch folder; the simulator's state is in `<path>/<stateFolder>`. */
  dir: { path: string; cleanup: () => Promise<void> };
  sim: XapiSimulator;
  client: XenApiClientDriver;
  /** Logs the client out, stops the simulator, removes the folder. */
  close(): Promise<void>;
}

export async function startSimulatorClientLab(
  options: Omit<XapiSimulatorOptions, 'stateDir'> & { scratchPrefix: string; stateFolder?: string },
): Promise<SimulatorClientLab> {
  const { scratchPrefix, stateFolder, ...simulatorOptions } = options;
  const dir = await scratchDir(scratchPrefix);
  const sim = await startXapiSimulator({
    ...simulatorOptions,
    stateDir: join(dir.path, stateFolder ?? 'state'),
  });
  const client = new XenApiClientDriver();
  await client.connect(sim.url, sim.user, sim.password);
  return {
    dir,
    sim,
    client,
    async close() {
      await client.close();
      await sim.close();
      await dir.cleanup();
    },
  };
}
