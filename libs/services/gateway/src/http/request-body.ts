import { badRequest } from '@haven/service-core';
import { type FieldError, type JsonSchemaObject, validateAgainstSchema } from '@haven/plugin-sdk';

/** Validates a request body against its schema; a 400 names every bad field. */
export function parseBody<T>(schema: JsonSchemaObject, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw badRequest([{ field: '', message: 'the body must be a JSON object' }]);
  const errors = validateAgainstSchema(schema, body);
  if (errors.length > 0) throw badRequest(errors);
  return body as T;
}

export function failIfAny(errors: FieldError[]): void {
  if (errors.length > 0) throw badRequest(errors);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}
