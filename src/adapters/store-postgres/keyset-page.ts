import { decodeCursor, effectivePageSize, encodeCursor } from '../../domain/paging.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import { all, statement, type Queryable, type Statement } from './statement.js';

// Keyset pagination over (created_at, id), as in the SQLite store. The page token holds the
// position of the last row served, and the next page starts strictly after it, so rows inserted
// between two requests are neither skipped nor repeated (as they would be with OFFSET).

export interface KeysetSql {
  readonly firstPage: string;
  readonly nextPage: string;
}

/** Rows carry the sort key that the page token encodes. */
export interface PositionedRow {
  readonly created_at: number;
  readonly id: string;
}

/**
 * The two queries of a keyset list. `scope` is a WHERE condition on the `@scope` parameter; an
 * index on (scope columns, created_at, id) in the same direction makes each page a range scan.
 */
export function keysetSql(p: { select: string; scope: string; order: 'ASC' | 'DESC' }): KeysetSql {
  const orderAndLimit = `ORDER BY created_at ${p.order}, id ${p.order} LIMIT @limit`;
  const after = p.order === 'ASC' ? '>' : '<';
  return {
    firstPage: `${p.select} WHERE ${p.scope} ${orderAndLimit}`,
    nextPage: `${p.select} WHERE ${p.scope} AND (created_at, id) ${after} (@at::bigint, @id::text) ${orderAndLimit}`,
  };
}

export class KeysetList<Row extends PositionedRow> {
  private readonly firstPage: Statement<{ scope: string; limit: number }, Row>;
  private readonly nextPage: Statement<{ scope: string; limit: number; at: number; id: string }, Row>;

  constructor(sql: KeysetSql) {
    this.firstPage = statement(sql.firstPage);
    this.nextPage = statement(sql.nextPage);
  }

  /** Throws the INVALID_ARGUMENT of decodeCursor for a token this service did not issue. */
  async page(db: Queryable, scope: string, request: PageRequest): Promise<Page<Row>> {
    const cursor = decodeCursor(request.pageToken);
    const size = effectivePageSize(request.pageSize);
    const limit = size + 1; // the extra row only tells whether another page exists
    const rows =
      cursor === undefined
        ? await all(db, this.firstPage, { scope, limit })
        : await all(db, this.nextPage, { scope, limit, at: cursor.at, id: cursor.id });
    const items = rows.slice(0, size);
    const last = items.at(-1);
    const more = rows.length > size && last !== undefined;
    return { items, nextPageToken: more ? encodeCursor({ at: last.created_at, id: last.id }) : '' };
  }
}

export function mapPage<A, B>(page: Page<A>, map: (item: A) => B): Page<B> {
  return { items: page.items.map(map), nextPageToken: page.nextPageToken };
}
