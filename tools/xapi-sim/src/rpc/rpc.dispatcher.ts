import { toXapiFailure, XapiFailure } from '../xapi.failure';
import type { SimulatedPool } from '../model/simulated-pool';
import { checkArity, type MethodTable } from './method.table';
import type { XapiValue } from './xapi-value';

export type RpcOutcome = { ok: true; value: XapiValue } | { ok: false; failure: XapiFailure };

/**
 * Runs one RPC call as XAPI does: unknown method, parameter count, session check, then the
 * method itself, or for `Async.<method>` a task returned at once and settled when the work ends.
 */
export class RpcDispatcher {
  constructor(
    private readonly table: MethodTable,
    private readonly pool: SimulatedPool,
  ) {}

  async call(method: string, params: readonly XapiValue[]): Promise<RpcOutcome> {
    try {
      return { ok: true, value: await this.run(method, params) };
    } catch (error) {
      return { ok: false, failure: toXapiFailure(error) };
    }
  }

  private async run(method: string, params: readonly XapiValue[]): Promise<XapiValue> {
    const isAsync = method.startsWith('Async.');
    const name = isAsync ? method.slice('Async.'.length) : method;
    const spec = this.table.lookup(name);
    if (spec === undefined || (isAsync && spec.async !== true)) {
      throw new XapiFailure('MESSAGE_METHOD_UNKNOWN', [method]);
    }
    checkArity(method, spec, params.length);
    if (spec.sessionless === true) return spec.handler({ session: '' }, [...params]);
    const session = this.pool.checkSession(params[0]);
    const args = params.slice(1);
    if (!isAsync) return spec.handler({ session }, args);
    return this.pool.tasks.run(`Async.${name}`, async (task) => spec.handler({ session, task }, args));
  }
}
