import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { describeIntegration, scratchDir } from '@haven/testing';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { XapiPool } from './xapi-pool';

/**
 * A JSON-RPC proxy in front of the simulator that counts one client's `event.from` calls, so a
 * test can wait for the next one and compare two clients' event loops.
 */
class EventCallCounter {
  private calls = 0;
  private pending = 0;
  /** The classes each `event.from` call asked to follow. */
  readonly classesAsked = new Set<string>();
  private waiters: { at: number; resolve: () => void }[] = [];
  private settledWaiters: (() => void)[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<EventCallCounter> {
    const upstream = new URL(target);
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const counter = new EventCallCounter(server, `http://127.0.0.1:${port}`);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      void counter.forward(upstream, req, res);
    });
    return counter;
  }

  get count(): number {
    return this.calls;
  }

  /** Resolves once the client has made `total` `event.from` calls. */
  reach(total: number): Promise<void> {
    if (this.calls >= total) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ at: total, resolve }));
  }

  /** Stops once the answers under way (the simulator's last event.from answers) are through. */
  /** Resolves once no `event.from` call is waiting on its answer. */
  settled(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  async close(): Promise<void> {
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeIdleConnections();
    await closed;
  }

  private async forward(upstream: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const call = parsedCall(body);
    if (call?.method === 'event.from') {
      // JSON-RPC params: session, classes, token, timeout.
      const classes: unknown = call.params?.[1];
      if (Array.isArray(classes)) for (const name of classes) this.classesAsked.add(String(name));
      this.counted();
      this.pending++;
      res.once('close', () => {
        if (--this.pending > 0) return;
        for (const resolve of this.settledWaiters.splice(0)) resolve();
      });
    }
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: req.method,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        void pipeline(answer, res).catch(() => undefined);
      },
    );
    out.on('error', () => res.destroy());
    out.end(body);
  }

  private counted(): void {
    this.calls++;
    const due = this.waiters.filter((waiter) => waiter.at <= this.calls);
    this.waiters = this.waiters.filter((waiter) => waiter.at > this.calls);
    for (const waiter of due) waiter.resolve();
  }
}

function parsedCall(body: Buffer): { method?: unknown; params?: unknown[] } | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { method?: unknown; params?: unknown };
    return { method: parsed.method, ...(Array.isArray(parsed.params) ? { params: parsed.params } : {}) };
  } catch {
    return undefined;
  }
}

describeIntegration('XapiPool event loop pause (eventDebounceMs)', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;
  const counters: EventCallCounter[] = [];
  const pools: XapiPool[] = [];

  beforeAll(async () => {
    dir = await scratchDir('haven-xapi-events-');
    sim = await startXapiSimulator({
      port: 0,
      stateDir: join(dir.path, 'state'),
      vms: 1,
      diskSize: 1024 * 1024,
      seed: 'xapi-events',
      user: 'root',
      password: 'pw',
    });
  });

  // A client's event loop keeps going after close() until its pending event.from answers; cut by a
  // stopping server instead, it logs the error and sleeps 60 s before retrying (keeping the process
  // alive). So after the pools close, one last change answers their pending calls normally, and
  // the loops park (they wait for a connection that never comes back).
  afterAll(async () => {
    for (const pool of pools) await pool.close();
    const poolRecord = sim.pool.store.all('pool').at(0);
    if (poolRecord !== undefined) sim.pool.store.touch('pool', poolRecord.ref);
    for (const counter of counters) await counter.settled();
    await sim.close();
    for (const counter of counters) await counter.close();
    await dir.cleanup();
  });

  async function connectCounted(
    eventDebounceMs: number,
  ): Promise<{ pool: XapiPool; counter: EventCallCounter }> {
    const counter = await EventCallCounter.start(sim.url);
    counters.push(counter);
    const pool = await XapiPool.connect({
      url: counter.url,
      username: 'root',
      password: 'pw',
      transport: 'json-rpc',
      eventDebounceMs,
    });
    pools.push(pool);
    return { pool, counter };
  }

  it('is passed to the client: its event loop waits that long between two event.from calls', async () => {
    const quick = await connectCounted(1);
    // Long against the rounds below (milliseconds each), short enough not to keep the process
    // alive long after the suite: the client's pause cannot be cancelled.
    const slow = await connectCounted(3_000);
    const poolRef = sim.pool.store.all('pool').at(0)?.ref;
    if (poolRef === undefined) throw new Error('the simulator has no pool');
    // Each change of the pool record answers both clients' pending event.from; the quick one asks
    // again at once. Were the option lost, both would pause the default 200 ms per round and ask
    // again together.
    for (let round = 1; round <= 5; round++) {
      const asked = quick.counter.count;
      sim.pool.store.touch('pool', poolRef);
      await quick.counter.reach(asked + 1);
    }
    expect(quick.counter.count).toBeGreaterThanOrEqual(5);
    expect(slow.counter.count).toBe(0);
  });

  it('follows only tasks and the pool: a VM changed does not answer event.from', async () => {
    const { pool, counter } = await connectCounted(1);
    const vm = (await pool.listVms()).at(0);
    if (vm === undefined) throw new Error('the simulator has no VM');
    const poolRef = sim.pool.store.all('pool').at(0)?.ref;
    if (poolRef === undefined) throw new Error('the simulator has no pool');
    // The loop runs: one change of the pool is answered.
    let asked = counter.count;
    sim.pool.store.touch('pool', poolRef);
    await counter.reach(asked + 1);
    asked = counter.count;
    for (let round = 1; round <= 5; round++) await pool.renameVm(vm.ref, `quiet-${round}`);
    // A task (the snapshot's) still ends through the event stream.
    const snapshot = await pool.snapshotVm(vm.uuid, { name: 'followed' });
    await pool.destroySnapshot(snapshot.ref);
    expect([...counter.classesAsked].sort()).toEqual(['pool', 'task']);
    // The renames woke nothing: only the snapshot's and its removal's tasks did (created, ended).
    expect(counter.count - asked).toBeLessThanOrEqual(8);
  });
});
