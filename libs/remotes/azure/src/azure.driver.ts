import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type * as AzureBlob from '@azure/storage-blob';
import type { BlockBlobClient, ContainerClient, RestError } from '@azure/storage-blob';
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

export type AzureCredentials =
  | { connectionString: string }
  | {
      accountName: string;
      accountKey: string;
      /** Blob service URL, e.g. https://ACCOUNT.blob.core.windows.net or http://127.0.0.1:10000/ACCOUNT */
      endpoint: string;
    };

export type AzureDriverOptions = AzureCredentials & {
  container: string;
  /** Folder inside the container; '' for its root. */
  prefix?: string;
  /** Block size for staged uploads, MiB. Default 8. */
  blockSizeMiB?: number;
  /** Blocks staged in parallel per object. Default 4. */
  uploadConcurrency?: number;
};

const MiB = 1024 * 1024;
const MAX_BLOCKS = 50_000;
/** Unknown-size streams: the block size doubles every this many blocks (up to MAX_GROWN_BLOCK_BYTES). */
const BLOCKS_PER_SIZE_STEP = 10_000;
const MAX_GROWN_BLOCK_BYTES = 256 * MiB;

const AUTH_CODES = new Set([
  'AuthenticationFailed',
  'InvalidAuthenticationInfo',
  'NoAuthenticationInformation',
]);
const PERMISSION_CODES = new Set([
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthorizationResourceTypeMismatch',
  'AuthorizationSourceIPMismatch',
  'AuthorizationProtocolMismatch',
  'InsufficientAccountPermissions',
  'AccountIsDisabled',
  'LeaseIdMissing',
  'BlobImmutableDueToPolicy',
]);
const TRANSIENT_CODES = new Set(['ServerBusy', 'OperationTimedOut', 'InternalError', 'REQUEST_SEND_ERROR']);

let loadedSdk: typeof AzureBlob | undefined;

/**
 * The Azure Storage SDK, loaded when the first Azure driver is made: a process that never opens an
 * Azure remote (most transfer workers) does not carry its ~20 MiB of code.
 */
function sdk(): typeof AzureBlob {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loadedSdk ??= require('@azure/storage-blob') as typeof AzureBlob;
  return loadedSdk;
}

/**
 * Azure Blob Storage (and Azurite): block blobs. Small bodies go up in one Put Blob; streams are
 * staged as blocks in parallel and made visible by one Put Block List, so a failed upload leaves
 * only uncommitted blocks, which are invisible and expire on their own. putIfAbsent is a Put Blob
 * with `If-None-Match: *`.
 */
export class AzureDriver implements RemoteDriver {
  readonly type = 'azure';
  readonly features: RemoteFeatures = {
    atomicPutIfAbsent: true,
    atomicRename: false,
    capacity: false,
    flatListing: true,
  };
  private readonly container: ContainerClient;
  private readonly root: string;
  private readonly blockBytes: number;
  private readonly concurrency: number;
  /** Whole-object puts of one stream kept in flight: the same as an upload's parts. */
  readonly writesInFlight: number;
  /** HEADs of an existence check kept in flight: each is a round trip (docs/benchmarks/remotes.md). */
  readonly statsInFlight = OBJECT_STORE_STATS_IN_FLIGHT;

  constructor(options: AzureDriverOptions) {
    // Retries are the Remote base class's (with jitter, on TRANSIENT only): not twice.
    const pipelineOptions = { retryOptions: { maxTries: 1 } };
    const service =
      'connectionString' in options
        ? sdk().BlobServiceClient.fromConnectionString(options.connectionString, pipelineOptions)
        : new (sdk().BlobServiceClient)(
            options.endpoint,
            new (sdk().StorageSharedKeyCredential)(options.accountName, options.accountKey),
            pipelineOptions,
          );
    this.container = service.getContainerClient(options.container);
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = prefix === '' ? '' : `${prefix}/`;
    this.blockBytes = Math.max(1, options.blockSizeMiB ?? 8) * MiB;
    this.concurrency = Math.max(1, options.uploadConcurrency ?? 4);
    this.writesInFlight = this.concurrency;
  }

  async put(key: string, body: Buffer | Readable, context: DriverContext & { size?: number }): Promise<void> {
    const blob = this.blob(key);
    if (Buffer.isBuffer(body) && body.length <= this.blockBytes) {
      await blob.upload(body, body.length, { abortSignal: context.signal });
      return;
    }
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    await this.putStaged(blob, source, Buffer.isBuffer(body) ? body.length : context.size, context.signal);
  }

  async putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    try {
      await this.blob(key).upload(body, body.length, {
        abortSignal: context.signal,
        conditions: { ifNoneMatch: '*' },
      });
      return true;
    } catch (error) {
      if (error instanceof sdk().RestError && (error.statusCode === 409 || error.statusCode === 412))
        return false;
      throw error;
    }
  }

  async get(
    key: string,
    context: DriverContext & { range?: { start: number; end: number } },
  ): Promise<Readable> {
    const range = context.range;
    try {
      const response = await this.blob(key).download(
        range?.start ?? 0,
        range === undefined ? undefined : range.end - range.start,
        {
          abortSignal: context.signal,
        },
      );
      const body = response.readableStreamBody;
      if (body === undefined) throw new DriverError('UNKNOWN', 'the server sent no body');
      return body instanceof Readable ? body : Readable.from(body as AsyncIterable<Buffer>);
    } catch (error) {
      // A range starting at or past the end: empty, as on every other remote type.
      if (range !== undefined && error instanceof sdk().RestError && error.statusCode === 416) {
        await this.stat(key, context);
        return Readable.from([]);
      }
      throw error;
    }
  }

  async stat(key: string, context: DriverContext): Promise<ObjectStat> {
    const properties = await this.blob(key).getProperties({ abortSignal: context.signal });
    return { key, size: properties.contentLength ?? 0, modifiedAt: properties.lastModified ?? new Date(0) };
  }

  async list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage> {
    const pages = this.container
      .listBlobsFlat({ prefix: this.root + prefix, abortSignal: context.signal })
      .byPage({ maxPageSize: context.limit, continuationToken: context.cursor });
    const step = await pages.next();
    if (step.done === true) return { objects: [] };
    const page = step.value;
    const objects: ObjectStat[] = page.segment.blobItems
      .filter((item) => item.name.startsWith(this.root))
      .map((item) => ({
        key: item.name.slice(this.root.length),
        size: item.properties.contentLength ?? 0,
        modifiedAt: item.properties.lastModified,
      }));
    const marker = page.continuationToken;
    return marker ? { objects, cursor: marker } : { objects };
  }

  async delete(key: string, context: DriverContext): Promise<void> {
    await this.blob(key).deleteIfExists({ abortSignal: context.signal, deleteSnapshots: 'include' });
  }

  async copy(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    const source = this.blob(fromKey);
    // Same account: the copy is authorised by this request's credentials and usually completes at once.
    const poller = await this.blob(toKey).beginCopyFromURL(source.url, {
      abortSignal: context.signal,
      intervalInMs: 200,
    });
    const result = await poller.pollUntilDone();
    if (result.copyStatus !== undefined && result.copyStatus !== 'success')
      throw new DriverError('TRANSIENT', `the server-side copy ended as "${result.copyStatus}"`);
  }

  capacity(): Promise<RemoteCapacity> {
    // Blob storage has no notion of free space.
    return Promise.resolve({});
  }

  classifyError(error: unknown): ErrorClassification | undefined {
    if (!(error instanceof sdk().RestError)) return classifyNetworkFailure(error);
    const status = error.statusCode;
    const code = error.code ?? restErrorCode(error);
    const what = `${code ?? 'error'}${status === undefined ? '' : ` (HTTP ${status})`}`;
    if (code === 'ContainerNotFound')
      return {
        code: 'INVALID_ARGUMENT',
        reason: 'the container does not exist; create it or fix the setting',
      };
    if (code === 'BlobNotFound' || status === 404)
      return { code: 'NOT_FOUND', reason: `no such object (${what})` };
    // Azurite (and some Azure paths) answer a bad signature with AuthorizationFailure, worded
    // "Server failed to authenticate the request": that is a credentials problem, not a permission.
    if (
      (code !== undefined && AUTH_CODES.has(code)) ||
      (status === 403 && /failed to authenticate/i.test(error.message))
    )
      return { code: 'AUTH_FAILED', reason: `the server refused the credentials (${what})` };
    if (code !== undefined && PERMISSION_CODES.has(code))
      return { code: 'PERMISSION_DENIED', reason: `access denied (${what})` };
    if (
      (code !== undefined && TRANSIENT_CODES.has(code)) ||
      (status !== undefined && (status >= 500 || status === 429))
    )
      return { code: 'TRANSIENT', reason: `the server failed temporarily (${what})` };
    if (status === 403) return { code: 'PERMISSION_DENIED', reason: `access denied (${what})` };
    if (status === undefined) return classifyNetworkFailure(error) ?? { code: 'UNKNOWN', reason: what };
    return { code: 'UNKNOWN', reason: what };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private blob(key: string): BlockBlobClient {
    return this.container.getBlockBlobClient(this.root + key);
  }

  private blockSizeFor(index: number, totalSize: number | undefined): number {
    if (totalSize !== undefined) return Math.max(this.blockBytes, Math.ceil(totalSize / (MAX_BLOCKS - 1)));
    const step = Math.floor(index / BLOCKS_PER_SIZE_STEP);
    return Math.max(this.blockBytes, Math.min(MAX_GROWN_BLOCK_BYTES, this.blockBytes * 2 ** step));
  }

  /**
   * Stages blocks (`concurrency` in flight, memory bounded by concurrency + 1 blocks) and commits the
   * list: the blob changes only at the commit. A body that fits one block goes up as one Put Blob.
   */
  private async putStaged(
    blob: BlockBlobClient,
    source: Readable,
    size: number | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const reader = new BlockReader(source);
    const first = await reader.next(this.blockSizeFor(0, size));
    if (first.last) {
      await retryTransient(
        () => blob.upload(first.data, first.data.length, { abortSignal: signal }),
        (error) => this.classifyError(error)?.code === 'TRANSIENT',
        signal,
      );
      return;
    }
    // Block ids: same length within a blob, unique per upload so concurrent writers never mix.
    const upload = randomBytes(8).toString('hex');
    const blockId = (index: number): string =>
      Buffer.from(`${upload}-${String(index).padStart(6, '0')}`).toString('base64');
    const ids: string[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const stage = (index: number, data: Buffer): void => {
      const id = blockId(index);
      ids.push(id);
      // A block is a buffer: unlike the whole stream, it can be staged again after a dropped connection.
      const task = retryTransient(
        () => blob.stageBlock(id, data, data.length, { abortSignal: signal }),
        (error) => this.classifyError(error)?.code === 'TRANSIENT',
        signal,
      )
        .then(
          () => undefined,
          (error: unknown) => {
            failure ??= error;
          },
        )
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
    };
    try {
      let index = 0;
      let block = first;
      for (;;) {
        stage(index, block.data);
        if (block.last) break;
        while (inFlight.size >= this.concurrency && failure === undefined) await Promise.race(inFlight);
        if (failure !== undefined) break;
        index += 1;
        if (index >= MAX_BLOCKS)
          throw new DriverError(
            'INVALID_ARGUMENT',
            `the object needs more than ${MAX_BLOCKS} blocks; pass its size`,
          );
        block = await reader.next(this.blockSizeFor(index, size));
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure as Error;
      await blob.commitBlockList(ids, { abortSignal: signal });
    } catch (error) {
      // Staged blocks stay uncommitted: invisible, and dropped by the service after a week.
      reader.destroy();
      await Promise.allSettled(inFlight);
      throw error;
    }
  }
}

function restErrorCode(error: RestError): string | undefined {
  const details = error.details as { errorCode?: unknown } | undefined;
  return typeof details?.errorCode === 'string' ? details.errorCode : undefined;
}

function classifyNetworkFailure(error: unknown): ErrorClassification | undefined {
  const message = error instanceof Error ? error.message : '';
  const match =
    /\b(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|socket hang up)\b/.exec(
      message,
    );
  if (match === null) return undefined;
  return { code: 'TRANSIENT', reason: `the connection to the server failed (${match[1]})` };
}

/** Cuts a stream into blocks of the asked size, holding at most one block in memory. */
class BlockReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly iterator: AsyncIterator<unknown>;
  private done = false;

  constructor(private readonly source: Readable) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  async next(size: number): Promise<{ data: Buffer; last: boolean }> {
    while (!this.done && this.pendingBytes < size) await this.pull();
    const all = Buffer.concat(this.pending, this.pendingBytes);
    const data = all.subarray(0, Math.min(size, all.length));
    const rest = all.subarray(data.length);
    this.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
    this.pendingBytes = rest.length;
    // Look ahead, so the last block is known as such (no empty block after an exact multiple).
    if (!this.done && this.pendingBytes === 0) await this.pull();
    return { data, last: this.done && this.pendingBytes === 0 };
  }

  destroy(): void {
    if (!this.source.destroyed) this.source.destroy();
  }

  private async pull(): Promise<void> {
    const step = await this.iterator.next();
    if (step.done === true) {
      this.done = true;
      return;
    }
    const chunk = step.value as Buffer;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
  }
}
