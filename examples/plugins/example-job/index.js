// An out-of-tree Haven plugin: plain CommonJS, no build step, loaded from its path through
// HAVEN_PLUGINS=./examples/plugins/example-job. It registers a job type with a settings schema.
'use strict';

module.exports = {
  plugin: {
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
        repeat: { type: 'integer', minimum: 1, maximum: 10, default: 1 },
      },
      required: ['message'],
      additionalProperties: false,
    },
  },
};
