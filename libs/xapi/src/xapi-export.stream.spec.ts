import { Readable } from 'node:stream';
import { XapiExportStream } from './xapi-export.stream';
import { toXapiError, type XapiError } from './xapi.error';

const KiB = 1024;
const context = { poolUrl: 'http://pool', operation: 'raw export', object: 'VDI OpaqueRef:1' };

function deferred(): {
  promise: Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
} {
  let resolve!: (value: unknown) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<unknown>((ok, ko) => {
    resolve = ok;
    reject = ko;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** An HTTP body stand-in: `count` chunks of 64 KiB, counting how many were pulled. */
function body(count: number): { stream: Readable; pulled: () => number } {
  let pulled = 0;
  const stream = Readable.from(
    (function* () {
      for (let index = 0; index < count; index++) {
        pulled++;
        yield Buffer.alloc(64 * KiB, index);
      }
    })(),
  );
  return { stream, pulled: () => pulled };
}

function exportOf(
  source: Readable,
  task: Promise<unknown>,
  cancelled: { count: number },
  signal?: AbortSignal,
): XapiExportStream {
  return new XapiExportStream({
    body: source,
    task,
    cancelTask: () => {
      cancelled.count++;
      return Promise.resolve();
    },
    toError: (cause, progress): XapiError =>
      toXapiError(cause, progress === undefined ? context : { ...context, progress }),
    settleTimeoutMs: 60_000,
    signal,
  });
}

async function ticks(count: number): Promise<void> {
  for (let index = 0; index < count; index++) await new Promise((resolve) => setImmediate(resolve));
}

describe('XapiExportStream', () => {
  it('ends only once the task succeeded, with every byte', async () => {
    const task = deferred();
    const cancelled = { count: 0 };
    const stream = exportOf(body(8).stream, task.promise, cancelled);
    let bytes = 0;
    let ended = false;
    stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
    stream.on('end', () => (ended = true));
    await ticks(20);
    expect(bytes).toBe(8 * 64 * KiB);
    expect(ended).toBe(false); // all bytes in, but XAPI has not said the task succeeded
    task.resolve('');
    await new Promise((resolve) => stream.once('end', resolve));
    expect(await stream.taskOutcome).toBe('success');
    expect(cancelled.count).toBe(0);
  });

  it('fails when the task fails after the body ended normally', async () => {
    const task = deferred();
    const stream = exportOf(body(2).stream, task.promise, { count: 0 });
    const reading = (async () => {
      for await (const _chunk of stream) continue;
    })();
    task.reject(
      Object.assign(new Error('VDI_IO_ERROR(disk read failed)'), {
        code: 'VDI_IO_ERROR',
        params: ['disk read failed'],
      }),
    );
    await expect(reading).rejects.toMatchObject({ code: 'TRANSFER_FAILED', xapiCode: 'VDI_IO_ERROR' });
    expect(await stream.taskOutcome).toBe('failure');
  });

  it('pulls from the body only as the reader consumes (bounded read-ahead)', async () => {
    const source = body(400); // 25 MiB
    const task = deferred();
    const cancelled = { count: 0 };
    const stream = exportOf(source.stream, task.promise, cancelled);
    stream.pause();
    stream.read(0); // start the flow without consuming
    await ticks(50);
    // 1 MiB read-ahead (16 chunks) plus at most the body's own 16-chunk buffer, out of 400
    expect(source.pulled()).toBeLessThanOrEqual(33);
    stream.destroy();
    await ticks(2);
    expect(cancelled.count).toBe(1);
    expect(source.stream.destroyed).toBe(true);
  });

  it('fails, never ends short, when the body closes before its end (connection reset)', async () => {
    const source = new Readable({ read: () => undefined });
    const stream = exportOf(source, deferred().promise, { count: 0 });
    const reading = (async () => {
      let bytes = 0;
      for await (const chunk of stream) bytes += (chunk as Buffer).length;
      return bytes;
    })();
    source.push(Buffer.alloc(64 * KiB));
    await ticks(5);
    source.destroy();
    await expect(reading).rejects.toMatchObject({ code: 'TRANSFER_FAILED' });
  });

  it('names the disk and the bytes received when the connection drops mid-body', async () => {
    const source = new Readable({ read: () => undefined });
    const stream = exportOf(source, deferred().promise, { count: 0 });
    const failure = new Promise<XapiError>((resolve) => stream.once('error', resolve));
    stream.resume();
    source.push(Buffer.alloc(64 * KiB));
    source.push(Buffer.alloc(16 * KiB));
    await ticks(5);
    source.destroy(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
    const error = await failure;
    expect(error.message).toContain(
      'raw export on VDI OpaqueRef:1 failed at pool http://pool after 81920 bytes received',
    );
    expect(error).toMatchObject({ code: 'UNREACHABLE', progress: 'after 81920 bytes received' });
  });

  it('names the bytes received beside the task failure XAPI reports', async () => {
    const source = new Readable({ read: () => undefined });
    const task = deferred();
    const stream = exportOf(source, task.promise, { count: 0 });
    const failure = new Promise<XapiError>((resolve) => stream.once('error', resolve));
    stream.resume();
    source.push(Buffer.alloc(64 * KiB));
    await ticks(5);
    task.reject(Object.assign(new Error('VDI_IO_ERROR'), { code: 'VDI_IO_ERROR', params: ['cut'] }));
    source.destroy();
    const error = await failure;
    expect(error).toMatchObject({ code: 'TRANSFER_FAILED', xapiCode: 'VDI_IO_ERROR' });
    expect(error.message).toMatch(/after 65536 bytes received.*\(XAPI VDI_IO_ERROR cut\)/);
  });

  it('cancels the task and closes the body when its signal aborts', async () => {
    const controller = new AbortController();
    const cancelled = { count: 0 };
    const source = body(400);
    const stream = exportOf(source.stream, deferred().promise, cancelled, controller.signal);
    const reading = (async () => {
      let chunks = 0;
      for await (const _chunk of stream) if (++chunks === 3) controller.abort();
    })();
    await expect(reading).rejects.toBeInstanceOf(Error);
    expect(cancelled.count).toBe(1);
    expect(source.stream.destroyed).toBe(true);
    expect(source.pulled()).toBeLessThan(400);
  });
});
