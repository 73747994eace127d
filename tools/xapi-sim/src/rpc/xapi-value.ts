/** A value as XAPI's RPC layers carry it (JSON-RPC maps it 1:1; XML-RPC needs the hints below). */
export type XapiValue = string | number | boolean | null | XapiValue[] | XapiStruct;
export interface XapiStruct {
  [key: string]: XapiValue;
}

/**
 * XAPI's XML-RPC sends int64 fields as strings and datetimes as `dateTime.iso8601`; JSON-RPC sends
 * numbers and `YYYYMMDDTHH:MM:SSZ` strings. Records keep the JSON-RPC form; these field names
 * tell the XML-RPC encoder which strings are datetimes and which numbers are floats.
 */
export const DATETIME_FIELDS: ReadonlySet<string> = new Set([
  'snapshot_time',
  'created',
  'finished',
  'timestamp',
  'last_updated',
  'start_time',
  'install_time',
  'last_booted_record_time',
]);
/** Maps whose values are int32 (`<i4>` in XML-RPC), unlike int64 fields sent as strings. */
export const INT32_MAP_FIELDS: ReadonlySet<string> = new Set(['valid_ref_counts']);
export const FLOAT_FIELDS: ReadonlySet<string> = new Set(['progress', 'timeout', 'VCPUs_utilisation']);

/** `20261126T07:00:00Z`, the datetime form XAPI uses in JSON-RPC records. */
export function xapiDateTime(date: Date = new Date()): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/-/g, '');
}

export function isStruct(value: XapiValue | undefined): value is XapiStruct {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A field as text: strings as is, numbers and booleans printed, anything else ''. */
export function fieldText(record: XapiStruct | undefined, key: string): string {
  const value = record === undefined ? undefined : fieldValue(record, key);
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return '';
}

/** A field that may be absent (records are open maps). */
export function fieldValue(record: XapiStruct, key: string): XapiValue | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** A set-of-refs field (`VBDs`, `snapshots`): its string items. */
export function fieldRefs(record: XapiStruct | undefined, key: string): string[] {
  const value = record === undefined ? undefined : fieldValue(record, key);
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/** A copy of `record` without the named fields (computed fields a client may not set). */
export function withoutFields(record: XapiStruct, fields: readonly string[]): XapiStruct {
  return Object.fromEntries(Object.entries(record).filter(([key]) => !fields.includes(key)));
}
