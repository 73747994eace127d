import type { FieldError } from '@haven/plugin-sdk';

/** A page of a listing; `nextCursor` is absent on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

export interface PageRequest {
  limit: number;
  after?: { createdAt: Date; id: string };
}

export const MAX_PAGE = 500;

/**
 * Reads `limit` and the opaque `cursor` (created_at + id of the last item seen, newest first).
 * Problems go into `errors`, so a 400 can name them together with the listing's other filters.
 */
export function readPageRequest(
  query: Record<string, unknown>,
  errors: FieldError[],
  defaultLimit = 50,
): PageRequest {
  let limit = defaultLimit;
  if (query['limit'] !== undefined) {
    limit = Number(query['limit']);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE)
      errors.push({ field: 'limit', message: `must be an integer from 1 to ${MAX_PAGE}` });
  }
  let after: PageRequest['after'];
  if (query['cursor'] !== undefined) {
    try {
      const [time, id] = JSON.parse(
        Buffer.from(typeof query['cursor'] === 'string' ? query['cursor'] : '', 'base64url').toString('utf8'),
      ) as [string, string];
      const createdAt = new Date(time);
      if (Number.isNaN(createdAt.getTime()) || typeof id !== 'string') throw new Error('bad cursor');
      after = { createdAt, id };
    } catch {
      errors.push({ field: 'cursor', message: 'is not a cursor returned by this API' });
    }
  }
  return { limit, after };
}

export function pageOf<T>(
  rows: T[],
  request: PageRequest,
  key: (row: T) => { createdAt: Date; id: string },
): Page<T> {
  if (rows.length <= request.limit) return { items: rows };
  const items = rows.slice(0, request.limit);
  const last = key(items[items.length - 1]);
  return {
    items,
    nextCursor: Buffer.from(JSON.stringify([last.createdAt.toISOString(), last.id])).toString('base64url'),
  };
}
