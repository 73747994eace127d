import { RestError } from '@azure/storage-blob';
import { expectObjectStoreParallelism } from '@haven/remote-sdk/testing';
import { AzureDriver } from './azure.driver';

describe('Azure error classification', () => {
  const driver = new AzureDriver({
    accountName: 'devstoreaccount1',
    accountKey: Buffer.from('k').toString('base64'),
    endpoint: 'http://127.0.0.1:1/devstoreaccount1',
    container: 'c',
  });

  it.each([
    ['AuthenticationFailed', 403, 'AUTH_FAILED'],
    ['AuthorizationPermissionMismatch', 403, 'PERMISSION_DENIED'],
    ['BlobNotFound', 404, 'NOT_FOUND'],
    ['ContainerNotFound', 404, 'INVALID_ARGUMENT'],
    ['ServerBusy', 503, 'TRANSIENT'],
    ['InternalError', 500, 'TRANSIENT'],
    ['REQUEST_SEND_ERROR', undefined, 'TRANSIENT'],
  ])('maps %s (HTTP %s) to %s', (code, status, expected) => {
    expect(driver.classifyError(new RestError('failure', { code, statusCode: status }))?.code).toBe(expected);
  });

  it('reads "failed to authenticate" as a credentials problem', () => {
    const error = new RestError('Server failed to authenticate the request.', {
      code: 'AuthorizationFailure',
      statusCode: 403,
    });
    expect(driver.classifyError(error)?.code).toBe('AUTH_FAILED');
    expect(
      driver.classifyError(
        new RestError('This request is not authorized', { code: 'AuthorizationFailure', statusCode: 403 }),
      )?.code,
    ).toBe('PERMISSION_DENIED');
  });
});

describe('Azure requests in flight', () => {
  it('asks for object-store parallelism: existence checks as HEADs, whole-object writes as upload parts', async () => {
    const driver = new AzureDriver({
      ...{
        accountName: 'devstoreaccount1',
        accountKey: Buffer.from('k').toString('base64'),
        endpoint: 'http://127.0.0.1:1/devstoreaccount1',
        container: 'c',
      },
      uploadConcurrency: 6,
    });
    await expectObjectStoreParallelism(driver, 6);
  });
});
