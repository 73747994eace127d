import { intArg, stringArg, type MethodTable } from '../rpc/method.table';
import type { XapiValue } from '../rpc/xapi-value';
import type { SimulatedPool } from '../model/simulated-pool';
import { findXapiClass } from '../model/xapi-class';
import { XapiFailure } from '../xapi.failure';
import { genericMethodNames } from './generic.methods';

/** XAPI caps the `event.from` wait; clients pass 60.1 s. */
const MAX_EVENT_WAIT_MS = 5 * 60 * 1000;

/**
 * The toolstack's own surface: sessions, introspection, events and tasks. `closing` aborts every
 * pending `event.from` so that the server can stop without waiting a minute.
 */
export function registerToolstackMethods(
  table: MethodTable,
  pool: SimulatedPool,
  closing: AbortSignal,
): void {
  table.register('session.login_with_password', {
    arity: [2, 4],
    sessionless: true,
    handler: (_, args) => pool.login(stringArg(args, 0, 'uname'), stringArg(args, 1, 'pwd')),
  });
  table.register('session.logout', {
    arity: 0,
    handler: (context) => {
      pool.logout(context.session);
      return '';
    },
  });
  table.register('session.get_this_host', {
    arity: 1,
    handler: () => pool.masterHost,
  });
  table.register('system.listMethods', {
    arity: 0,
    sessionless: true,
    handler: () => [...new Set([...table.names(), ...genericMethodNames(pool)])].sort(),
  });

  table.register('event.inject', {
    arity: 2,
    handler: (_, args) => {
      const cls = findXapiClass(stringArg(args, 0, 'class'));
      const ref = stringArg(args, 1, 'ref');
      if (cls === undefined) throw new XapiFailure('HANDLE_INVALID', [stringArg(args, 0, 'class'), ref]);
      return pool.store.touch(cls, ref);
    },
  });
  table.register('event.from', {
    arity: 3,
    handler: async (_, args) => {
      const classes = args[0];
      if (!Array.isArray(classes)) throw new XapiFailure('FIELD_TYPE_ERROR', ['classes']);
      const names = classes.filter((item): item is string => typeof item === 'string');
      const token = stringArg(args, 1, 'token');
      const timeout = Number(args[2]);
      const deadline =
        Date.now() + Math.min(Number.isFinite(timeout) ? timeout * 1000 : 0, MAX_EVENT_WAIT_MS);
      // Long poll: answer as soon as something in the requested classes changed, or at the deadline.
      for (;;) {
        const batch = pool.store.eventsSince(token, names);
        const left = deadline - Date.now();
        if (batch.events.length > 0 || left <= 0 || closing.aborted) {
          return batch as unknown as XapiValue;
        }
        await pool.store.waitForChange(left, closing);
      }
    },
  });
  table.register('event.get_current_id', { arity: 0, handler: () => pool.store.currentToken });

  table.register('task.create', {
    arity: 2,
    handler: (_, args) => pool.tasks.create(stringArg(args, 0, 'label'), stringArg(args, 1, 'description')),
  });
  table.register('task.destroy', {
    arity: 1,
    handler: (_, args) => {
      pool.tasks.destroy(stringArg(args, 0, 'self'));
      return '';
    },
  });
  table.register('task.cancel', {
    arity: 1,
    handler: (_, args) => {
      pool.tasks.cancel(stringArg(args, 0, 'task'));
      return '';
    },
  });
  table.register('task.set_progress', {
    arity: 2,
    handler: (_, args) => {
      const ref = stringArg(args, 0, 'self');
      pool.store.get('task', ref);
      pool.tasks.progress(ref, Number(args[1]));
      return '';
    },
  });
  table.register('task.set_status', {
    arity: 2,
    handler: (_, args) => {
      const ref = stringArg(args, 0, 'self');
      const status = stringArg(args, 1, 'value');
      pool.store.get('task', ref);
      if (status === 'success') pool.tasks.succeed(ref, '');
      else if (status === 'failure')
        pool.tasks.fail(ref, new XapiFailure('INTERNAL_ERROR', ['task failed by its client']));
      else if (status === 'cancelled') pool.tasks.fail(ref, new XapiFailure('TASK_CANCELLED', [ref]));
      return '';
    },
  });
  table.register('message.create', {
    arity: 5,
    handler: (_, args) =>
      pool.store.create('message', {
        name: stringArg(args, 0, 'name'),
        priority: intArg(args, 1, 'priority'),
        cls: stringArg(args, 2, 'cls'),
        obj_uuid: stringArg(args, 3, 'obj_uuid'),
        timestamp: new Date()
          .toISOString()
          .replace(/\.\d{3}Z$/, 'Z')
          .replace(/-/g, ''),
        body: stringArg(args, 4, 'body'),
      }),
  });
}
