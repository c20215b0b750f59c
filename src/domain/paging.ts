import { ERR } from '../errors/kms-error.js';

// Page sizes and opaque page tokens (SPEC.md §3.3). A token is the position (sort value and id) of
// the last item of the previous page, so pages stay consistent while rows are inserted.

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_TOKEN_LENGTH = 100;

export interface PageRequest {
  readonly pageSize: number;
  readonly pageToken: string;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

export interface Cursor {
  readonly at: number;
  readonly id: string;
}

export function effectivePageSize(requested: number): number {
  return requested === 0 ? DEFAULT_PAGE_SIZE : requested;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.at.toString(36)}.${c.id}`, 'utf8').toString('base64url');
}

export function decodeCursor(token: string): Cursor | undefined {
  if (token === '') return undefined;
  const text = /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  const m = /^([0-9a-z]{1,12})\.([a-z0-9_-]{1,50})$/.exec(text);
  const at = m ? parseInt(m[1]!, 36) : NaN;
  // 12 base-36 digits can exceed 2^53: no issued token holds such a position.
  if (!m || !Number.isSafeInteger(at)) throw ERR.field('page_token', 'is not a token this service issued');
  return { at, id: m[2]! };
}
