/**
 * Haven's view of XAPI failures: one base class with a stable `code` that callers switch on, the
 * XAPI code and parameters kept for logs, and a message naming the pool and the object involved.
 */
export type XapiErrorCode =
  | 'AUTH_FAILED'
  | 'UNREACHABLE'
  | 'NOT_FOUND'
  | 'SR_FULL'
  | 'VDI_IN_USE'
  | 'BAD_POWER_STATE'
  | 'OPERATION_NOT_ALLOWED'
  | 'TRANSFER_FAILED'
  | 'CANCELLED'
  | 'CBT_UNAVAILABLE'
  | 'MARKER_HELD'
  | 'UNKNOWN';

export interface XapiErrorContext {
  /** The pool URL (credentials never included). */
  poolUrl: string;
  /** What was being done, e.g. `VM.snapshot` or `export of VDI OpaqueRef:…`. */
  operation: string;
  /** The object concerned, e.g. `VM "web-1" (uuid …)`. */
  object?: string;
  /** XAPI's own error code (`VDI_IN_USE`, `SESSION_AUTHENTICATION_FAILED`…) when there is one. */
  xapiCode?: string;
  xapiParams?: readonly string[];
  /** How far a transfer got before it failed, e.g. `after 3145728 bytes received`. */
  progress?: string;
  cause?: unknown;
}

export class XapiError extends Error {
  readonly code: XapiErrorCode;
  readonly poolUrl: string;
  readonly operation: string;
  readonly object: string | undefined;
  readonly xapiCode: string | undefined;
  readonly xapiParams: readonly string[];
  readonly progress: string | undefined;

  constructor(code: XapiErrorCode, message: string, context: XapiErrorContext) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = new.target.name;
    this.code = code;
    this.poolUrl = context.poolUrl;
    this.operation = context.operation;
    this.object = context.object;
    this.xapiCode = context.xapiCode;
    this.xapiParams = context.xapiParams ?? [];
    this.progress = context.progress;
  }

  /** A retry cannot help: the credentials, another owner's marker or a full SR will still be there. */
  get permanent(): boolean {
    return PERMANENT_CODES.has(this.code);
  }
}

const PERMANENT_CODES = new Set<XapiErrorCode>(['AUTH_FAILED', 'MARKER_HELD', 'SR_FULL']);

export class XapiAuthError extends XapiError {}
export class XapiUnreachableError extends XapiError {}
export class XapiNotFoundError extends XapiError {}
export class XapiSrFullError extends XapiError {}
export class XapiVdiInUseError extends XapiError {}
export class XapiBadPowerStateError extends XapiError {}
export class XapiOperationNotAllowedError extends XapiError {}
export class XapiTransferError extends XapiError {}
export class XapiCancelledError extends XapiError {}
/** No change tracking between these VDIs (never enabled, disabled since, or a new lineage): back up in full. */
export class XapiCbtUnavailableError extends XapiError {}

export class XapiMarkerHeldError extends XapiError {
  readonly holder: string;
  readonly until: Date;
  constructor(message: string, context: XapiErrorContext & { holder: string; until: Date }) {
    super('MARKER_HELD', message, context);
    this.holder = context.holder;
    this.until = context.until;
  }
}

/** Network failures that mean "the pool did not answer", as Node, undici and promise-toolbox name them. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_HEADERS_TIMEOUT',
]);

interface ErrorShape {
  code?: unknown;
  params?: unknown;
  message?: unknown;
  name?: unknown;
  cause?: unknown;
}

function shapeOf(error: unknown): ErrorShape {
  return typeof error === 'object' && error !== null ? error : {};
}

function networkCode(error: unknown): string | undefined {
  // fetch-style errors carry the socket error in `cause`
  for (let current = error, depth = 0; current !== undefined && depth < 4; depth++) {
    const shape = shapeOf(current);
    if (typeof shape.code === 'string' && UNREACHABLE_CODES.has(shape.code)) return shape.code;
    if (shape.name === 'TimeoutError') return 'ETIMEDOUT';
    current = shape.cause;
  }
  return undefined;
}

/** XAPI error codes meaning the object does not exist (any more). */
const NOT_FOUND_CODES = new Set(['HANDLE_INVALID', 'UUID_INVALID', 'SR_NOT_FOUND', 'VDI_MISSING']);

function classify(xapiCode: string): XapiErrorCode {
  if (xapiCode === 'SESSION_AUTHENTICATION_FAILED') return 'AUTH_FAILED';
  if (NOT_FOUND_CODES.has(xapiCode)) return 'NOT_FOUND';
  if (xapiCode === 'SR_FULL') return 'SR_FULL';
  if (xapiCode === 'VDI_IN_USE') return 'VDI_IN_USE';
  if (xapiCode === 'VM_BAD_POWER_STATE') return 'BAD_POWER_STATE';
  if (
    xapiCode === 'OPERATION_NOT_ALLOWED' ||
    xapiCode === 'OPERATION_BLOCKED' ||
    xapiCode === 'SR_OPERATION_NOT_SUPPORTED' ||
    xapiCode === 'VM_IS_TEMPLATE'
  )
    return 'OPERATION_NOT_ALLOWED';
  if (xapiCode === 'VDI_IO_ERROR') return 'TRANSFER_FAILED';
  if (xapiCode === 'TASK_CANCELLED') return 'CANCELLED';
  if (xapiCode === 'VDI_NO_CBT_METADATA' || xapiCode === 'VDI_CBT_ENABLED') return 'CBT_UNAVAILABLE';
  return 'UNKNOWN';
}

const ADVICE: Record<XapiErrorCode, string> = {
  AUTH_FAILED: 'check the pool user name and password',
  UNREACHABLE: 'check that the pool master is up and reachable from this machine (address, port, firewall)',
  NOT_FOUND: 'the object was removed or never existed; refresh the inventory',
  SR_FULL: 'free space on the SR or choose another SR',
  VDI_IN_USE: 'wait for the operation holding the disk to end, or detach it',
  BAD_POWER_STATE: 'change the VM power state first',
  OPERATION_NOT_ALLOWED: 'the pool refuses this operation now; check blocked operations and current tasks',
  TRANSFER_FAILED: 'the transfer was interrupted; retry the task',
  CANCELLED: 'the operation was cancelled',
  CBT_UNAVAILABLE: 'changed block tracking cannot compare these disks; take a full backup',
  MARKER_HELD: 'wait for the other run to finish',
  UNKNOWN: 'see the XAPI error code',
};

function classFor(
  code: XapiErrorCode,
): new (code: XapiErrorCode, message: string, context: XapiErrorContext) => XapiError {
  switch (code) {
    case 'AUTH_FAILED':
      return XapiAuthError;
    case 'UNREACHABLE':
      return XapiUnreachableError;
    case 'NOT_FOUND':
      return XapiNotFoundError;
    case 'SR_FULL':
      return XapiSrFullError;
    case 'VDI_IN_USE':
      return XapiVdiInUseError;
    case 'BAD_POWER_STATE':
      return XapiBadPowerStateError;
    case 'OPERATION_NOT_ALLOWED':
      return XapiOperationNotAllowedError;
    case 'TRANSFER_FAILED':
      return XapiTransferError;
    case 'CANCELLED':
      return XapiCancelledError;
    case 'CBT_UNAVAILABLE':
      return XapiCbtUnavailableError;
    case 'MARKER_HELD':
    case 'UNKNOWN':
      return XapiError;
  }
}

/** Builds an error of the class matching `code`, with the standard message layout. */
export function xapiError(code: XapiErrorCode, context: XapiErrorContext, detail?: string): XapiError {
  const on = context.object === undefined ? '' : ` on ${context.object}`;
  const xapi =
    context.xapiCode === undefined
      ? ''
      : ` (XAPI ${context.xapiCode}${context.xapiParams !== undefined && context.xapiParams.length > 0 ? ` ${context.xapiParams.join(', ')}` : ''})`;
  const what = detail === undefined ? '' : `: ${detail}`;
  const progress = context.progress === undefined ? '' : ` ${context.progress}`;
  const message = `${context.operation}${on} failed at pool ${context.poolUrl}${progress}${what}${xapi}; ${ADVICE[code]}`;
  const Class = classFor(code);
  return new Class(code, message, context);
}

/**
 * Turns whatever the `xen-api` client threw (XAPI errors, socket errors, timeouts, cancellations;
 * possibly from another realm, so checked by shape) into a typed XapiError.
 */
export function toXapiError(
  error: unknown,
  context: Omit<XapiErrorContext, 'cause' | 'xapiCode' | 'xapiParams'>,
): XapiError {
  if (error instanceof XapiError) return error;
  const shape = shapeOf(error);
  const full: XapiErrorContext = { ...context, cause: error };
  const network = networkCode(error);
  if (network !== undefined) {
    return xapiError('UNREACHABLE', { ...full, xapiCode: undefined }, `no answer (${network})`);
  }
  if (shape.name === 'Cancel' || shape.name === 'AbortError') {
    return xapiError('CANCELLED', full, 'aborted by the caller');
  }
  if (typeof shape.code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(shape.code) && Array.isArray(shape.params)) {
    const params = (shape.params as unknown[]).map((param) => String(param));
    return xapiError(classify(shape.code), { ...full, xapiCode: shape.code, xapiParams: params });
  }
  const message = typeof shape.message === 'string' ? shape.message : String(error);
  // A transfer's connection closed before its end (Node's name for it): interrupted, retryable.
  if (shape.code === 'ERR_STREAM_PREMATURE_CLOSE') return xapiError('TRANSFER_FAILED', full, message);
  return xapiError('UNKNOWN', full, message);
}
