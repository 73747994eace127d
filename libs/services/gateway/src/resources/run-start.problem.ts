import { HttpStatus } from '@nestjs/common';
import { BusNoRespondersError, BusRemoteError, BusTimeoutError } from '@haven/bus';
import { ProblemException } from '@haven/service-core';

/**
 * Why the scheduler did not start a run asked of it over the bus (a restore, a deletion, a
 * maintenance run), as the HTTP status an operator can act on: 503 with no scheduler, 504 when it
 * did not answer, 404 for the refusal codes in `notFoundCodes` (what the run was about is gone),
 * 409 for any other refusal. Anything else is returned as it is.
 */
export function runStartProblem(
  error: unknown,
  what: { run: string; notFoundCodes: readonly string[] },
): unknown {
  if (error instanceof BusNoRespondersError)
    return new ProblemException(
      HttpStatus.SERVICE_UNAVAILABLE,
      'No scheduler',
      `No scheduler service is running to start the ${what.run}`,
    );
  if (error instanceof BusTimeoutError)
    return new ProblemException(
      HttpStatus.GATEWAY_TIMEOUT,
      'Scheduler timeout',
      `The scheduler did not answer in time for the ${what.run}`,
    );
  if (error instanceof BusRemoteError)
    return new ProblemException(
      what.notFoundCodes.includes(error.remoteCode) ? HttpStatus.NOT_FOUND : HttpStatus.CONFLICT,
      `${what.run.charAt(0).toUpperCase()}${what.run.slice(1)} not started`,
      error.remoteMessage,
    );
  return error;
}
