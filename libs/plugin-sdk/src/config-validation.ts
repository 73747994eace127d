import Ajv, { type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import type { JsonSchemaObject } from './plugin.manifest';

/** One problem with one field, as shown to an operator (and in a 400 response). */
export interface FieldError {
  /** Dotted path of the field (`settings.retention.keep`), or '' for the object itself. */
  field: string;
  message: string;
}

const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, coerceTypes: false });
addFormats(ajv);
const compiled = new WeakMap<object, ReturnType<Ajv['compile']>>();

function toFieldError(error: ErrorObject, prefix: string): FieldError {
  const path = error.instancePath.split('/').filter(Boolean);
  if (error.keyword === 'required') path.push((error.params as { missingProperty: string }).missingProperty);
  if (error.keyword === 'additionalProperties') {
    path.push((error.params as { additionalProperty: string }).additionalProperty);
    return { field: [prefix, ...path].filter(Boolean).join('.'), message: 'is not a known setting' };
  }
  const message = error.keyword === 'required' ? 'is required' : (error.message ?? 'is invalid');
  return { field: [prefix, ...path].filter(Boolean).join('.'), message };
}

/**
 * Validates `value` against `schema`, filling in schema defaults. Returns every bad field at once
 * (an operator fixes a form in one pass, not one error at a time).
 */
export function validateAgainstSchema(
  schema: JsonSchemaObject,
  value: unknown,
  fieldPrefix = '',
): FieldError[] {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => toFieldError(error, fieldPrefix));
}

/** Throws a schema-compilation problem early, when a plugin is registered. */
export function assertSchemaCompiles(schema: JsonSchemaObject): void {
  if (!compiled.has(schema)) compiled.set(schema, ajv.compile(schema));
}
