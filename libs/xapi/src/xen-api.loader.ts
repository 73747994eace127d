import * as nodeModule from 'node:module';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';

/** The part of the real `xen-api` 4.7.6 client Haven uses (the package ships no types). */
export interface XenApiClient {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  readonly pool: {
    $ref: string;
    uuid: string;
    name_label: string;
    other_config?: Record<string, string>;
  } | null;
  /** The session's id once logged in (the client's getter). */
  readonly sessionId: string | undefined;
  /**
   * The master's address the client talks to now (an internal field of xen-api 4.7.6, read only):
   * it moves to the real master when the given host answered HOST_IS_SLAVE at login.
   */
  readonly _url?: { protocol?: string; hostname?: string; port?: string };
  readonly objectsFetched: Promise<void>;
  call(method: string, ...args: unknown[]): Promise<unknown>;
  callAsync(token: CancelTokenLike, method: string, ...args: unknown[]): Promise<unknown>;
  createTask(nameLabel: string, nameDescription?: string): Promise<string>;
  watchTask(ref: string): Promise<unknown>;
  getResource(
    token: CancelTokenLike,
    pathname: string,
    options: { query: Record<string, string>; task?: string },
  ): Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; body: Readable }>;
  putResource(
    token: CancelTokenLike,
    body: Readable,
    pathname: string,
    options: { query: Record<string, string>; task?: string },
  ): Promise<unknown>;
}

export interface XenApiClientOptions {
  url: string;
  auth: { user: string; password: string };
  allowUnauthorized: boolean;
  callTimeout: number;
  httpInactivityTimeout: number;
  syncStackTraces: boolean;
  transport: 'auto' | 'json-rpc' | 'xml-rpc';
  /** Milliseconds the event loop sleeps between two `event.from` calls (the client's default: 200). */
  debounce?: number;
  /** Milliseconds the event loop waits after a failed `event.from` before it asks again (the client's default: 60 s). */
  eventPollDelay?: number;
  /** The classes the client caches and follows through `event.from` (the client's default: every class). */
  watchEvents?: readonly string[];
}

/** promise-toolbox's CancelToken, which the client's cancelable methods take as first argument. */
export type CancelTokenLike = object;

interface PromiseToolbox {
  CancelToken: {
    from(signal: AbortSignal): CancelTokenLike;
    source(): { token: CancelTokenLike; cancel(reason?: string): void };
    none: CancelTokenLike;
  };
}

interface XenApiModule {
  createClient(options: XenApiClientOptions): XenApiClient;
}

interface NativeLoader {
  _load(request: string, parent: unknown): unknown;
}

let loaded: { xenApi: XenApiModule; promiseToolbox: PromiseToolbox } | undefined;

/**
 * Loads the ESM `xen-api` package through Node's own loader (Node ≥ 20.19 requires ESM natively).
 * Going through `Module._load` with resolved paths, rather than `require`, keeps working inside
 * Jest, whose module registry cannot evaluate ESM; the CancelToken class must come from the very
 * copy of promise-toolbox the client uses, hence resolved from the client's folder.
 */
export function loadXenApi(): { xenApi: XenApiModule; promiseToolbox: PromiseToolbox } {
  if (loaded !== undefined) return loaded;
  const loader = nodeModule as unknown as NativeLoader;
  const xenApiPath = require.resolve('xen-api');
  const toolboxPath = require.resolve('promise-toolbox', { paths: [dirname(xenApiPath)] });
  loaded = {
    xenApi: loader._load(xenApiPath, null) as XenApiModule,
    promiseToolbox: loader._load(toolboxPath, null) as PromiseToolbox,
  };
  return loaded;
}
