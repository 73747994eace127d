import 'reflect-metadata';
import {
  type INestApplication,
  type MiddlewareConsumer,
  Module,
  type NestModule,
  type Type,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { type HavenConfig, loadConfig } from '@haven/config';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_LOGGER, type ProcessRole } from './core.tokens';
import { HavenCoreModule } from './haven-core.module';
import { execEnvironmentWarning } from './exec-environment';
import { ProblemFilter } from './problem.filter';
import { RequestContextMiddleware } from './request-context.middleware';

export interface HavenProcessOptions {
  roles: readonly ProcessRole[];
  /** The role modules this process runs (GatewayModule, TransferModule, …). */
  modules: Type[];
  config?: HavenConfig;
  /** Called after the app is created and before it listens (the gateway mounts OpenAPI here). */
  configure?: (app: INestApplication) => void | Promise<void>;
}

/**
 * Starts one Haven process: the shared core plus the given role modules, HTTP on HAVEN_PORT
 * (`/health`, `/metrics`, and the API where the gateway runs), graceful shutdown on SIGTERM/SIGINT.
 */
export async function startHavenProcess(options: HavenProcessOptions): Promise<INestApplication> {
  const config =
    options.config ??
    loadConfig(process.env, { role: options.roles.length === 1 ? options.roles[0] : 'haven' });

  @Module({ imports: [HavenCoreModule.forRoot(config, options.roles), ...options.modules] })
  class HavenProcessModule implements NestModule {
    configure(consumer: MiddlewareConsumer): void {
      consumer.apply(RequestContextMiddleware).forRoutes('*');
    }
  }

  const app = await NestFactory.create(HavenProcessModule, { bufferLogs: true, abortOnError: false });
  const logger = app.get<JsonLogger>(HAVEN_LOGGER);
  app.useLogger(logger);
  app.useGlobalFilters(new ProblemFilter(logger));
  await options.configure?.(app);
  await app.listen(config.port, config.host);
  logger.log(
    { msg: 'Haven process ready', roles: options.roles, port: config.port, url: await app.getUrl() },
    'Bootstrap',
  );
  const launcherWarning = execEnvironmentWarning(options.roles);
  if (launcherWarning !== undefined) logger.warn(launcherWarning, 'Bootstrap');
  return app;
}

/**
 * Graceful stop for a process entry point: on SIGTERM or SIGINT, finish or hand back in-flight work
 * (module destroy hooks, bus drain), close the catalog, then exit 0. A second signal exits at once.
 */
export function exitCleanlyOnSignals(app: INestApplication): INestApplication {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    app.get<JsonLogger>(HAVEN_LOGGER).log({ msg: 'stopping', signal }, 'Bootstrap');
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`Haven did not stop cleanly: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return app;
}
