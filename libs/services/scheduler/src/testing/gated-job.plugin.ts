import { type JobPlugin, PlanUnavailableError } from '@haven/plugin-sdk';

/**
 * A job type for execution tests: one task per listed VM, each of which runs until the test opens
 * its gate, so a test sees exactly which tasks execute at once without relying on timings. Loaded
 * as a plugin by path (HAVEN_PLUGINS); Jest's module registry makes `gates` the test's own object.
 */
export const gates = {
  running: new Set<string>(),
  started: [] as string[],
  maxRunning: 0,
  opened: new Set<string>(),
  waiting: new Map<string, () => void>(),
  /** Plans made per job id, failed ones included. */
  plans: new Map<string, number>(),
  reset(): void {
    this.plans.clear();
    this.running.clear();
    this.started.length = 0;
    this.maxRunning = 0;
    this.opened.clear();
    this.waiting.clear();
  },
  open(vm: string): void {
    this.opened.add(vm);
    this.waiting.get(vm)?.();
  },
};

export const plugin: JobPlugin = {
  manifestVersion: 1,
  kind: 'job',
  type: 'test.gated',
  version: '1.0.0',
  description: 'Test job: each task waits for the test to open its gate',
  taskTypes: ['test.gated.vm'],
  configSchema: {
    type: 'object',
    properties: {
      parallel: { type: 'integer', minimum: 1 },
      chatter: { type: 'integer', minimum: 0, description: 'extra info lines each task logs' },
      lock: { type: 'boolean', description: 'tasks hold the catalog lock `vm:<name>`' },
      silentPlans: {
        type: 'integer',
        minimum: 0,
        description: 'the first plans of the job fail as when its pool does not answer',
      },
      retries: { type: 'integer', minimum: 0, description: 'extra planning attempts' },
      refusedPlan: {
        type: 'string',
        description: "every plan fails with this reason, the job's own configuration (no pool involved)",
      },
      failedAtPlan: {
        type: 'array',
        items: { type: 'string' },
        description: 'VMs the planner says cannot run (a pool that did not answer)',
      },
    },
    additionalProperties: false,
  },
  taskConcurrency: (settings) =>
    typeof settings['parallel'] === 'number' ? settings['parallel'] : undefined,
  planRetries: (settings) => (typeof settings['retries'] === 'number' ? settings['retries'] : undefined),
  plan({ job }) {
    const plans = (gates.plans.get(job.id) ?? 0) + 1;
    gates.plans.set(job.id, plans);
    const refused = job.settings['refusedPlan'];
    if (typeof refused === 'string') return Promise.reject(new Error(refused));
    if (plans <= Number(job.settings['silentPlans'] ?? 0))
      return Promise.reject(new PlanUnavailableError(`pool "gated-pool" did not answer (plan ${plans})`));
    const vms = Array.isArray(job.selection['vms']) ? (job.selection['vms'] as string[]) : [];
    const failed = (job.settings['failedAtPlan'] as string[] | undefined) ?? [];
    const lock = job.settings['lock'] === true;
    return Promise.resolve(
      vms.map((vm) => ({
        type: 'test.gated.vm',
        subject: vm,
        input: { vm },
        ...(lock ? { lockKey: `vm:${vm}` } : {}),
        ...(failed.includes(vm)
          ? { failure: { message: `pool "gated-pool" of ${vm} did not answer`, transient: false } }
          : {}),
      })),
    );
  },
  executors: {
    async 'test.gated.vm'(task, context) {
      const vm = String(task.input['vm']);
      gates.running.add(vm);
      gates.started.push(vm);
      gates.maxRunning = Math.max(gates.maxRunning, gates.running.size);
      context.log('info', `backing up ${vm}`, { vm, mode: 'full', reason: 'no-base-snapshot' });
      const chatter = Number(task.job.settings['chatter'] ?? 0);
      for (let i = 0; i < chatter; i++) context.log('info', `chatter ${i}`);
      try {
        if (!gates.opened.has(vm))
          await new Promise<void>((resolve, reject) => {
            gates.waiting.set(vm, resolve);
            context.signal.addEventListener('abort', () => reject(new Error(`${vm} aborted`)), {
              once: true,
            });
          });
      } finally {
        gates.running.delete(vm);
      }
      context.log('warn', `${vm} has a disk bigger than its SR's free space`, { vm });
      return { vm };
    },
  },
};
