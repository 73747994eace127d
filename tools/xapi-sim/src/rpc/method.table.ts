import { XapiFailure } from '../xapi.failure';
import type { XapiValue } from './xapi-value';

/** What a method implementation sees: the caller's session and, for `Async.*` calls, its task. */
export interface CallContext {
  session: string;
  /** Set when the call runs as `Async.<method>`: the task to report progress on, and its cancellation. */
  task?: { ref: string; signal: AbortSignal; progress(value: number): void };
}

export type MethodHandler = (context: CallContext, args: XapiValue[]) => XapiValue | Promise<XapiValue>;

export interface MethodSpec {
  /** Parameters after the session id; `[min, max]` for methods with optional trailing parameters. */
  arity: number | readonly [number, number];
  handler: MethodHandler;
  /** May be called as `Async.<method>` (long-running operations). */
  async?: boolean;
  /** Called without a session (login, listMethods). */
  sessionless?: boolean;
}

/** The RPC surface of the simulator: method name -> implementation, as `system.listMethods` lists it. */
export class MethodTable {
  private readonly methods = new Map<string, MethodSpec>();
  /** Resolves names not registered explicitly (generic getters/setters, `<class>.get_<field>`). */
  fallback: (method: string) => MethodSpec | undefined = () => undefined;

  register(name: string, spec: MethodSpec): void {
    this.methods.set(name, spec);
  }

  lookup(name: string): MethodSpec | undefined {
    return this.methods.get(name) ?? this.fallback(name);
  }

  names(): string[] {
    const names: string[] = [];
    for (const [name, spec] of this.methods) {
      names.push(name);
      if (spec.async === true) names.push(`Async.${name}`);
    }
    return names.sort();
  }
}

/** XAPI counts the session in `expected` (`MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received]`). */
export function checkArity(method: string, spec: MethodSpec, received: number): void {
  const offset = spec.sessionless === true ? 0 : 1;
  const [min, max] = typeof spec.arity === 'number' ? [spec.arity, spec.arity] : spec.arity;
  if (received < min + offset || received > max + offset) {
    throw new XapiFailure('MESSAGE_PARAMETER_COUNT_MISMATCH', [method, min + offset, received]);
  }
}

export function stringArg(args: readonly XapiValue[], index: number, name: string): string {
  const value = args[index];
  if (typeof value !== 'string') {
    throw new XapiFailure('FIELD_TYPE_ERROR', [name]);
  }
  return value;
}

/** XML-RPC clients send int64 as strings; JSON-RPC as numbers. */
export function intArg(args: readonly XapiValue[], index: number, name: string): number {
  const value = args[index];
  const number = typeof value === 'string' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isSafeInteger(number))
    throw new XapiFailure('FIELD_TYPE_ERROR', [name]);
  return number;
}

export function boolArg(args: readonly XapiValue[], index: number, name: string): boolean {
  const value = args[index];
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new XapiFailure('FIELD_TYPE_ERROR', [name]);
}
