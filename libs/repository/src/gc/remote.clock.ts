import { randomBytes } from 'node:crypto';
import type { RemoteStore } from '@haven/remote-sdk';
import { GC_CLOCK_KEY } from '../format/repository.layout';

/**
 * The remote's own time (modification time of an object written now). GC compares it with the
 * modification times of chunks and session markers, so writer and GC machine clocks never meet.
 */
export async function remoteNow(store: RemoteStore, signal?: AbortSignal): Promise<Date> {
  const options = signal !== undefined ? { signal } : {};
  await store.put(GC_CLOCK_KEY, randomBytes(8), options);
  return (await store.stat(GC_CLOCK_KEY, options)).modifiedAt;
}
