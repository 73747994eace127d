import { BusDecodeError, BusPayloadTooLargeError } from './bus.errors';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON on the wire, in both drivers: the in-process driver encodes too, so a DTO that would not
 * survive NATS (a Date, a Map, a 2 MiB buffer) fails the same way in the all-in-one mode.
 */
export class JsonCodec {
  constructor(readonly limitBytes: number) {}

  encode(subject: string, value: unknown): Uint8Array {
    // undefined (a void request) travels as null.
    const text = JSON.stringify(value) as string | undefined;
    const bytes = encoder.encode(text ?? 'null');
    if (bytes.byteLength > this.limitBytes) {
      throw new BusPayloadTooLargeError(subject, bytes.byteLength, this.limitBytes);
    }
    return bytes;
  }

  decode(subject: string, bytes: Uint8Array): unknown {
    if (bytes.byteLength === 0) return undefined;
    try {
      return JSON.parse(decoder.decode(bytes)) as unknown;
    } catch (error) {
      throw new BusDecodeError(subject, error instanceof Error ? error.message : String(error));
    }
  }
}
