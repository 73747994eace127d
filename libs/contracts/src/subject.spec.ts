import {
  defineEvent,
  defineRequest,
  defineWorkQueue,
  retryDelayAfter,
  SubjectDefinitionError,
  DEFAULT_MAX_DELIVER,
} from './subject';

describe('subject definitions', () => {
  it('defines a versioned request subject', () => {
    const ping = defineRequest<{ at: string }, { pong: true }>('haven.v1.catalog.ping');
    expect(ping).toEqual({ kind: 'request', name: 'haven.v1.catalog.ping' });
    expect(Object.isFrozen(ping)).toBe(true);
  });

  it('defines an event subject', () => {
    expect(defineEvent<{ runId: string }>('haven.v1.runs.progress')).toEqual({
      kind: 'event',
      name: 'haven.v1.runs.progress',
    });
  });

  it('refuses a subject without a version token, naming the fix', () => {
    expect(() => defineRequest('haven.catalog.ping')).toThrow(SubjectDefinitionError);
    expect(() => defineRequest('haven.catalog.ping')).toThrow(/no version token.*haven\.v1/);
  });

  it('refuses wildcards, empty tokens and spaces', () => {
    for (const name of ['haven.v1.*', 'haven.v1.>', 'haven..v1', 'haven.v1.a b', '']) {
      expect(() => defineEvent(name)).toThrow(SubjectDefinitionError);
    }
  });

  it('defines a work queue with defaults and derived subjects', () => {
    const queue = defineWorkQueue<{ taskId: string }>('backup-tasks');
    expect(queue).toMatchObject({
      kind: 'work',
      name: 'backup-tasks',
      subject: 'haven.work.backup-tasks',
      deadLetterSubject: 'haven.dlq.backup-tasks',
      maxDeliver: DEFAULT_MAX_DELIVER,
    });
  });

  it('takes delivery options and validates them', () => {
    const queue = defineWorkQueue('prune', { maxDeliver: 2, ackWaitMs: 500, retryDelaysMs: [10, 20] });
    expect(queue.maxDeliver).toBe(2);
    expect(queue.ackWaitMs).toBe(500);
    expect(() => defineWorkQueue('prune', { maxDeliver: 0 })).toThrow(/maxDeliver must be an integer >= 1/);
    expect(() => defineWorkQueue('prune', { retryDelaysMs: [] })).toThrow(/at least one delay/);
    expect(() => defineWorkQueue('backup.tasks')).toThrow(/not stream-safe/);
  });

  it('picks the retry delay for an attempt, repeating the last one', () => {
    const queue = defineWorkQueue('mirror', { retryDelaysMs: [100, 200, 400] });
    expect([1, 2, 3, 4, 9].map((attempt) => retryDelayAfter(queue, attempt))).toEqual([
      100, 200, 400, 400, 400,
    ]);
  });
});
