import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import { createBus, type Bus } from '@haven/bus';
import { RUN_LOGS, type RunLogLine } from '@haven/contracts';
import { RunLogWriter } from './run-log.writer';

/** Event delivery is asynchronous even in memory: wait for the lines to arrive. */
async function arrived(batches: RunLogLine[][], count: number): Promise<RunLogLine[]> {
  for (let i = 0; i < 200 && batches.flat().length < count; i++) await setImmediatePromise();
  return batches.flat();
}

describe('RunLogWriter', () => {
  let bus: Bus;
  let received: RunLogLine[][];

  beforeEach(async () => {
    bus = await createBus({ driver: 'memory', name: 'log-writer-test' });
    received = [];
    const subscription = bus.subscribe(RUN_LOGS, (batch) => {
      received.push(batch.lines);
    });
    await subscription.ready();
  });

  afterEach(() => bus.close());

  const target = { tenantId: 't', runId: 'r', taskId: 'k' };

  it('sends lines in order, in batches, all of them by close()', async () => {
    const writer = new RunLogWriter(bus, target);
    for (let i = 0; i < 250; i++) writer.line('info', `line ${i}`, { i });
    await writer.close();
    const lines = await arrived(received, 250);
    expect(lines.map((l) => l.message)).toEqual(Array.from({ length: 250 }, (_, i) => `line ${i}`));
    expect(received.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...received.map((b) => b.length))).toBeLessThanOrEqual(100);
    expect(lines[7]).toMatchObject({ taskId: 'k', level: 'info', fields: { i: 7 } });
  });

  it('keeps at most its limit of lines and then says how many it dropped', async () => {
    const writer = new RunLogWriter(bus, target, 10);
    for (let i = 0; i < 25; i++) writer.line('warn', `line ${i}`);
    await writer.close();
    const lines = await arrived(received, 11);
    expect(lines).toHaveLength(11);
    expect(lines[9]?.message).toBe('line 9');
    expect(lines[10]).toMatchObject({
      level: 'warn',
      message: '15 more log line(s) dropped: a task keeps at most 10',
      fields: { dropped: 15 },
    });
  });

  it('bounds a huge message and replaces huge or unserialisable fields by a note', async () => {
    const writer = new RunLogWriter(bus, target);
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    writer.line('error', 'x'.repeat(10_000), { blob: 'y'.repeat(10_000) });
    writer.line('error', 'cycle', circular);
    writer.line('error', 'failure', { error: new Error('disk full') });
    await writer.close();
    const [huge, cycle, failure] = await arrived(received, 3);
    expect(huge.message.length).toBe(2_001);
    expect(huge.fields).toEqual({ truncated: true, size: expect.any(Number) });
    expect(cycle.fields).toEqual({ unserializable: true });
    expect(failure.fields).toEqual({ error: { name: 'Error', message: 'disk full' } });
  });
});
