import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { PublicRoute } from '@haven/service-core';
import { ApiKeyGuard } from './auth/api-key.guard';
import { PluginsController } from './plugins.controller';
import { ApiKeysController } from './resources/api-keys.controller';
import { AuditTrail } from './resources/audit.trail';
import { JobsController } from './resources/jobs.controller';
import { PoolsController } from './resources/pools.controller';
import { RemoteMaintenanceController } from './resources/remote-maintenance.controller';
import { RemotesController } from './resources/remotes.controller';
import { RestorePointsController, RunsController, TasksController } from './resources/runs.controller';
import { RestorePointDeleteController } from './resources/restore-point-delete.controller';
import { RestorePointDisksController } from './resources/restore-point-disks.controller';
import { RestorePointRestoreController } from './resources/restore-point-restore.controller';
import { SchedulesController } from './resources/schedules.controller';
import { TenantsController } from './resources/tenants.controller';

/** Liveness endpoints stay reachable without a key (load balancers, Prometheus). */
@Controller()
class GatewayRootController {
  @Get()
  @PublicRoute()
  root() {
    return { name: 'Haven', api: '/api/v1', docs: '/api/docs', health: '/health', metrics: '/metrics' };
  }
}

/** The HTTP API: REST under /api/v1, OpenAPI at /api/docs, API-key auth and roles. */
@Module({
  controllers: [
    GatewayRootController,
    TenantsController,
    ApiKeysController,
    PoolsController,
    RemotesController,
    RemoteMaintenanceController,
    JobsController,
    SchedulesController,
    RunsController,
    TasksController,
    RestorePointsController,
    RestorePointDisksController,
    RestorePointRestoreController,
    RestorePointDeleteController,
    PluginsController,
  ],
  providers: [AuditTrail, { provide: APP_GUARD, useClass: ApiKeyGuard }],
})
export class GatewayModule {}

/** Mounts the OpenAPI document (JSON at /api/docs-json, UI at /api/docs). */
export function mountOpenApi(app: INestApplication): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Haven API')
      .setDescription(
        'Backup and replication for Xen / XCP-ng: pools, remotes, jobs, schedules, runs, restore points',
      )
      .setVersion('1')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'A Haven API key' })
      .build(),
    // The API's resources; /health and /metrics (HavenCoreModule, every process) stay out.
    { include: [GatewayModule] },
  );
  SwaggerModule.setup('api/docs', app, document, { jsonDocumentUrl: 'api/docs-json' });
}
