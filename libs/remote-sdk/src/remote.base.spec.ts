import { getEventListeners, getMaxListeners } from 'node:events';
import { countInFlight } from '@haven/testing';
import { Readable } from 'node:stream';
import { Remote } from './remote.base';
import type { DriverContext, RemoteDriver } from './remote.driver';
import type { ListPage, ObjectStat, RemoteCapacity } from './remote.contract';
import { DriverError, RemoteError, classifyErrno, type ErrorClassification } from './remote.errors';
import { backoffDelay } from './retry.policy';

/**
 * An in-memory driver with injectable faults: the unit under test is the base class's retry,
 * timeout, abort and error-naming logic, which no real backend can fail on demand.
 */
class FaultyMemoryDriver implements RemoteDriver {
  readonly type = 'memory';
  readonly features = { atomicPutIfAbsent: true, atomicRename: false, capacity: false };
  readonly objects = new Map<string, Buffer>();
  calls: string[] = [];
  /** Errors thrown by the next calls, in order. */
  faults: Error[] = [];
  /** When set, stat() never settles (a hung server). */
  hang = false;
  /** When set, get() bodies send a few bytes and then nothing. */
  stallBodies = false;

  private fault(operation: string): void {
    this.calls.push(operation);
    const next = this.faults.shift();
    if (next !== undefined) throw next;
  }

  async put(key: string, body: Buffer | Readable): Promise<void> {
    this.fault('put');
    const chunks: Buffer[] = [];
    if (Buffer.isBuffer(body)) chunks.push(body);
    else for await (const chunk of body) chunks.push(chunk as Buffer);
    this.objects.set(key, Buffer.concat(chunks));
  }
  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    await Promise.resolve();
    if (this.objects.has(key)) {
      this.fault('putIfAbsent');
      return false;
    }
    this.objects.set(key, body);
    this.fault('putIfAbsent'); // created, then the reply is lost
    return true;
  }
  async get(key: string): Promise<Readable> {
    await Promise.resolve();
    this.fault('get');
    // A body that starts, then stalls: the server stopped sending.
    if (this.stallBodies) {
      let sent = false;
      return new Readable({
        read() {
          if (!sent) this.push(Buffer.from('partial'));
          sent = true; // and then never another byte
        },
      });
    }
    const body = this.objects.get(key);
    if (body === undefined) throw new DriverError('NOT_FOUND', 'no such object');
    return Readable.from([body]);
  }
  async stat(key: string, context: DriverContext): Promise<ObjectStat> {
    this.fault('stat');
    if (this.hang)
      await new Promise((_, reject) =>
        context.signal.addEventListener('abort', () => reject(new Error('x'))),
      );
    const body = this.objects.get(key);
    if (body === undefined) throw new DriverError('NOT_FOUND', 'no such object');
    return { key, size: body.length, modifiedAt: new Date() };
  }
  async list(): Promise<ListPage> {
    await Promise.resolve();
    this.fault('list');
    return { objects: [] };
  }
  async delete(key: string): Promise<void> {
    await Promise.resolve();
    this.fault('delete');
    if (!this.objects.delete(key)) throw new DriverError('NOT_FOUND', 'no such object');
  }
  async copy(fromKey: string, toKey: string): Promise<void> {
    await Promise.resolve();
    this.fault('copy');
    const body = this.objects.get(fromKey);
    if (body === undefined) throw new DriverError('NOT_FOUND', 'no such object');
    this.objects.set(toKey, body);
  }
  async capacity(): Promise<RemoteCapacity> {
    await Promise.resolve();
    return {};
  }
  classifyError(error: unknown): ErrorClassification | undefined {
    if (error instanceof Error && error.message.startsWith('SlowDown'))
      return { code: 'TRANSIENT', reason: 'the server asks to slow down' };
    if (error instanceof Error && error.message.startsWith('BadKey'))
      return { code: 'AUTH_FAILED', reason: error.message };
    return undefined;
  }
  async close(): Promise<void> {
    await Promise.resolve();
  }
}

const fast = { retries: 3, baseDelayMs: 1, maxDelayMs: 2 };

function econn(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {
    code: 'ECONNREFUSED',
    syscall: 'connect',
  });
}

describe('Remote base class', () => {
  it('lets many operations share one caller signal under its listener limit, and removes their listeners', async () => {
    const driver = new FaultyMemoryDriver();
    driver.hang = true;
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    const controller = new AbortController();
    const inFlight = Array.from({ length: 40 }, () => remote.exists('k', { signal: controller.signal }));
    await new Promise((resolve) => setImmediate(resolve));
    // One listener per operation in flight; past the limit Node warns of a leak (there is none).
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(40);
    expect(getMaxListeners(controller.signal)).toBeGreaterThanOrEqual(40);
    controller.abort();
    const settled = await Promise.allSettled(inFlight);
    expect(settled.every((outcome) => outcome.status === 'rejected')).toBe(true);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('retries TRANSIENT failures and then succeeds', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    await remote.put('a', Buffer.from('x'));
    driver.faults = [econn(), new Error('SlowDown please')];
    expect((await remote.stat('a')).size).toBe(1);
    expect(driver.calls.filter((c) => c === 'stat')).toHaveLength(3);
  });

  it('retries a replayable body that failed mid-way from a new stream of it, a Readable not', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    let opened = 0;
    const body = {
      size: 10,
      open: () => {
        opened++;
        const first = opened === 1;
        return Readable.from(
          (function* () {
            yield Buffer.from('01234');
            // The connection drops after half the body, on the first attempt only.
            if (first) throw econn();
            yield Buffer.from('56789');
          })(),
        );
      },
    };
    await remote.put('replayed', body);
    expect(opened).toBe(2);
    expect(driver.objects.get('replayed')?.toString()).toBe('0123456789');
    const failing = Readable.from(
      (function* () {
        yield Buffer.from('01234');
        throw econn();
      })(),
    );
    await expect(remote.put('streamed', failing)).rejects.toMatchObject({ code: 'TRANSIENT' });
    // Two attempts of the replayable body, one of the stream.
    expect(driver.calls.filter((call) => call === 'put')).toHaveLength(3);
  });

  it('gives up after the configured retries, saying how many attempts it made', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    driver.faults = [econn(), econn(), econn(), econn(), econn()];
    const error = (await remote.list('x/').catch((e: unknown) => e)) as RemoteError;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error.code).toBe('TRANSIENT');
    expect(error.message).toContain('after 4 attempts');
    expect(driver.calls.filter((c) => c === 'list')).toHaveLength(4);
  });

  it('does not retry other failures', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    driver.faults = [new Error('BadKey for AKIA')];
    await expect(remote.list('')).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    expect(driver.calls).toEqual(['list']);
  });

  it('does not retry a streamed put (its body can be read once)', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    driver.faults = [econn()];
    await expect(remote.put('s', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({
      code: 'TRANSIENT',
    });
    expect(driver.calls).toEqual(['put']);
  });

  it('counts a putIfAbsent whose reply was lost as won when the stored body is identical', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    driver.faults = [econn()];
    expect(await remote.putIfAbsent('p', Buffer.from('mine'))).toBe(true);
    expect(await remote.putIfAbsent('p', Buffer.from('other'))).toBe(false);
  });

  it('times out a hung operation as TRANSIENT', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: { retries: 0 }, timeoutMs: 20 });
    driver.hang = true;
    const error = (await remote.stat('a').catch((e: unknown) => e)) as RemoteError;
    expect(error.code).toBe('TRANSIENT');
    expect(error.message).toContain('timed out');
  });

  it('fails a stalled body with TRANSIENT, in getBuffer and in a get stream', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, {
      name: 'r1',
      retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 1 },
      idleTimeoutMs: 30,
    });
    await remote.put('s', Buffer.from('x'));
    driver.stallBodies = true;
    await expect(remote.getBuffer('s')).rejects.toMatchObject({ code: 'TRANSIENT' });
    expect(driver.calls.filter((c) => c === 'get')).toHaveLength(2);
    const stream = await remote.get('s');
    let failure: unknown;
    try {
      for await (const chunk of stream) expect(chunk).toBeInstanceOf(Buffer);
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(RemoteError);
    expect((failure as RemoteError).code).toBe('TRANSIENT');
  });

  it('stops retrying when the caller aborts during the backoff', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, {
      name: 'r1',
      retry: { retries: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    driver.faults = [econn()];
    const controller = new AbortController();
    const pending = remote.list('', { signal: controller.signal });
    setImmediate(() => controller.abort());
    await expect(pending).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('never puts a secret in a message or in the cause', async () => {
    const driver = new FaultyMemoryDriver();
    const secret = 'sUp3rS3cretKey/+==';
    const remote = new Remote(driver, { name: 'r1', secrets: [secret] });
    driver.faults = [new Error(`BadKey: signature for ${secret} rejected`)];
    const error = (await remote.list('').catch((e: unknown) => e)) as RemoteError;
    expect(error.message).not.toContain(secret);
    expect(error.message).toContain('[redacted]');
    expect(JSON.stringify(error.cause)).not.toContain(secret);
  });

  it('makes delete idempotent and maps NOT_FOUND with the remote and key named', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'backups-eu' });
    await remote.delete('never/was');
    const error = (await remote.getBuffer('never/was').catch((e: unknown) => e)) as RemoteError;
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toMatch(
      /^Remote "backups-eu" \(memory\): get "never\/was" failed: no such object\./,
    );
  });

  it('tells which of many keys are missing, stat-ing each key once, over several batches', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    const keys = Array.from({ length: 600 }, (_, i) => `chunks/${i}`);
    for (const key of keys.filter((_, i) => i % 3 === 0)) driver.objects.set(key, Buffer.from('x'));
    driver.calls = [];
    const missing = await remote.missing([...keys, ...keys.slice(0, 10)]);
    expect([...missing].sort()).toEqual(keys.filter((_, i) => i % 3 !== 0).sort());
    expect(driver.calls).toHaveLength(600);
  });

  it.each([
    ['16 (the default)', undefined, 16],
    ["the driver's statsInFlight (40, as an object store asks)", 40, 40],
  ])('keeps %s existence checks in flight', async (_label, statsInFlight, expected) => {
    const driver = Object.assign(new FaultyMemoryDriver(), { statsInFlight });
    const stats = countInFlight(driver.stat.bind(driver));
    driver.stat = stats.call;
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    const missing = await remote.missing(Array.from({ length: 200 }, (_, i) => `chunks/${i}`));
    expect(missing.size).toBe(200);
    expect(stats.count.peak).toBe(expected);
  });

  it('retries a TRANSIENT failure of missing() for the keys not answered yet only', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    const keys = Array.from({ length: 100 }, (_, i) => `k/${i}`);
    for (const key of keys.slice(0, 50)) driver.objects.set(key, Buffer.from('x'));
    driver.faults = [econn()];
    const missing = await remote.missing(keys);
    expect([...missing].sort()).toEqual(keys.slice(50).sort());
    // The failed key once more; the others in flight with it answered and were kept.
    expect(driver.calls).toHaveLength(101);
  });

  it('fails missing() on another error, naming the key, without a retry', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: fast });
    driver.faults = [new Error('BadKey for AKIA')];
    const error = (await remote.missing(['a', 'b']).catch((e: unknown) => e)) as RemoteError;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error.code).toBe('AUTH_FAILED');
    expect(['a', 'b']).toContain(error.key);
    expect(error.message).toContain(`exists "${String(error.key)}"`);
    expect(driver.calls).toEqual(['stat', 'stat']);
  });

  it('times out missing() as TRANSIENT when no key answers, and fails at once when aborted', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1', retry: { retries: 0 }, timeoutMs: 20 });
    driver.hang = true;
    const error = (await remote.missing(['a', 'b']).catch((e: unknown) => e)) as RemoteError;
    expect(error.code).toBe('TRANSIENT');
    expect(error.message).toContain('timed out (no progress for 20 ms)');
    const controller = new AbortController();
    const pending = remote.missing(['a'], { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(remote.missing(['ok', '/abs'])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('renames by copy then delete when the driver has no rename', async () => {
    const driver = new FaultyMemoryDriver();
    const remote = new Remote(driver, { name: 'r1' });
    await remote.put('from', Buffer.from('x'));
    await remote.rename('from', 'to');
    expect([...driver.objects.keys()]).toEqual(['to']);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially up to the cap, with jitter in the upper half', () => {
    const policy = { retries: 10, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(policy, 1, () => 0)).toBe(50);
    expect(backoffDelay(policy, 1, () => 1)).toBe(100);
    expect(backoffDelay(policy, 3, () => 1)).toBe(400);
    expect(backoffDelay(policy, 8, () => 1)).toBe(1000);
    expect(backoffDelay(policy, 8, () => 0)).toBe(500);
  });
});

describe('classifyErrno', () => {
  it('maps file-system and network errnos', () => {
    const err = (code: string): Error => Object.assign(new Error(code), { code });
    expect(classifyErrno(err('ENOENT'))?.code).toBe('NOT_FOUND');
    expect(classifyErrno(err('EACCES'))?.code).toBe('PERMISSION_DENIED');
    expect(classifyErrno(err('EDQUOT'))?.code).toBe('NO_SPACE');
    expect(classifyErrno(err('EIO'))?.code).toBe('TRANSIENT');
    expect(classifyErrno(err('ECONNRESET'))?.code).toBe('TRANSIENT');
    expect(classifyErrno(err('EWHATEVER'))).toBeUndefined();
  });
});
