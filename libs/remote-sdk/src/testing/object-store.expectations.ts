import { OBJECT_STORE_STATS_IN_FLIGHT, type RemoteDriver } from '../remote.driver';

/**
 * What every object-store driver asks of the base class: existence checks as HEADs many at once,
 * whole-object writes as its upload parts in flight, and listings over a flat key space. Closes
 * the driver.
 */
export async function expectObjectStoreParallelism(
  driver: RemoteDriver,
  uploadConcurrency: number,
): Promise<void> {
  try {
    expect(driver.statsInFlight).toBe(OBJECT_STORE_STATS_IN_FLIGHT);
    expect(driver.statsInFlight).toBeGreaterThan(16);
    expect(driver.writesInFlight).toBe(uploadConcurrency);
    expect(driver.features.flatListing).toBe(true);
  } finally {
    await driver.close();
  }
}
