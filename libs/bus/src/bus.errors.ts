/** Every bus failure: a stable `code`, the subject or queue concerned, and what to do. */
export abstract class BusError extends Error {
  abstract readonly code: string;
  constructor(
    message: string,
    /** Subject, queue or URL the failure is about. */
    readonly target: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class BusTimeoutError extends BusError {
  readonly code = 'BUS_TIMEOUT';
  constructor(
    subject: string,
    readonly timeoutMs: number,
  ) {
    super(
      `request on "${subject}" got no reply within ${timeoutMs} ms: the responder is overloaded or hung; retry, or raise timeoutMs if the call is legitimately slow`,
      subject,
    );
  }
}

export class BusNoRespondersError extends BusError {
  readonly code = 'BUS_NO_RESPONDERS';
  constructor(subject: string) {
    super(
      `request on "${subject}" found no responders: the service answering it is not running (or not connected to this bus); start it and retry`,
      subject,
    );
  }
}

export class BusPayloadTooLargeError extends BusError {
  readonly code = 'BUS_PAYLOAD_TOO_LARGE';
  constructor(
    subject: string,
    readonly sizeBytes: number,
    readonly limitBytes: number,
  ) {
    super(
      `payload for "${subject}" is ${sizeBytes} bytes, over the bus limit of ${limitBytes} bytes: the bus carries ids and small DTOs; send bulk data through a remote or a stream and put its reference on the bus`,
      subject,
    );
  }
}

/** A responder's handler failed; its error code and message are carried back to the requester. */
export class BusRemoteError extends BusError {
  readonly code = 'BUS_REMOTE_ERROR';
  constructor(
    subject: string,
    /** The handler error's own `code` (HANDLER_ERROR when it had none). */
    readonly remoteCode: string,
    readonly remoteMessage: string,
    readonly remoteName: string,
  ) {
    super(`responder of "${subject}" failed: ${remoteMessage} (${remoteCode})`, subject);
  }
}

export class BusClosedError extends BusError {
  readonly code = 'BUS_CLOSED';
  constructor(target: string, operation: string) {
    super(`cannot ${operation} "${target}": this bus is closed; create a new bus`, target);
  }
}

export class BusConnectionError extends BusError {
  readonly code = 'BUS_CONNECTION_FAILED';
  constructor(target: string, detail: string, cause?: unknown) {
    super(
      `bus connection to ${target} failed: ${detail}; check that NATS (with JetStream) runs there and NATS_URL is right`,
      target,
      { cause },
    );
  }
}

/** The server refused a stream/consumer set-up, or options are invalid. */
export class BusConfigurationError extends BusError {
  readonly code = 'BUS_CONFIGURATION_INVALID';
  constructor(target: string, detail: string, cause?: unknown) {
    super(`bus set-up of "${target}" failed: ${detail}`, target, { cause });
  }
}

/** A payload on the wire that is not the JSON the bus writes. */
export class BusDecodeError extends BusError {
  readonly code = 'BUS_PAYLOAD_UNDECODABLE';
  constructor(subject: string, detail: string) {
    super(
      `payload on "${subject}" is not valid JSON (${detail}); it was not written by a Haven bus`,
      subject,
    );
  }
}

/** The error shape carried in replies and dead letters. */
export interface CarriedError {
  code: string;
  message: string;
  name: string;
}

/** Reduces anything thrown by a handler to what can cross the bus. */
export function carriedError(error: unknown): CarriedError {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      code: typeof code === 'string' && code !== '' ? code : 'HANDLER_ERROR',
      message: error.message,
      name: error.name,
    };
  }
  return { code: 'HANDLER_ERROR', message: String(error), name: 'Error' };
}
