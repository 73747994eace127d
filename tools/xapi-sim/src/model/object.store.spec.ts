import { ObjectStore } from './object.store';
import { XapiFailure } from '../xapi.failure';

describe('ObjectStore events', () => {
  it('replays additions, modifications and deletions after a token, in order, with ref counts', () => {
    const store = new ObjectStore();
    const vm = store.create('VM', { name_label: 'a' });
    const token = store.currentToken;
    const task = store.create('task', { status: 'pending' });
    store.setField('VM', vm, 'name_label', 'b');
    const gone = store.create('VM', { name_label: 'c' });
    store.destroy('VM', gone);
    const batch = store.eventsSince(token, ['vm', 'task']);
    expect(batch.events.map((event) => [event.class, event.operation, event.ref])).toEqual([
      ['task', 'add', task],
      ['vm', 'mod', vm],
      ['vm', 'del', gone],
    ]);
    expect(batch.events[1]?.snapshot?.['name_label']).toBe('b');
    expect(batch.valid_ref_counts).toEqual({ vm: 1, task: 1 });
    expect(store.eventsSince(batch.token, ['*']).events).toEqual([]);
  });

  it('filters by class and by single object', () => {
    const store = new ObjectStore();
    const token = store.currentToken;
    const a = store.create('VM', {});
    store.create('VDI', {});
    expect(store.eventsSince(token, ['VDI']).events.map((event) => event.class)).toEqual(['vdi']);
    expect(store.eventsSince(token, [`vm/${a}`]).events.map((event) => event.ref)).toEqual([a]);
  });

  it('answers EVENTS_LOST for a token from before a restart, and HANDLE_INVALID for unknown refs', () => {
    const store = new ObjectStore();
    store.create('VM', {});
    const old = store.currentToken;
    const restored = new ObjectStore();
    restored.restore(5, store.snapshotForPersistence().objects);
    expect(() => restored.eventsSince(old, ['*'])).toThrow(
      expect.objectContaining({ code: 'EVENTS_LOST' }) as Error,
    );
    expect(() => restored.get('VM', 'OpaqueRef:none')).toThrow(XapiFailure);
    expect(() => restored.get('VM', 'OpaqueRef:none')).toThrow('HANDLE_INVALID(VM, OpaqueRef:none)');
  });

  it('wakes a long poll on the next change', async () => {
    const store = new ObjectStore();
    const controller = new AbortController();
    const waiting = store.waitForChange(60_000, controller.signal);
    store.create('VM', {});
    await waiting;
    expect(store.eventsSince('0', ['vm']).events).toHaveLength(1);
  });
});
