import { encodeCursor, type Page } from '../../domain/paging.js';

// Keyset pagination over (created_at, id), shared by the relational stores. The page token holds
// the position of the last row served, and the next page starts strictly after it, so rows inserted
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
 * The two queries of a keyset list, with @named parameters. `scope` is a WHERE condition on the
 * `@scope` parameter; an index on (scope columns, created_at, id) in the same direction makes each
 * page a range scan. `position` is how the dialect writes the (@at, @id) tuple.
 */
export function keysetSql(p: { select: string; scope: string; order: 'ASC' | 'DESC'; position?: string }): KeysetSql {
  const orderAndLimit = `ORDER BY created_at ${p.order}, id ${p.order} LIMIT @limit`;
  const after = p.order === 'ASC' ? '>' : '<';
  return {
    firstPage: `${p.select} WHERE ${p.scope} ${orderAndLimit}`,
    nextPage: `${p.select} WHERE ${p.scope} AND (created_at, id) ${after} ${p.position ?? '(@at, @id)'} ${orderAndLimit}`,
  };
}

/** A page of `size` from rows fetched with LIMIT size + 1: the extra row only tells whether more exist. */
export function pageOf<Row extends PositionedRow>(rows: Row[], size: number): Page<Row> {
  const items = rows.slice(0, size);
  const last = items.at(-1);
  const more = rows.length > size && last !== undefined;
  return { items, nextPageToken: more ? encodeCursor({ at: last.created_at, id: last.id }) : '' };
}

export function mapPage<A, B>(page: Page<A>, map: (item: A) => B): Page<B> {
  return { items: page.items.map(map), nextPageToken: page.nextPageToken };
}
