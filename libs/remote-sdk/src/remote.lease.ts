import { randomUUID } from 'node:crypto';
import type { LeaseOptions, RemoteLease, RemoteStore } from './remote.contract';
import { RemoteError, isRemoteError } from './remote.errors';

/** Lease objects live under this prefix: `.haven/leases/<name>/<generation>`. */
export const LEASE_PREFIX = '.haven/leases/';
const GENERATION_DIGITS = 12;
const DEFAULT_CLOCK_SKEW_MS = 2000;

interface LeaseRecord {
  owner: string;
  token: string;
  acquiredAt: string;
  expiresAt: string;
  released?: boolean;
}

/**
 * An exclusive, expiring lease built only on putIfAbsent, get and list, so it works on every
 * remote type. Each state change creates the next *generation* object with putIfAbsent, so of
 * concurrent contenders for generation N+1 exactly one wins (as far as the remote's putIfAbsent is
 * atomic: see RemoteFeatures.atomicPutIfAbsent). Old generations are deleted by the winner; a
 * contender whose stale view let it create an old, already-deleted generation sees a higher one
 * when it verifies, and backs off. The latest generation is never deleted (release writes a
 * "released" generation), so generation numbers only grow.
 *
 * Guarantees: at most one live holder, provided (a) putIfAbsent is atomic, (b) clocks of the
 * machines sharing the remote differ by less than clockSkewMs, and (c) a holder stops its exclusive
 * work when renew() fails or expiresAt (minus its own margin) passes without a renew.
 */
export async function acquireRemoteLease(
  store: RemoteStore,
  name: string,
  options: LeaseOptions,
): Promise<RemoteLease> {
  if (!/^[a-z0-9][a-z0-9._-]{0,99}$/i.test(name))
    throw new RemoteError(
      'INVALID_ARGUMENT',
      store.name,
      `Remote "${store.name}": lease name "${name}" is invalid; use letters, digits, ".", "_" and "-".`,
    );
  if (!(options.ttlMs > 0))
    throw new RemoteError(
      'INVALID_ARGUMENT',
      store.name,
      `Remote "${store.name}": lease "${name}" needs a ttlMs > 0.`,
    );
  const lease = new GenerationLease(store, name, options);
  await lease.acquire();
  return lease;
}

class GenerationLease implements RemoteLease {
  readonly owner: string;
  private readonly token = randomUUID();
  private readonly prefix: string;
  private generation = -1;
  private expiry = new Date(0);
  private released = false;

  constructor(
    private readonly store: RemoteStore,
    readonly name: string,
    private readonly options: LeaseOptions,
  ) {
    this.owner = options.owner;
    this.prefix = `${LEASE_PREFIX}${name}/`;
  }

  get expiresAt(): Date {
    return this.expiry;
  }

  async acquire(): Promise<void> {
    const latest = await this.latest();
    // A record gone between list and read was replaced by a newer generation: claiming fails below.
    const record = latest?.record;
    if (record !== undefined && record.released !== true) {
      const skew = this.options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
      const expiresAt = Date.parse(record.expiresAt);
      if (!(Date.now() > expiresAt + skew)) throw this.locked(record);
    }
    await this.claim((latest?.generation ?? -1) + 1);
  }

  async renew(): Promise<void> {
    if (this.released) throw this.lost('it was released');
    const latest = await this.latest();
    if (latest?.generation !== this.generation || latest.record?.token !== this.token)
      throw this.lost(
        latest === undefined ? 'its record is gone' : `the remote now shows ${describeHolder(latest.record)}`,
      );
    await this.claim(this.generation + 1);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const latest = await this.latest();
    // Lost meanwhile: nothing of ours to release.
    if (latest?.generation !== this.generation || latest.record?.token !== this.token) return;
    const next = this.generation + 1;
    const now = new Date().toISOString();
    const record: LeaseRecord = {
      owner: this.owner,
      token: this.token,
      acquiredAt: now,
      expiresAt: now,
      released: true,
    };
    if (await this.store.putIfAbsent(this.key(next), encode(record), { signal: this.options.signal }))
      await this.deleteBelow(next);
  }

  /** Creates generation `generation` as ours, verifies nobody is ahead, and removes older ones. */
  private async claim(generation: number): Promise<void> {
    const now = Date.now();
    const record: LeaseRecord = {
      owner: this.owner,
      token: this.token,
      acquiredAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.options.ttlMs).toISOString(),
    };
    const created = await this.store.putIfAbsent(this.key(generation), encode(record), {
      signal: this.options.signal,
    });
    if (!created) {
      const holder = await this.read(generation);
      throw this.generation >= 0
        ? this.lost(`the remote now shows ${describeHolder(holder)}`)
        : this.locked(holder);
    }
    // Read back: on remotes whose putIfAbsent is not atomic, a concurrent writer may have replaced ours.
    const mine = await this.read(generation);
    const latest = await this.latest();
    if (mine?.token !== this.token || latest === undefined || latest.generation !== generation) {
      if (mine?.token === this.token)
        await this.store.delete(this.key(generation), { signal: this.options.signal });
      const holder = latest?.record ?? mine;
      throw this.generation >= 0
        ? this.lost(`the remote now shows ${describeHolder(holder)}`)
        : this.locked(holder);
    }
    this.generation = generation;
    this.expiry = new Date(record.expiresAt);
    await this.deleteBelow(generation);
  }

  private async latest(): Promise<{ generation: number; record: LeaseRecord | undefined } | undefined> {
    let best = -1;
    for await (const object of this.store.listAll(this.prefix, { signal: this.options.signal })) {
      const generation = Number(object.key.slice(this.prefix.length));
      if (Number.isSafeInteger(generation) && generation > best) best = generation;
    }
    if (best < 0) return undefined;
    return { generation: best, record: await this.read(best) };
  }

  private async read(generation: number): Promise<LeaseRecord | undefined> {
    try {
      const body = await this.store.getBuffer(this.key(generation), { signal: this.options.signal });
      return JSON.parse(body.toString('utf8')) as LeaseRecord;
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND') || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  private async deleteBelow(generation: number): Promise<void> {
    for await (const object of this.store.listAll(this.prefix, { signal: this.options.signal })) {
      const other = Number(object.key.slice(this.prefix.length));
      if (Number.isSafeInteger(other) && other < generation)
        await this.store.delete(object.key, { signal: this.options.signal });
    }
  }

  private key(generation: number): string {
    return `${this.prefix}${String(generation).padStart(GENERATION_DIGITS, '0')}`;
  }

  private locked(holder: LeaseRecord | undefined): RemoteError {
    return new RemoteError(
      'LOCKED',
      this.store.name,
      `Remote "${this.store.name}": lease "${this.name}" is held by ${describeHolder(holder)}. ` +
        'Wait for it to finish or for the lease to expire.',
      this.prefix,
    );
  }

  private lost(why: string): RemoteError {
    return new RemoteError(
      'LOCKED',
      this.store.name,
      `Remote "${this.store.name}": lease "${this.name}" of ${this.owner} was lost (${why}). ` +
        'Stop the exclusive work; another process may be doing it now.',
      this.prefix,
    );
  }
}

function describeHolder(record: LeaseRecord | undefined): string {
  if (record === undefined) return 'another process';
  if (record.released === true) return `a release by "${record.owner}"`;
  return `"${record.owner}" until ${record.expiresAt}`;
}

function encode(record: LeaseRecord): Buffer {
  return Buffer.from(JSON.stringify(record));
}
