import { createHash, randomBytes } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import type * as AwsS3 from '@aws-sdk/client-s3';
import type { CompletedPart, ObjectLockMode, S3Client } from '@aws-sdk/client-s3';
import {
  DriverError,
  OBJECT_STORE_STATS_IN_FLIGHT,
  retryTransient,
  type DriverContext,
  type ErrorClassification,
  type ListPage,
  type ObjectStat,
  type RemoteCapacity,
  type RemoteDriver,
  type RemoteFeatures,
} from '@haven/remote-sdk';

let loadedSdk: typeof AwsS3 | undefined;

/**
 * The AWS SDK, loaded when the first S3 driver is made: a process that never opens an S3 remote
 * (most transfer workers) does not carry its ~20 MiB of code.
 */
function sdk(): typeof AwsS3 {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loadedSdk ??= require('@aws-sdk/client-s3') as typeof AwsS3;
  return loadedSdk;
}

export interface S3ObjectLockSettings {
  mode: 'GOVERNANCE' | 'COMPLIANCE';
  /** Every object written is locked for this many days. */
  days: number;
}

export interface S3DriverOptions {
  /** Omit for AWS; set for S3-compatible servers (MinIO, Ceph, s3rver, …). */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Folder inside the bucket; '' for the bucket root. */
  prefix?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Path-style URLs (endpoint/bucket/key) instead of bucket.endpoint/key; most non-AWS servers need it. */
  forcePathStyle?: boolean;
  objectLock?: S3ObjectLockSettings;
  /** Smallest multipart part, MiB (S3 minimum 5). Default 8. */
  partSizeMiB?: number;
  /** Parts uploaded in parallel per object. Default 4. */
  uploadConcurrency?: number;
}

const MiB = 1024 * 1024;
/** S3 refuses more parts than this in one upload. */
const MAX_PARTS = 10_000;
/** Unknown-size streams: the part size doubles every this many parts, up to MAX_GROWN_PART_BYTES. */
const PARTS_PER_SIZE_STEP = 2000;
const MAX_GROWN_PART_BYTES = 128 * MiB;

const AUTH_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AuthorizationHeaderMalformed',
  'InvalidSecurity',
  'CredentialsNotSupported',
]);
const PERMISSION_CODES = new Set([
  'AccessDenied',
  'AllAccessDisabled',
  'AccountProblem',
  'InvalidObjectState',
]);
const TRANSIENT_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'OperationAborted',
  'TimeoutError',
  'RequestTimeoutException',
]);
const NO_SPACE_CODES = new Set([
  'QuotaExceeded',
  'XMinioStorageFull',
  'StorageFull',
  'XMinioAdminBucketQuotaExceeded',
]);

/**
 * S3 and S3-compatible object storage. Small bodies go up in one PUT; streams and large bodies as
 * multipart uploads with parallel parts, aborted on the server when anything fails (so nothing is
 * ever visible half-written). putIfAbsent uses `If-None-Match: *` where the server honours it;
 * servers that ignore it are detected once and get a weaker, documented fallback.
 */
export class S3Driver implements RemoteDriver {
  readonly type = 's3';
  private readonly sdk = sdk();
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly root: string;
  private readonly partBytes: number;
  private readonly concurrency: number;
  /** Whole-object puts of one stream kept in flight: the same as an upload's parts. */
  readonly writesInFlight: number;
  /** HEADs of an existence check kept in flight: each is a round trip (docs/benchmarks/remotes.md). */
  readonly statsInFlight = OBJECT_STORE_STATS_IN_FLIGHT;
  private readonly objectLock: S3ObjectLockSettings | undefined;
  private conditionalWrites: boolean | undefined;
  private probing: Promise<boolean> | undefined;

  constructor(options: S3DriverOptions) {
    this.client = new this.sdk.S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      // Retries are the Remote base class's (with jitter, on TRANSIENT only): not twice.
      maxAttempts: 1,
      // CRC32 trailers by default would break many S3-compatible servers; MD5 where S3 requires it.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
    });
    this.bucket = options.bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = prefix === '' ? '' : `${prefix}/`;
    this.partBytes = Math.max(5, options.partSizeMiB ?? 8) * MiB;
    this.concurrency = Math.max(1, options.uploadConcurrency ?? 4);
    this.writesInFlight = this.concurrency;
    this.objectLock = options.objectLock;
  }

  get features(): RemoteFeatures {
    return {
      atomicPutIfAbsent: this.conditionalWrites !== false,
      atomicRename: false,
      capacity: false,
      flatListing: true,
    };
  }

  async put(key: string, body: Buffer | Readable, context: DriverContext & { size?: number }): Promise<void> {
    if (Buffer.isBuffer(body) && body.length <= this.partBytes) {
      await this.putSingle(key, body, context.signal);
      return;
    }
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    const size = Buffer.isBuffer(body) ? body.length : context.size;
    await this.putMultipart(key, source, size, context.signal);
  }

  async putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    if (await this.serverHonoursIfNoneMatch(context.signal)) {
      try {
        await this.putSingle(key, body, context.signal, true);
        return true;
      } catch (error) {
        if (isPreconditionFailed(error)) return false;
        throw error;
      }
    }
    // Not atomic: check, write, read back. Two creators racing can both believe they won; see docs.
    if (await this.objectExists(key, context.signal)) return false;
    await this.putSingle(key, body, context.signal);
    const stored = await this.readAll(key, context.signal);
    return stored.equals(body);
  }

  async get(
    key: string,
    context: DriverContext & { range?: { start: number; end: number } },
  ): Promise<Readable> {
    const range = context.range;
    try {
      const response = await this.client.send(
        new this.sdk.GetObjectCommand({
          Bucket: this.bucket,
          Key: this.root + key,
          Range: range === undefined ? undefined : `bytes=${range.start}-${range.end - 1}`,
        }),
        { abortSignal: context.signal },
      );
      if (!(response.Body instanceof Readable)) throw new DriverError('UNKNOWN', 'the server sent no body');
      if (range === undefined) return response.Body;
      // Some servers answer another range than asked (s3rver sends everything for "bytes=0-0"):
      // cut what was sent, which starts where Content-Range says (0 without one), to what was asked.
      const served = /^bytes (\d+)-(\d+)\//.exec(response.ContentRange ?? '');
      const servedStart = served === null ? 0 : Number(served[1]);
      const servedEnd = served === null ? Infinity : Number(served[2]) + 1;
      if (servedStart === range.start && servedEnd <= range.end) return response.Body;
      if (servedStart > range.start)
        throw new DriverError(
          'UNKNOWN',
          `the server sent ${response.ContentRange ?? ''} for ${range.start}-${range.end - 1}`,
        );
      return response.Body.pipe(sliceStream(range.start - servedStart, range.end - servedStart));
    } catch (error) {
      // A range starting at or past the end: empty, as on every other remote type.
      if (range !== undefined && errorCode(error) === 'InvalidRange') {
        await this.stat(key, context);
        return Readable.from([]);
      }
      throw error;
    }
  }

  async stat(key: string, context: DriverContext): Promise<ObjectStat> {
    const response = await this.client.send(
      new this.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.root + key }),
      {
        abortSignal: context.signal,
      },
    );
    return { key, size: response.ContentLength ?? 0, modifiedAt: response.LastModified ?? new Date(0) };
  }

  async list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage> {
    const response = await this.client.send(
      new this.sdk.ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: this.root + prefix,
        MaxKeys: context.limit,
        StartAfter: context.cursor === undefined ? undefined : this.root + context.cursor,
      }),
      { abortSignal: context.signal },
    );
    const objects: ObjectStat[] = (response.Contents ?? [])
      .filter((object) => object.Key !== undefined && object.Key.startsWith(this.root))
      .map((object) => ({
        key: (object.Key ?? '').slice(this.root.length),
        size: object.Size ?? 0,
        modifiedAt: object.LastModified ?? new Date(0),
      }));
    return response.IsTruncated === true && objects.length > 0
      ? { objects, cursor: objects[objects.length - 1]?.key }
      : { objects };
  }

  async delete(key: string, context: DriverContext): Promise<void> {
    // S3 answers 204 for a missing key too: idempotent by nature.
    await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.root + key }), {
      abortSignal: context.signal,
    });
  }

  async copy(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    const source = `${this.bucket}/${(this.root + fromKey).split('/').map(encodeURIComponent).join('/')}`;
    await this.client.send(
      new this.sdk.CopyObjectCommand({
        Bucket: this.bucket,
        Key: this.root + toKey,
        CopySource: source,
        ...this.lockHeaders(),
      }),
      { abortSignal: context.signal },
    );
  }

  capacity(): Promise<RemoteCapacity> {
    // S3 has no notion of free space.
    return Promise.resolve({});
  }

  classifyError(error: unknown): ErrorClassification | undefined {
    const code = errorCode(error);
    const status = error instanceof this.sdk.S3ServiceException ? error.$metadata.httpStatusCode : undefined;
    if (code === undefined) return classifyNetworkFailure(error);
    const what = status === undefined ? code : `${code} (HTTP ${status})`;
    if (code === 'NoSuchKey' || code === 'NotFound')
      return { code: 'NOT_FOUND', reason: `no such object (${what})` };
    if (code === 'NoSuchBucket')
      return {
        code: 'INVALID_ARGUMENT',
        reason: `bucket "${this.bucket}" does not exist; create it or fix the setting`,
      };
    if (code === 'InvalidRequest' && error instanceof Error && /copy source is larger/i.test(error.message))
      return {
        code: 'INVALID_ARGUMENT',
        reason: 'S3 cannot copy (or rename) objects over 5 GiB server-side; Haven does not split copies',
      };
    if (AUTH_CODES.has(code))
      return { code: 'AUTH_FAILED', reason: `the server refused the credentials (${what})` };
    if (PERMISSION_CODES.has(code)) return { code: 'PERMISSION_DENIED', reason: `access denied (${what})` };
    if (NO_SPACE_CODES.has(code))
      return { code: 'NO_SPACE', reason: `the storage is full or over quota (${what})` };
    if (TRANSIENT_CODES.has(code) || (status !== undefined && (status >= 500 || status === 429)))
      return { code: 'TRANSIENT', reason: `the server failed temporarily (${what})` };
    if (code === 'Forbidden' || status === 403)
      return { code: 'PERMISSION_DENIED', reason: `access denied (${what})` };
    if (status === 401)
      return { code: 'AUTH_FAILED', reason: `the server refused the credentials (${what})` };
    if (status === 404) return { code: 'NOT_FOUND', reason: `no such object (${what})` };
    if (error instanceof this.sdk.S3ServiceException) return { code: 'UNKNOWN', reason: what };
    return undefined;
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }

  private lockHeaders(): { ObjectLockMode?: ObjectLockMode; ObjectLockRetainUntilDate?: Date } {
    if (this.objectLock === undefined) return {};
    return {
      ObjectLockMode: this.objectLock.mode,
      ObjectLockRetainUntilDate: new Date(Date.now() + this.objectLock.days * 86_400_000),
    };
  }

  private async putSingle(
    key: string,
    body: Buffer,
    signal: AbortSignal,
    ifNoneMatch = false,
  ): Promise<void> {
    await this.client.send(
      new this.sdk.PutObjectCommand({
        Bucket: this.bucket,
        Key: this.root + key,
        Body: body,
        ContentLength: body.length,
        // Lets the server reject a body damaged in transit (and S3 requires it with Object Lock).
        ContentMD5: createHash('md5').update(body).digest('base64'),
        IfNoneMatch: ifNoneMatch ? '*' : undefined,
        ...this.lockHeaders(),
      }),
      { abortSignal: signal },
    );
  }

  private partSizeFor(partNumber: number, totalSize: number | undefined): number {
    if (totalSize !== undefined) return Math.max(this.partBytes, Math.ceil(totalSize / (MAX_PARTS - 1)));
    const step = Math.floor((partNumber - 1) / PARTS_PER_SIZE_STEP);
    return Math.max(this.partBytes, Math.min(MAX_GROWN_PART_BYTES, this.partBytes * 2 ** step));
  }

  /**
   * Multipart upload, `concurrency` parts in flight (memory: at most concurrency + 1 parts). The
   * object appears only at CompleteMultipartUpload; any failure aborts the upload on the server.
   * A body that fits in one part goes up as a single PUT instead.
   */
  private async putMultipart(
    key: string,
    source: Readable,
    size: number | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const reader = new PartReader(source);
    let partNumber = 1;
    const first = await reader.next(this.partSizeFor(1, size));
    if (first.last) {
      await retryTransient(
        () => this.putSingle(key, first.data, signal),
        (error) => this.classifyError(error)?.code === 'TRANSIENT',
        signal,
      );
      return;
    }
    const created = await this.client.send(
      new this.sdk.CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: this.root + key,
        ...this.lockHeaders(),
      }),
      { abortSignal: signal },
    );
    const uploadId = created.UploadId;
    if (uploadId === undefined)
      throw new DriverError('UNKNOWN', 'the server returned no multipart upload id');
    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const upload = (number: number, data: Buffer): void => {
      // A part is a buffer: unlike the whole stream, it can be sent again after a dropped connection.
      const task = retryTransient(
        () =>
          this.client.send(
            new this.sdk.UploadPartCommand({
              Bucket: this.bucket,
              Key: this.root + key,
              UploadId: uploadId,
              PartNumber: number,
              Body: data,
              ContentLength: data.length,
              ContentMD5: createHash('md5').update(data).digest('base64'),
            }),
            { abortSignal: signal },
          ),
        (error) => this.classifyError(error)?.code === 'TRANSIENT',
        signal,
      )
        .then(
          (response) => {
            parts.push({ PartNumber: number, ETag: response.ETag });
          },
          (error: unknown) => {
            failure ??= error;
          },
        )
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
    };
    try {
      let part = first;
      for (;;) {
        upload(partNumber, part.data);
        if (part.last) break;
        while (inFlight.size >= this.concurrency && failure === undefined) await Promise.race(inFlight);
        if (failure !== undefined) break;
        partNumber += 1;
        if (partNumber > MAX_PARTS)
          throw new DriverError(
            'INVALID_ARGUMENT',
            `the object needs more than ${MAX_PARTS} parts; pass its size`,
          );
        part = await reader.next(this.partSizeFor(partNumber, size));
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure as Error;
      parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      await this.client.send(
        new this.sdk.CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.root + key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
        { abortSignal: signal },
      );
    } catch (error) {
      reader.destroy();
      await Promise.allSettled(inFlight);
      // Best effort (the server may be the thing that failed); buckets should also carry a
      // lifecycle rule that aborts incomplete uploads, see docs/remotes.md.
      await this.client
        .send(
          new this.sdk.AbortMultipartUploadCommand({
            Bucket: this.bucket,
            Key: this.root + key,
            UploadId: uploadId,
          }),
        )
        .catch(() => undefined);
      throw error;
    }
  }

  /** Whether the server refuses `If-None-Match: *` on an existing key; asked once, remembered. */
  private serverHonoursIfNoneMatch(signal: AbortSignal): Promise<boolean> {
    if (this.conditionalWrites !== undefined) return Promise.resolve(this.conditionalWrites);
    this.probing ??= (async () => {
      const probe = `${this.root}.haven-tmp-conditional-write-probe-${randomBytes(6).toString('hex')}`;
      await this.client.send(
        new this.sdk.PutObjectCommand({ Bucket: this.bucket, Key: probe, Body: Buffer.from('1') }),
        {
          abortSignal: signal,
        },
      );
      try {
        await this.client.send(
          new this.sdk.PutObjectCommand({
            Bucket: this.bucket,
            Key: probe,
            Body: Buffer.from('2'),
            IfNoneMatch: '*',
          }),
          { abortSignal: signal },
        );
        this.conditionalWrites = false;
      } catch (error) {
        if (!isPreconditionFailed(error)) throw error;
        this.conditionalWrites = true;
      } finally {
        await this.client
          .send(new this.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: probe }))
          .catch(() => undefined);
      }
      return this.conditionalWrites;
    })().finally(() => {
      this.probing = undefined;
    });
    return this.probing;
  }

  private async objectExists(key: string, signal: AbortSignal): Promise<boolean> {
    try {
      await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.root + key }), {
        abortSignal: signal,
      });
      return true;
    } catch (error) {
      if (this.classifyError(error)?.code === 'NOT_FOUND') return false;
      throw error;
    }
  }

  private async readAll(key: string, signal: AbortSignal): Promise<Buffer> {
    const body = await this.get(key, { signal });
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
}

/** Passes through bytes [start, end) of what flows in. */
function sliceStream(start: number, end: number): Transform {
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const from = Math.max(start - offset, 0);
      const to = Math.min(end - offset, chunk.length);
      offset += chunk.length;
      callback(null, from < to ? chunk.subarray(from, to) : undefined);
    },
  });
}

/**
 * Connection failures, also when the SDK wrapped them into a plain Error ("AWS SDK error wrapper
 * for …", which happens when the original is not an Error of this realm) and the errno code is
 * only left in the message.
 */
function classifyNetworkFailure(error: unknown): ErrorClassification | undefined {
  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  const match =
    /\b(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|socket hang up|TimeoutError)\b/.exec(
      message,
    );
  if (match === null) return undefined;
  return { code: 'TRANSIENT', reason: `the connection to the server failed (${match[1]})` };
}

function errorCode(error: unknown): string | undefined {
  if (error instanceof sdk().S3ServiceException) return error.name;
  if (typeof error === 'object' && error !== null) {
    const name = (error as { name?: unknown }).name;
    const code = (error as { Code?: unknown }).Code;
    if (typeof code === 'string') return code;
    if (name === 'TimeoutError') return name;
  }
  return undefined;
}

function isPreconditionFailed(error: unknown): boolean {
  const code = errorCode(error);
  return (
    code === 'PreconditionFailed' ||
    code === 'ConditionalRequestConflict' ||
    (error instanceof sdk().S3ServiceException && error.$metadata.httpStatusCode === 412)
  );
}

/** Cuts a stream into parts of the asked size, holding at most one part in memory. */
class PartReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly iterator: AsyncIterator<unknown>;
  private done = false;

  constructor(private readonly source: Readable) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** The next `size` bytes (fewer at the end); `last` once the stream is exhausted. */
  async next(size: number): Promise<{ data: Buffer; last: boolean }> {
    while (!this.done && this.pendingBytes < size) {
      const step = await this.iterator.next();
      if (step.done === true) {
        this.done = true;
        break;
      }
      const chunk = step.value as Buffer;
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const all = Buffer.concat(this.pending, this.pendingBytes);
    const data = all.subarray(0, Math.min(size, all.length));
    const rest = all.subarray(data.length);
    this.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
    this.pendingBytes = rest.length;
    // At the end with nothing left over, this was the last part; an exact multiple needs one more
    // read to know, which next() would answer with an empty last part: look ahead instead.
    if (!this.done && this.pendingBytes === 0) {
      const step = await this.iterator.next();
      if (step.done === true) this.done = true;
      else {
        const chunk = step.value as Buffer;
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
      }
    }
    return { data, last: this.done && this.pendingBytes === 0 };
  }

  destroy(): void {
    if (!this.source.destroyed) this.source.destroy();
  }
}
