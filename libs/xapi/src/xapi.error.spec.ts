import {
  XapiAuthError,
  XapiBadPowerStateError,
  XapiCancelledError,
  XapiCbtUnavailableError,
  XapiError,
  XapiNotFoundError,
  XapiOperationNotAllowedError,
  XapiSrFullError,
  XapiTransferError,
  XapiUnreachableError,
  XapiVdiInUseError,
  toXapiError,
} from './xapi.error';
import { isPermanentFailure } from '@haven/plugin-sdk';

const context = { poolUrl: 'https://pool-a.example', operation: 'VM.snapshot', object: 'VM "web" (1234)' };

function xapiFailure(code: string, params: string[]): Error {
  return Object.assign(new Error(`${code}(${params.join(', ')})`), { code, params });
}

describe('toXapiError', () => {
  it.each([
    ['SESSION_AUTHENTICATION_FAILED', 'AUTH_FAILED', XapiAuthError],
    ['HANDLE_INVALID', 'NOT_FOUND', XapiNotFoundError],
    ['UUID_INVALID', 'NOT_FOUND', XapiNotFoundError],
    ['SR_FULL', 'SR_FULL', XapiSrFullError],
    ['VDI_IN_USE', 'VDI_IN_USE', XapiVdiInUseError],
    ['VM_BAD_POWER_STATE', 'BAD_POWER_STATE', XapiBadPowerStateError],
    ['OPERATION_NOT_ALLOWED', 'OPERATION_NOT_ALLOWED', XapiOperationNotAllowedError],
    ['OPERATION_BLOCKED', 'OPERATION_NOT_ALLOWED', XapiOperationNotAllowedError],
    ['VDI_IO_ERROR', 'TRANSFER_FAILED', XapiTransferError],
    ['TASK_CANCELLED', 'CANCELLED', XapiCancelledError],
    ['VDI_NO_CBT_METADATA', 'CBT_UNAVAILABLE', XapiCbtUnavailableError],
    ['SOMETHING_NEW', 'UNKNOWN', XapiError],
  ])('maps XAPI %s to %s', (xapiCode, code, Class) => {
    const error = toXapiError(xapiFailure(xapiCode, ['OpaqueRef:1', 'detail']), context);
    expect(error).toBeInstanceOf(Class);
    expect(error).toMatchObject({
      code,
      xapiCode,
      xapiParams: ['OpaqueRef:1', 'detail'],
      poolUrl: context.poolUrl,
    });
    expect(error.message).toContain('VM.snapshot on VM "web" (1234) failed at pool https://pool-a.example');
    expect(error.message).toContain(`XAPI ${xapiCode} OpaqueRef:1, detail`);
  });

  it('maps socket errors, also nested in a cause, and timeouts to UNREACHABLE', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(toXapiError(refused, context)).toBeInstanceOf(XapiUnreachableError);
    expect(toXapiError(new Error('fetch failed', { cause: refused }), context).code).toBe('UNREACHABLE');
    const timeout = Object.assign(new Error('operation timed out'), { name: 'TimeoutError' });
    expect(toXapiError(timeout, context).message).toContain('no answer (ETIMEDOUT)');
  });

  it('maps a transfer connection closed before its end to TRANSFER_FAILED (retried)', () => {
    const premature = Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    const error = toXapiError(premature, context);
    expect(error).toBeInstanceOf(XapiTransferError);
    expect(isPermanentFailure(error)).toBe(false);
  });

  it('maps cancellations and keeps an already typed error as is', () => {
    const cancel = Object.assign(new Error('task canceled'), { name: 'Cancel' });
    expect(toXapiError(cancel, context)).toBeInstanceOf(XapiCancelledError);
    const typed = toXapiError(xapiFailure('SR_FULL', []), context);
    expect(toXapiError(typed, { ...context, operation: 'other' })).toBe(typed);
  });

  it('keeps unknown failures with their message and the original as cause', () => {
    const original = new Error('unexpected 500');
    const error = toXapiError(original, context);
    expect(error.code).toBe('UNKNOWN');
    expect(error.message).toContain('unexpected 500');
    expect(error.cause).toBe(original);
  });
});

describe('permanent XAPI failures', () => {
  it('marks the failures a retry cannot fix, and only those', () => {
    const permanent = (xapiCode: string) =>
      isPermanentFailure(toXapiError(xapiFailure(xapiCode, []), context));
    expect(permanent('SESSION_AUTHENTICATION_FAILED')).toBe(true);
    expect(permanent('SR_FULL')).toBe(true);
    expect(permanent('VDI_IO_ERROR')).toBe(false);
    expect(permanent('HANDLE_INVALID')).toBe(false);
    expect(permanent('SOMETHING_NEW')).toBe(false);
  });
});
