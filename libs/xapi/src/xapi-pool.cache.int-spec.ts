import { join } from 'node:path';
import { describeIntegration, scratchDir } from '@haven/testing';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { XapiPool, type XapiPoolOptions } from './xapi-pool';
import { withPoolConnection, XapiPoolCache, type CachedPoolAccess } from './xapi-pool.cache';
import { XapiAuthError, XapiCancelledError, xapiError } from './xapi.error';

describeIntegration('XapiPoolCache against the XAPI simulator', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;
  let access: CachedPoolAccess;
  /** Every login the caches under test made, with the password it used. */
  const logins: string[] = [];
  /** The logins that succeeded, as they completed. */
  const loggedIn: string[] = [];
  const caches: XapiPoolCache[] = [];

  const countingCache = (): XapiPoolCache => {
    const cache = new XapiPoolCache({
      connect: (options: XapiPoolOptions, signal?: AbortSignal) => {
        logins.push(options.password);
        return XapiPool.connect(options, signal).then((pool) => {
          loggedIn.push(options.password);
          return pool;
        });
      },
    });
    caches.push(cache);
    return cache;
  };
  const poolUuidOf = (pool: XapiPool): Promise<string> => Promise.resolve(pool.poolUuid);

  beforeAll(async () => {
    dir = await scratchDir('haven-xapi-cache-');
    sim = await startXapiSimulator({
      stateDir: join(dir.path, 'state'),
      vms: 1,
      diskSize: 1024 * 1024,
      seed: 'pool-cache',
      user: 'root',
      password: 'pw',
    });
    access = { id: 'pool-1', url: sim.url, username: 'root', password: 'pw' };
  });

  afterEach(async () => {
    for (const cache of caches.splice(0)) await cache.close();
    logins.length = 0;
    loggedIn.length = 0;
  });

  afterAll(async () => {
    await sim.close();
    await dir.cleanup();
  });

  it('logs in once for successive and concurrent tasks of the same pool', async () => {
    const cache = countingCache();
    const seen: XapiPool[] = [];
    await cache.withPool(access, undefined, async (pool) => {
      seen.push(pool);
      await pool.listVms();
    });
    await Promise.all(
      [1, 2, 3].map(() =>
        cache.withPool(access, undefined, async (pool) => {
          seen.push(pool);
          await pool.listVms();
        }),
      ),
    );
    expect(logins).toEqual(['pw']);
    expect(new Set(seen).size).toBe(1);
    expect(cache.size).toBe(1);
  });

  it('opens a connection with every setting of the access, the event loop pause included', async () => {
    const opened: XapiPoolOptions[] = [];
    const cache = new XapiPoolCache({
      connect: (options, signal) => {
        opened.push(options);
        return XapiPool.connect(options, signal);
      },
    });
    caches.push(cache);
    const settings = {
      allowUnauthorized: false,
      callTimeoutMs: 30_000,
      transport: 'json-rpc',
      taskTimeoutMs: 600_000,
      eventDebounceMs: 10,
    } as const;
    await cache.withPool({ ...access, ...settings }, undefined, poolUuidOf);
    expect(opened).toEqual([{ url: sim.url, username: 'root', password: 'pw', ...settings }]);
  });

  it('never hands a connection out for other credentials: a changed password logs in with it', async () => {
    const cache = countingCache();
    let first: XapiPool | undefined;
    await cache.withPool(access, undefined, async (pool) => {
      first = pool;
      await pool.listVms();
    });
    const changed = { ...access, password: 'changed' };
    await expect(cache.withPool(changed, undefined, poolUuidOf)).rejects.toBeInstanceOf(XapiAuthError);
    expect(logins).toEqual(['pw', 'changed']);
    // The old connection was retired and closed, the failed one is not kept.
    await expect(first?.listVms()).rejects.toThrow(/closed/);
    expect(cache.size).toBe(0);
    await cache.withPool(access, undefined, poolUuidOf);
    expect(logins).toEqual(['pw', 'changed', 'pw']);
  });

  it('drops the connection of a task that failed, whatever the failure', async () => {
    const cache = countingCache();
    const context = { poolUrl: sim.url, operation: 'VM.get_record' };
    for (const code of ['AUTH_FAILED', 'UNREACHABLE', 'NOT_FOUND'] as const) {
      await cache.withPool(access, undefined, poolUuidOf);
      await expect(
        cache.withPool(access, undefined, () => Promise.reject(xapiError(code, context))),
      ).rejects.toThrow();
    }
    // Each failure retired the connection the success before it had reused.
    expect(logins).toHaveLength(3);
    await cache.withPool(access, undefined, poolUuidOf);
    expect(logins).toHaveLength(4);
  });

  it('closes idle connections at once and busy ones when their task ends', async () => {
    const cache = countingCache();
    let idle: XapiPool | undefined;
    await cache.withPool({ ...access, id: 'pool-idle' }, undefined, async (pool) => {
      idle = pool;
      return Promise.resolve();
    });
    let busy: XapiPool | undefined;
    let closedWhileBusy: unknown;
    await cache.withPool(access, undefined, async (pool) => {
      busy = pool;
      await cache.close();
      closedWhileBusy = (await pool.listVms()).length;
    });
    expect(closedWhileBusy).toBe(1);
    await expect(idle?.listVms()).rejects.toThrow(/closed/);
    await expect(busy?.listVms()).rejects.toThrow(/closed/);
    // Still usable after close (an app restarted in the same process): a new login.
    await cache.withPool(access, undefined, poolUuidOf);
    expect(logins).toHaveLength(3);
  });

  it('lets a task waiting on a login another task gave up on log in itself', async () => {
    const cache = countingCache();
    const opener = new AbortController();
    const first = cache.withPool(access, opener.signal, poolUuidOf);
    const second = cache.withPool(access, undefined, poolUuidOf);
    opener.abort();
    await expect(first).rejects.toBeInstanceOf(XapiCancelledError);
    await expect(second).resolves.toMatch(/^[0-9a-f-]{36}$/);
    expect(logins).toEqual(['pw', 'pw']);
  });

  it('lets a task stop waiting on a login under way, which the others still get', async () => {
    const cache = countingCache();
    const order: string[] = [];
    const first = cache.withPool(access, undefined, poolUuidOf).then((uuid) => {
      order.push('first got the pool');
      return uuid;
    });
    const gaveUp = new AbortController();
    const second = cache.withPool(access, gaveUp.signal, poolUuidOf).catch((error: unknown) => {
      order.push(`second stopped after ${loggedIn.length} logins`);
      throw error;
    });
    gaveUp.abort();
    await expect(second).rejects.toBeInstanceOf(XapiCancelledError);
    await expect(first).resolves.toMatch(/^[0-9a-f-]{36}$/);
    // It did not wait for the login to end.
    expect(order).toEqual(['second stopped after 0 logins', 'first got the pool']);
    await cache.withPool(access, undefined, poolUuidOf);
    expect(logins).toEqual(['pw']);
  });

  it('serves withPoolConnection from the scope it runs in, else connects and closes', async () => {
    const cache = countingCache();
    const pools: XapiPool[] = [];
    const keep = async (pool: XapiPool): Promise<void> => {
      pools.push(pool);
      await pool.listVms();
    };
    await cache.scope(async () => {
      await withPoolConnection(access, undefined, keep);
      await withPoolConnection(access, undefined, keep);
    });
    expect(logins).toHaveLength(1);
    expect(pools[0]).toBe(pools[1]);
    await withPoolConnection(access, undefined, keep);
    expect(pools[2]).not.toBe(pools[0]);
    await expect(pools[2]?.listVms()).rejects.toThrow(/closed/);
    await expect(pools[0]?.listVms()).resolves.toHaveLength(1);
  });
});
