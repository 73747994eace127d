// An out-of-tree Haven plugin: plain CommonJS, no build step, loaded from its path through
// HAVEN_PLUGINS=./examples/plugins/example-job. It registers the job type `example.echo`: one task
// per selected VM, which reports progress in steps and returns the message it was given. It shows
// the whole contract a job plugin fulfils (schema, plan, executors) and exercises the run pipeline.
'use strict';

const { setTimeout: sleep } = require('node:timers/promises');

/** @type {import('../../../libs/plugin-sdk/src').JobPlugin} */
const plugin = {
  manifestVersion: 1,
  kind: 'job',
  type: 'example.echo',
  version: '1.0.0',
  description: 'Example job type shipped outside the monorepo libraries',
  taskTypes: ['example.echo.vm'],
  configSchema: {
    type: 'object',
    properties: {
      message: { type: 'string', minLength: 1, maxLength: 200 },
      steps: { type: 'integer', minimum: 1, maximum: 100, default: 4 },
      stepMs: { type: 'integer', minimum: 0, maximum: 60000, default: 50 },
      failVm: { type: 'string', description: 'A VM whose task always fails (to show failures)' },
    },
    required: ['message'],
    additionalProperties: false,
  },

  async plan({ job }) {
    const vms = Array.isArray(job.selection.vms) ? job.selection.vms : [];
    return vms.map((vm) => ({ type: 'example.echo.vm', subject: String(vm), input: { vm: String(vm) } }));
  },

  executors: {
    async 'example.echo.vm'(task, context) {
      const { message, steps = 4, stepMs = 50, failVm } = task.job.settings;
      const total = steps * 1024 * 1024;
      for (let step = 1; step <= steps; step++) {
        if (context.signal.aborted) throw new Error(`echo of ${task.subject} aborted`);
        await sleep(stepMs);
        context.reportProgress({
          step: `step ${step}/${steps}`,
          bytesDone: step * 1024 * 1024,
          bytesTotal: total,
        });
      }
      if (task.input.vm === failVm) throw new Error(`echo refused VM ${task.subject} (failVm)`);
      return { echoed: message, vm: task.input.vm, attempt: task.attempt };
    },
  },
};

module.exports = { plugin };
