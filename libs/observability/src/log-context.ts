import { AsyncLocalStorage } from 'node:async_hooks';

/** Ids carried through async work so every log line of a request or a run can be found again. */
export interface LogContext {
  requestId?: string;
  runId?: string;
  taskId?: string;
  tenantId?: string;
}

const storage = new AsyncLocalStorage<LogContext>();

export function runWithLogContext<T>(context: LogContext, fn: () => T): T {
  return storage.run({ ...storage.getStore(), ...context }, fn);
}

export function currentLogContext(): LogContext {
  return storage.getStore() ?? {};
}

/** Adds ids to the current context (e.g. the tenant once a request is authenticated). */
export function addToLogContext(context: LogContext): void {
  const store = storage.getStore();
  if (store) Object.assign(store, context);
}
