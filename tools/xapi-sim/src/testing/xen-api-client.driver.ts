import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

export interface RemoteXapiError {
  message: string;
  code?: string;
  params?: string[];
  name?: string;
}

/** A failure of the real client, with XAPI's code and parameters. */
export class XenApiCallError extends Error {
  readonly code: string | undefined;
  readonly params: string[];
  constructor(error: RemoteXapiError) {
    super(error.message);
    this.name = 'XenApiCallError';
    this.code = error.code;
    this.params = error.params ?? [];
  }
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: RemoteXapiError };

export interface ResourceDownload {
  bytes: number;
  sha256: string;
  transfer: Settled<unknown>;
  task: Settled<unknown>;
}

export type XapiObject = Record<string, unknown> & { $ref: string; $type: string };

/**
 * The real `xen-api` client, run in a worker thread (Jest cannot load its ESM under Node 20) and
 * driven through messages: what the tests see is exactly what the client does against the server.
 */
export class XenApiClientDriver {
  private readonly worker = new Worker(join(__dirname, 'xen-api-client.worker.mjs'));
  private next = 0;
  private readonly pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();

  constructor() {
    this.worker.on('message', (message: { id: number } & Settled<unknown>) => {
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (waiter === undefined) return;
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(new XenApiCallError(message.error));
    });
    this.worker.on('error', (error) => {
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    });
  }

  private send<T>(op: string, input: unknown): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage({ id, op, input });
    });
  }

  connect(
    url: string,
    user: string,
    password: string,
    transport: 'auto' | 'json-rpc' | 'xml-rpc' = 'auto',
  ): Promise<{ pool: string; sessionId: string }> {
    return this.send('connect', { url, user, password, transport });
  }

  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    return this.send('call', { method, args });
  }

  callAsync<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    return this.send('callAsync', { method, args });
  }

  /** Waits until every change made so far has reached the client's object cache. */
  barrier(): Promise<null> {
    return this.send('barrier', {});
  }

  objects(type?: string): Promise<XapiObject[]> {
    return this.send('objects', { type });
  }

  /** GET through `getResource` (with its task); the body goes to `outFile` or is only hashed. */
  getResource(path: string, query: Record<string, string>, outFile?: string): Promise<ResourceDownload> {
    return this.send('getResource', { path, query, outFile });
  }

  /** PUT a file through `putResource`; `unknownLength` sends it as a stream without length. */
  putResource(
    path: string,
    query: Record<string, string>,
    inFile: string,
    unknownLength = false,
  ): Promise<Settled<unknown>> {
    return this.send('putResource', { path, query, inFile, unknownLength });
  }

  async close(): Promise<void> {
    try {
      await this.send('disconnect', {});
    } finally {
      await this.worker.terminate();
    }
  }
}
