import { encodeValue } from '../rpc/xml-rpc.codec';
import { xapiDateTime, type XapiValue } from '../rpc/xapi-value';
import { toXapiFailure, XapiFailure } from '../xapi.failure';
import type { ObjectStore } from './object.store';
import { taskRecord } from './record.defaults';

/**
 * XAPI tasks: `Async.*` calls, `task.create` by clients (for HTTP transfers), progress, and the
 * terminal states the xen-api client waits for through `event.from`.
 */
export class TaskRegistry {
  private readonly controllers = new Map<string, AbortController>();

  constructor(
    private readonly store: ObjectStore,
    private readonly hostRef: () => string,
  ) {}

  create(nameLabel: string, nameDescription = ''): string {
    const ref = this.store.create(
      'task',
      taskRecord({ name_label: nameLabel, name_description: nameDescription, resident_on: this.hostRef() }),
    );
    this.controllers.set(ref, new AbortController());
    return ref;
  }

  isPending(ref: string): boolean {
    return this.store.has('task', ref) && this.store.get('task', ref)['status'] === 'pending';
  }

  /** Aborted when the task is cancelled (`task.cancel`) or destroyed. */
  signal(ref: string): AbortSignal {
    let controller = this.controllers.get(ref);
    if (controller === undefined) {
      controller = new AbortController();
      this.controllers.set(ref, controller);
    }
    return controller.signal;
  }

  progress(ref: string, value: number): void {
    if (!this.isPending(ref)) return;
    const rounded = Math.round(Math.min(Math.max(value, 0), 1) * 100) / 100;
    if (this.store.get('task', ref)['progress'] === rounded) return;
    this.store.setField('task', ref, 'progress', rounded);
  }

  /** `result` as XAPI stores it: an XML-RPC value (`<value>OpaqueRef:…</value>`), or '' for none. */
  succeed(ref: string, result: XapiValue | undefined): void {
    if (!this.isPending(ref)) return;
    const encoded = result === undefined || result === '' ? '' : encodeValue(result);
    this.finish(ref, { status: 'success', result: encoded, progress: 1 });
  }

  fail(ref: string, error: unknown): void {
    if (!this.isPending(ref)) return;
    const failure = toXapiFailure(error);
    if (failure.code === 'TASK_CANCELLED') {
      this.finish(ref, { status: 'cancelled', error_info: failure.errorDescription });
      return;
    }
    this.finish(ref, { status: 'failure', error_info: failure.errorDescription });
  }

  cancel(ref: string): void {
    this.store.get('task', ref);
    if (!this.isPending(ref)) return;
    this.signal(ref);
    this.controllers.get(ref)?.abort(new XapiFailure('TASK_CANCELLED', [ref]));
    // An operation observing the signal settles the task itself; a bare client task ends now.
    setImmediate(() => this.fail(ref, new XapiFailure('TASK_CANCELLED', [ref])));
  }

  destroy(ref: string): void {
    this.store.get('task', ref);
    this.controllers.get(ref)?.abort(new XapiFailure('TASK_CANCELLED', [ref]));
    this.controllers.delete(ref);
    this.store.destroy('task', ref);
  }

  /** Runs an `Async.*` operation: returns the task ref now, settles the task when `work` ends. */
  run(
    nameLabel: string,
    work: (task: { ref: string; signal: AbortSignal; progress(value: number): void }) => Promise<XapiValue>,
  ): string {
    const ref = this.create(nameLabel);
    const signal = this.signal(ref);
    setImmediate(() => {
      work({ ref, signal, progress: (value) => this.progress(ref, value) }).then(
        (result) => this.succeed(ref, result),
        (error: unknown) => this.fail(ref, signal.aborted ? new XapiFailure('TASK_CANCELLED', [ref]) : error),
      );
    });
    return ref;
  }

  private finish(ref: string, fields: Record<string, XapiValue>): void {
    this.store.update('task', ref, (record) => {
      Object.assign(record, fields, { finished: xapiDateTime(), allowed_operations: [] });
    });
    this.controllers.delete(ref);
  }
}
