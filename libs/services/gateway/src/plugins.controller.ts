import { Controller, Get, Inject } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { HAVEN_PLUGINS } from '@haven/service-core';
import type { PluginRegistry } from '@haven/plugin-sdk';

/** Installed remote and job types with their settings schemas, for forms and the CLI. */
@ApiTags('plugins')
@ApiBearerAuth()
@Controller('api/v1/plugins')
export class PluginsController {
  constructor(@Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry) {}

  @Get()
  list() {
    return {
      items: this.plugins.list().map((p) => ({
        ...p,
        configSchema: (p.kind === 'remote' ? this.plugins.remote(p.type) : this.plugins.job(p.type))
          .configSchema,
      })),
    };
  }
}
