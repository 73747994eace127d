/**
 * A XAPI failure as the real toolstack reports it: a stable code and its positional parameters
 * (`HANDLE_INVALID [class, ref]`). JSON-RPC sends it as `{message: code, data: params}`, XML-RPC as
 * `ErrorDescription: [code, ...params]`, and a failed task stores it in `error_info`.
 */
export class XapiFailure extends Error {
  readonly code: string;
  readonly params: readonly string[];

  constructor(code: string, params: readonly (string | number)[] = []) {
    super(`${code}(${params.join(', ')})`);
    this.name = 'XapiFailure';
    this.code = code;
    this.params = params.map(String);
  }

  get errorDescription(): string[] {
    return [this.code, ...this.params];
  }

  static handleInvalid(cls: string, ref: string): XapiFailure {
    return new XapiFailure('HANDLE_INVALID', [cls, ref]);
  }
}

/** Any error thrown while serving a call, shaped as a XAPI failure (internal errors included). */
export function toXapiFailure(error: unknown): XapiFailure {
  if (error instanceof XapiFailure) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new XapiFailure('INTERNAL_ERROR', [message]);
}

/** Misuse of the simulator itself (bad option, bad workload request), not a XAPI answer. */
export class SimulatorError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'SimulatorError';
    this.code = code;
  }
}
