import { randomUUID } from 'node:crypto';
import { Inject, Injectable, type NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { type HavenMetrics, runWithLogContext } from '@haven/observability';
import { HAVEN_METRICS } from './core.tokens';

/** Gives each request an id (echoed as X-Request-Id, present in every log line) and records metrics. */
@Injectable()
export class RequestContextMiddleware implements NestMiddleware {
  constructor(@Inject(HAVEN_METRICS) private readonly metrics: HavenMetrics) {}

  use(request: Request, response: Response, next: NextFunction): void {
    const incoming = request.headers['x-request-id'];
    const requestId =
      typeof incoming === 'string' && /^[\w-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    response.setHeader('x-request-id', requestId);
    const stop = this.metrics.httpDuration.startTimer();
    response.on('finish', () => {
      const route = (request.route as { path?: string } | undefined)?.path ?? 'unmatched';
      stop({ method: request.method, route });
      this.metrics.httpRequests.inc({ method: request.method, route, status: String(response.statusCode) });
    });
    runWithLogContext({ requestId }, next);
  }
}
