import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  HttpStatus,
  Inject,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import type { JsonLogger } from '@haven/observability';
import type { FieldError } from '@haven/plugin-sdk';
import { HAVEN_LOGGER } from './core.tokens';

/** An HTTP error carrying RFC 9457 problem details; `errors` lists each bad field of a 400. */
export class ProblemException extends HttpException {
  constructor(
    status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors?: FieldError[],
  ) {
    super(detail, status);
  }
}

export function badRequest(errors: FieldError[]): ProblemException {
  return new ProblemException(
    HttpStatus.BAD_REQUEST,
    'Invalid request',
    errors.map((e) => (e.field ? `${e.field} ${e.message}` : e.message)).join('; '),
    errors,
  );
}

export function notFound(what: string, id: string): ProblemException {
  return new ProblemException(HttpStatus.NOT_FOUND, 'Not found', `${what} ${id} does not exist`);
}

export function conflict(detail: string): ProblemException {
  return new ProblemException(HttpStatus.CONFLICT, 'Conflict', detail);
}

/** Every error leaves as `application/problem+json`; unexpected ones are logged, not leaked. */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  constructor(@Inject(HAVEN_LOGGER) private readonly logger: JsonLogger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const response = http.getResponse<Response>();
    const request = http.getRequest<Request>();
    let body: Record<string, unknown>;
    if (exception instanceof ProblemException) {
      body = { status: exception.getStatus(), title: exception.title, detail: exception.detail };
      if (exception.errors) body['errors'] = exception.errors;
    } else if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const payload = exception.getResponse();
      const detail =
        typeof payload === 'string'
          ? payload
          : ((payload as { message?: unknown }).message ?? exception.message);
      body = {
        status,
        title: HttpStatus[status] ?? 'Error',
        detail: Array.isArray(detail)
          ? detail.join('; ')
          : typeof detail === 'string'
            ? detail
            : JSON.stringify(detail),
      };
      if (
        status === 400 &&
        request.headers['content-type']?.includes('json') &&
        exception.message.includes('JSON')
      )
        body['errors'] = [{ field: '', message: 'body is not valid JSON' }];
    } else {
      this.logger.error(exception instanceof Error ? exception : String(exception), 'ProblemFilter');
      body = {
        status: 500,
        title: 'Internal error',
        detail: 'An unexpected error occurred; see the server log',
      };
    }
    if (response.headersSent) {
      response.end();
      return;
    }
    response
      .status(body['status'] as number)
      .type('application/problem+json')
      .send(JSON.stringify({ type: 'about:blank', ...body, instance: request.originalUrl }));
  }
}
