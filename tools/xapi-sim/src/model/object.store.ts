import { randomUUID } from 'node:crypto';
import { XapiFailure } from '../xapi.failure';
import type { XapiStruct, XapiValue } from '../rpc/xapi-value';
import { findXapiClass, VOLATILE_CLASSES, XAPI_CLASSES, type XapiClass } from './xapi-class';

export interface StoredObject {
  readonly cls: XapiClass;
  readonly ref: string;
  record: XapiStruct;
  /** Generation at which the object was added / last modified. */
  added: number;
  modified: number;
}

interface Tombstone {
  cls: XapiClass;
  ref: string;
  generation: number;
}

export interface XapiEvent {
  id: string;
  class: string;
  operation: 'add' | 'mod' | 'del';
  ref: string;
  timestamp: string;
  snapshot?: XapiStruct;
}

export interface EventBatch {
  events: XapiEvent[];
  valid_ref_counts: Record<string, number>;
  token: string;
}

export interface PersistedObject {
  cls: XapiClass;
  ref: string;
  record: XapiStruct;
}

const MAX_TOMBSTONES = 20_000;

function formatToken(generation: number): string {
  return generation.toString().padStart(20, '0');
}

function cloneRecord(record: XapiStruct): XapiStruct {
  return structuredClone(record);
}

/**
 * Every XAPI object of the pool, indexed by ref and uuid, with a generation counter per change so
 * that `event.from` can answer "what changed since token T" the way XAPI's event database does.
 */
export class ObjectStore {
  private generation = 0;
  /** Changes older than this cannot be replayed any more (tombstones pruned, or before restart). */
  private oldestReplayable = 0;
  private readonly byRef = new Map<string, StoredObject>();
  private readonly byClass = new Map<XapiClass, Map<string, StoredObject>>(
    XAPI_CLASSES.map((cls) => [cls, new Map<string, StoredObject>()]),
  );
  private readonly byUuid = new Map<string, StoredObject>();
  private tombstones: Tombstone[] = [];
  private readonly waiters = new Set<() => void>();
  /** Called after every change (persistence schedules a save). */
  onChange: (cls: XapiClass) => void = () => undefined;

  get currentToken(): string {
    return formatToken(this.generation);
  }

  create(cls: XapiClass, record: XapiStruct, ref: string = `OpaqueRef:${randomUUID()}`): string {
    if (typeof record['uuid'] !== 'string') record['uuid'] = randomUUID();
    const generation = ++this.generation;
    const object: StoredObject = { cls, ref, record, added: generation, modified: generation };
    this.byRef.set(ref, object);
    this.classMap(cls).set(ref, object);
    this.byUuid.set(record['uuid'], object);
    this.changed(cls);
    return ref;
  }

  has(cls: XapiClass, ref: string): boolean {
    return this.byRef.get(ref)?.cls === cls;
  }

  find(ref: string): StoredObject | undefined {
    return this.byRef.get(ref);
  }

  /** The live record of `ref` (mutate only through `update`), or HANDLE_INVALID [class, ref]. */
  get(cls: XapiClass, ref: string): XapiStruct {
    const object = this.byRef.get(ref);
    if (object?.cls !== cls) throw XapiFailure.handleInvalid(cls, ref);
    return object.record;
  }

  byUuidOf(cls: XapiClass, uuid: string): string {
    const object = this.byUuid.get(uuid);
    if (object?.cls !== cls) throw new XapiFailure('UUID_INVALID', [cls, uuid]);
    return object.ref;
  }

  /** Accepts a ref or a uuid (HTTP handlers take either, as XAPI does). */
  resolve(cls: XapiClass, refOrUuid: string): string {
    if (this.has(cls, refOrUuid)) return refOrUuid;
    const object = this.byUuid.get(refOrUuid);
    if (object?.cls === cls) return object.ref;
    throw XapiFailure.handleInvalid(cls, refOrUuid);
  }

  all(cls: XapiClass): StoredObject[] {
    return [...this.classMap(cls).values()];
  }

  count(cls: XapiClass): number {
    return this.classMap(cls).size;
  }

  update(cls: XapiClass, ref: string, mutate: (record: XapiStruct) => void): XapiStruct {
    const object = this.byRef.get(ref);
    if (object?.cls !== cls) throw XapiFailure.handleInvalid(cls, ref);
    mutate(object.record);
    object.modified = ++this.generation;
    this.changed(cls);
    return object.record;
  }

  setField(cls: XapiClass, ref: string, field: string, value: XapiValue): void {
    this.update(cls, ref, (record) => {
      record[field] = value;
    });
  }

  destroy(cls: XapiClass, ref: string): void {
    const object = this.byRef.get(ref);
    if (object?.cls !== cls) throw XapiFailure.handleInvalid(cls, ref);
    this.byRef.delete(ref);
    this.classMap(cls).delete(ref);
    const uuid = object.record['uuid'];
    if (typeof uuid === 'string') this.byUuid.delete(uuid);
    this.tombstones.push({ cls, ref, generation: ++this.generation });
    if (this.tombstones.length > MAX_TOMBSTONES) {
      const dropped = this.tombstones.splice(0, this.tombstones.length - MAX_TOMBSTONES);
      this.oldestReplayable = dropped[dropped.length - 1]?.generation ?? this.oldestReplayable;
    }
    this.changed(cls);
  }

  /** Marks a change without modifying a record (`event.inject`). */
  touch(cls: XapiClass, ref: string): string {
    this.update(cls, ref, () => undefined);
    return this.currentToken;
  }

  /** Changes after `token` in the given classes (`*` for all; `vm/OpaqueRef:...` for one object). */
  eventsSince(token: string, classes: readonly string[]): EventBatch {
    const since = token === '' ? 0 : Number.parseInt(token, 10);
    if (!Number.isFinite(since) || since < 0)
      throw new XapiFailure('EVENT_FROM_TOKEN_PARSE_FAILURE', [token]);
    if (since < this.oldestReplayable) throw new XapiFailure('EVENTS_LOST');
    const wanted = this.classFilter(classes);
    const timestamp = (Date.now() / 1000).toFixed(3);
    const events: XapiEvent[] = [];
    for (const object of this.byRef.values()) {
      if (object.modified <= since || !wanted.accepts(object.cls, object.ref)) continue;
      events.push({
        id: formatToken(object.modified),
        class: object.cls.toLowerCase(),
        operation: object.added > since ? 'add' : 'mod',
        ref: object.ref,
        timestamp,
        snapshot: cloneRecord(object.record),
      });
    }
    for (const tombstone of this.tombstones) {
      if (tombstone.generation <= since || !wanted.accepts(tombstone.cls, tombstone.ref)) continue;
      events.push({
        id: formatToken(tombstone.generation),
        class: tombstone.cls.toLowerCase(),
        operation: 'del',
        ref: tombstone.ref,
        timestamp,
      });
    }
    events.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const validRefCounts: Record<string, number> = {};
    for (const cls of wanted.classes) validRefCounts[cls.toLowerCase()] = this.count(cls);
    return { events, valid_ref_counts: validRefCounts, token: this.currentToken };
  }

  /** Resolves at the next change, when `signal` aborts, or after `timeoutMs`. */
  waitForChange(timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  snapshotForPersistence(): { generation: number; objects: PersistedObject[] } {
    const objects: PersistedObject[] = [];
    for (const object of this.byRef.values()) {
      if (!VOLATILE_CLASSES.has(object.cls))
        objects.push({ cls: object.cls, ref: object.ref, record: object.record });
    }
    return { generation: this.generation, objects };
  }

  restore(generation: number, objects: readonly PersistedObject[]): void {
    this.generation = generation;
    // Deletions before a restart are not replayable: a token from before it gets EVENTS_LOST.
    this.oldestReplayable = generation;
    for (const { cls, ref, record } of objects) {
      const object: StoredObject = { cls, ref, record, added: generation, modified: generation };
      this.byRef.set(ref, object);
      this.classMap(cls).set(ref, object);
      if (typeof record['uuid'] === 'string') this.byUuid.set(record['uuid'], object);
    }
  }

  private classMap(cls: XapiClass): Map<string, StoredObject> {
    const map = this.byClass.get(cls);
    if (map === undefined) throw new Error(`object store has no table for class ${cls}`);
    return map;
  }

  private changed(cls: XapiClass): void {
    for (const waiter of [...this.waiters]) waiter();
    this.onChange(cls);
  }

  private classFilter(classes: readonly string[]): {
    classes: XapiClass[];
    accepts: (cls: XapiClass, ref: string) => boolean;
  } {
    const all = new Set<XapiClass>();
    const objects = new Set<string>();
    for (const entry of classes) {
      if (entry === '*') {
        XAPI_CLASSES.forEach((cls) => all.add(cls));
        continue;
      }
      const slash = entry.indexOf('/');
      if (slash !== -1) {
        objects.add(entry.slice(slash + 1));
        continue;
      }
      const cls = findXapiClass(entry);
      if (cls !== undefined) all.add(cls);
    }
    return {
      classes: [...all],
      accepts: (cls, ref) => all.has(cls) || objects.has(ref),
    };
  }
}
