import { availableParallelism } from 'node:os';
import { ConfigError, defaultDiskStreams, loadConfig } from './haven.config';

describe('loadConfig: HAVEN_TASK_ACK_WAIT_MS', () => {
  it('defaults to 60 s and takes a value in milliseconds', () => {
    expect(loadConfig({}).taskAckWaitMs).toBe(60_000);
    expect(loadConfig({ HAVEN_TASK_ACK_WAIT_MS: '3000' }).taskAckWaitMs).toBe(3_000);
  });

  it.each(['999', '3600001', '2.5', 'soon'])('refuses %s, naming the variable', (value) => {
    let error: unknown;
    try {
      loadConfig({ HAVEN_TASK_ACK_WAIT_MS: value });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      {
        variable: 'HAVEN_TASK_ACK_WAIT_MS',
        message: `must be an integer from 1000 to 3600000 milliseconds (got "${value}")`,
      },
    ]);
  });
});

describe('loadConfig: HAVEN_XAPI_EVENT_DEBOUNCE_MS', () => {
  it("is absent by default (the xen-api client's own pause) and takes a value in milliseconds", () => {
    expect(loadConfig({}).xapiEventDebounceMs).toBeUndefined();
    expect(loadConfig({ HAVEN_XAPI_EVENT_DEBOUNCE_MS: '10' }).xapiEventDebounceMs).toBe(10);
    expect(loadConfig({ HAVEN_XAPI_EVENT_DEBOUNCE_MS: ' 60000 ' }).xapiEventDebounceMs).toBe(60_000);
  });

  it.each(['0', '-5', '60001', '12.5', 'fast'])('refuses %s, naming the variable', (value) => {
    let error: unknown;
    try {
      loadConfig({ HAVEN_XAPI_EVENT_DEBOUNCE_MS: value, HAVEN_TASK_ACK_WAIT_MS: '3000' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      {
        variable: 'HAVEN_XAPI_EVENT_DEBOUNCE_MS',
        message: `must be an integer from 1 to 60000 milliseconds (got "${value}")`,
      },
    ]);
    expect((error as Error).message).toContain('HAVEN_XAPI_EVENT_DEBOUNCE_MS');
  });
});

describe('loadConfig: HAVEN_WORKER_DISK_STREAMS', () => {
  it('defaults to one per CPU core, at least 2 and at most 8, and takes a count', () => {
    expect(loadConfig({}).workerDiskStreams).toBe(defaultDiskStreams(availableParallelism()));
    expect([1, 2, 4, 8, 64].map((cores) => defaultDiskStreams(cores))).toEqual([2, 2, 4, 8, 8]);
    expect(loadConfig({ HAVEN_WORKER_DISK_STREAMS: '1' }).workerDiskStreams).toBe(1);
    expect(loadConfig({ HAVEN_WORKER_DISK_STREAMS: '12' }).workerDiskStreams).toBe(12);
  });

  it.each(['0', '257', '1.5', 'many'])('refuses %s, naming the variable', (value) => {
    expect(() => loadConfig({ HAVEN_WORKER_DISK_STREAMS: value })).toThrow(
      `HAVEN_WORKER_DISK_STREAMS must be an integer from 1 to 256 (got "${value}")`,
    );
  });
});
