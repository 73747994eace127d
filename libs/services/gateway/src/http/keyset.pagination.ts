import type { FieldError } from '@haven/plugin-sdk';
import type { ObjectLiteral, SelectQueryBuilder } from 'typeorm';

/** A page of a listing; `nextCursor` is absent on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

/**
 * Where a listing stands in its order, newest first: the row's times in the listing's order
 * (a run's creation; a restore point's snapshot, then its commit), then its id for rows that tie.
 */
export interface PagePosition {
  times: Date[];
  id: string;
}

export interface PageRequest {
  limit: number;
  after?: PagePosition;
}

export const MAX_PAGE = 500;

/**
 * Reads `limit` and the opaque `cursor` (the times + id of the last item seen, newest first);
 * `timeKeys` is how many times the listing orders by, so a cursor of another listing is refused.
 * Problems go into `errors`, so a 400 can name them together with the listing's other filters.
 */
export function readPageRequest(
  query: Record<string, unknown>,
  errors: FieldError[],
  defaultLimit = 50,
  timeKeys = 1,
): PageRequest {
  let limit = defaultLimit;
  if (query['limit'] !== undefined) {
    limit = Number(query['limit']);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE)
      errors.push({ field: 'limit', message: `must be an integer from 1 to ${MAX_PAGE}` });
  }
  let after: PageRequest['after'];
  if (query['cursor'] !== undefined) {
    after = decodeCursor(query['cursor'], timeKeys);
    if (after === undefined)
      errors.push({ field: 'cursor', message: 'is not a cursor returned by this API' });
  }
  return { limit, after };
}

function decodeCursor(cursor: unknown, timeKeys: number): PagePosition | undefined {
  if (typeof cursor !== 'string') return undefined;
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parts) || parts.length !== timeKeys + 1) return undefined;
  const id: unknown = parts[timeKeys];
  const times = parts
    .slice(0, timeKeys)
    .map((time: unknown) => new Date(typeof time === 'string' ? time : NaN));
  if (typeof id !== 'string' || times.some((time) => Number.isNaN(time.getTime()))) return undefined;
  return { times, id };
}

/**
 * Newest first by `columns` (times, newest first) and then `id`, after the request's cursor: one
 * row comparison, which the (tenant_id, …, <columns> DESC, id DESC) indexes serve.
 */
export function keyset<T extends ObjectLiteral>(
  qb: SelectQueryBuilder<T>,
  alias: string,
  columns: readonly string[],
  page: PageRequest,
): SelectQueryBuilder<T> {
  const after = page.after;
  if (after) {
    // (a, b, id) < (x, y, z): the row comparison Postgres orders exactly as the ORDER BY below.
    const keys = [...columns.map((column) => `${alias}.${column}`), `${alias}.id`];
    const values = [...columns.map((_, i) => `:afterTime${i}`), ':afterId'];
    qb.andWhere(`(${keys.join(', ')}) < (${values.join(', ')})`, {
      ...Object.fromEntries(after.times.map((time, i) => [`afterTime${i}`, time])),
      afterId: after.id,
    });
  }
  for (const [i, column] of columns.entries())
    if (i === 0) qb.orderBy(`${alias}.${column}`, 'DESC');
    else qb.addOrderBy(`${alias}.${column}`, 'DESC');
  return qb.addOrderBy(`${alias}.id`, 'DESC').limit(page.limit + 1);
}

export function pageOf<T>(rows: T[], request: PageRequest, position: (row: T) => PagePosition): Page<T> {
  if (rows.length <= request.limit) return { items: rows };
  const items = rows.slice(0, request.limit);
  const last = position(items[items.length - 1]);
  return {
    items,
    nextCursor: Buffer.from(
      JSON.stringify([...last.times.map((time) => time.toISOString()), last.id]),
    ).toString('base64url'),
  };
}
