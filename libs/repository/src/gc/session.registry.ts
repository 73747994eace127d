import type { RemoteStore } from '@haven/remote-sdk';
import { SESSIONS_PREFIX } from '../format/repository.layout';
import { DEFAULT_SESSION_TTL_MS, type WriterSessionMarker } from '../writer.session';

export interface LiveSession {
  session: string;
  restorePoint: string | undefined;
  host: string | undefined;
  lastSeen: Date;
}

/**
 * Writer sessions whose marker was renewed within its TTL, by the remote's clock. Markers dead
 * for ten TTLs are removed (a crashed writer never removes its own).
 */
export async function readLiveSessions(
  store: RemoteStore,
  now: Date,
  signal?: AbortSignal,
): Promise<Map<string, LiveSession>> {
  const options = signal !== undefined ? { signal } : {};
  const live = new Map<string, LiveSession>();
  for await (const object of store.listAll(SESSIONS_PREFIX, options)) {
    const session = object.key.slice(SESSIONS_PREFIX.length).replace(/\.json$/, '');
    let marker: Partial<WriterSessionMarker> = {};
    try {
      marker = JSON.parse(
        (await store.getBuffer(object.key, options)).toString('utf8'),
      ) as Partial<WriterSessionMarker>;
    } catch {
      // Ended meanwhile, or unreadable: judge by the object's time with the default TTL.
    }
    const ttl = typeof marker.ttlMs === 'number' && marker.ttlMs > 0 ? marker.ttlMs : DEFAULT_SESSION_TTL_MS;
    const age = now.getTime() - object.modifiedAt.getTime();
    if (age <= ttl) {
      live.set(session, {
        session,
        restorePoint: marker.restorePoint,
        host: marker.host,
        lastSeen: object.modifiedAt,
      });
    } else if (age > 10 * ttl) {
      await store.delete(object.key, options);
    }
  }
  return live;
}
