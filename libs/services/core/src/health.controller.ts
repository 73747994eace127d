import { Controller, Get, HttpCode, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import type { HavenMetrics } from '@haven/observability';
import { PublicRoute } from './public-route.decorator';
import { HAVEN_BUS, HAVEN_METRICS, HAVEN_PROCESS, type HavenProcessInfo } from './core.tokens';

/**
 * `/health` (catalog database and bus reachable) and Prometheus `/metrics`, on every process. Not
 * in the OpenAPI document, which covers the gateway's module only: no swagger import here, so
 * processes without the gateway do not load @nestjs/swagger (8-13 MiB of RSS in a transfer worker at rest).
 */
@PublicRoute()
@Controller()
export class HealthController {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_METRICS) private readonly metrics: HavenMetrics,
    @Inject(HAVEN_PROCESS) private readonly info: HavenProcessInfo,
  ) {}

  @Get('health')
  async health(@Res({ passthrough: true }) response: Response): Promise<Record<string, unknown>> {
    const [db, bus] = await Promise.all([
      this.checkDatabase(),
      this.bus.health().catch((e: unknown) => ({ ok: false, detail: String(e) })),
    ]);
    const ok = db.ok && bus.ok;
    response.status(ok ? 200 : 503);
    return {
      status: ok ? 'ok' : 'unavailable',
      instance: this.info.instanceName,
      roles: this.info.roles,
      uptimeSeconds: Math.round((Date.now() - this.info.startedAt.getTime()) / 1000),
      checks: { database: db, bus },
    };
  }

  @Get('metrics')
  @HttpCode(200)
  async renderMetrics(@Res() response: Response): Promise<void> {
    response.setHeader('content-type', this.metrics.registry.contentType);
    response.send(await this.metrics.registry.metrics());
  }

  private async checkDatabase(): Promise<{ ok: boolean; detail: string }> {
    try {
      await this.dataSource.query('SELECT 1');
      return { ok: true, detail: 'reachable' };
    } catch (error) {
      return { ok: false, detail: error instanceof Error ? error.message : String(error) };
    }
  }
}
