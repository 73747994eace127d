import { S3ServiceException } from '@aws-sdk/client-s3';
import { expectObjectStoreParallelism } from '@haven/remote-sdk/testing';
import { S3Driver } from './s3.driver';

function serviceError(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: name,
  });
}

describe('S3 error classification', () => {
  const driver = new S3Driver({ region: 'us-east-1', bucket: 'b', accessKeyId: 'k', secretAccessKey: 's' });
  afterAll(() => driver.close());

  it.each([
    ['InvalidAccessKeyId', 403, 'AUTH_FAILED'],
    ['SignatureDoesNotMatch', 403, 'AUTH_FAILED'],
    ['ExpiredToken', 400, 'AUTH_FAILED'],
    ['AccessDenied', 403, 'PERMISSION_DENIED'],
    ['Forbidden', 403, 'PERMISSION_DENIED'],
    ['NoSuchKey', 404, 'NOT_FOUND'],
    ['NotFound', 404, 'NOT_FOUND'],
    ['NoSuchBucket', 404, 'INVALID_ARGUMENT'],
    ['SlowDown', 503, 'TRANSIENT'],
    ['InternalError', 500, 'TRANSIENT'],
    ['SomethingNew', 502, 'TRANSIENT'],
    ['TooManyRequests', 429, 'TRANSIENT'],
    ['XMinioStorageFull', 507, 'NO_SPACE'],
    ['QuotaExceeded', 403, 'NO_SPACE'],
  ])('maps %s (HTTP %d) to %s', (name, status, code) => {
    expect(driver.classifyError(serviceError(name, status))?.code).toBe(code);
  });

  it('explains the 5 GiB server-side copy limit', () => {
    const error = new S3ServiceException({
      name: 'InvalidRequest',
      $fault: 'client',
      $metadata: { httpStatusCode: 400 },
      message:
        'The specified copy source is larger than the maximum allowable size for a copy source: 5368709120',
    });
    expect(driver.classifyError(error)).toMatchObject({
      code: 'INVALID_ARGUMENT',
      reason: expect.stringContaining('5 GiB'),
    });
  });

  it('maps connection failures, also when the SDK wrapped them into a plain message', () => {
    expect(
      driver.classifyError(new Error('AWS SDK error wrapper for Error: connect ECONNREFUSED 127.0.0.1:9'))
        ?.code,
    ).toBe('TRANSIENT');
    expect(
      driver.classifyError(new Error('AWS SDK error wrapper for TimeoutError: socket hang up'))?.code,
    ).toBe('TRANSIENT');
    expect(driver.classifyError(new Error('something else'))).toBeUndefined();
  });
});

describe('S3 requests in flight', () => {
  it('asks for object-store parallelism: existence checks as HEADs, whole-object writes as upload parts', async () => {
    const driver = new S3Driver({
      ...{ region: 'us-east-1', bucket: 'b', accessKeyId: 'k', secretAccessKey: 's' },
      uploadConcurrency: 6,
    });
    await expectObjectStoreParallelism(driver, 6);
  });
});
