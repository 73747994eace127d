/** The classes the simulator serves, spelled as XAPI spells them (`VM`, `SR`, but `pool`, `host`). */
export const XAPI_CLASSES = [
  'pool',
  'host',
  'SR',
  'PBD',
  'VM',
  'VBD',
  'VDI',
  'VIF',
  'network',
  'PIF',
  'task',
  'message',
] as const;
export type XapiClass = (typeof XAPI_CLASSES)[number];

const BY_LOWER_CASE = new Map<string, XapiClass>(XAPI_CLASSES.map((cls) => [cls.toLowerCase(), cls]));

/** XAPI matches class names case-insensitively (`vm`, `VM`); events carry them in lower case. */
export function findXapiClass(name: string): XapiClass | undefined {
  return BY_LOWER_CASE.get(name.toLowerCase());
}

export const NULL_REF = 'OpaqueRef:NULL';

/** Classes whose objects live only as long as the toolstack process (not persisted). */
export const VOLATILE_CLASSES: ReadonlySet<XapiClass> = new Set<XapiClass>(['task']);
