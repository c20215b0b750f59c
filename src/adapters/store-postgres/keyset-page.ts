import { decodeCursor, effectivePageSize } from '../../domain/paging.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import { keysetSql as sharedKeysetSql, pageOf, type KeysetSql, type PositionedRow } from '../store-rows/keyset.js';
import { all, statement, type Queryable, type Statement } from './statement.js';

// A keyset list on pg (the shared rules: ../store-rows/keyset.ts).

export { mapPage } from '../store-rows/keyset.js';

/** As the shared one, with the cursor's types spelled out: PostgreSQL cannot infer them in a row comparison. */
export const keysetSql = (p: { select: string; scope: string; order: 'ASC' | 'DESC' }): KeysetSql =>
  sharedKeysetSql({ ...p, position: '(@at::bigint, @id::text)' });

export class KeysetList<Row extends PositionedRow> {
  private readonly firstPage: Statement<Record<string, unknown>, Row>;
  private readonly nextPage: Statement<Record<string, unknown>, Row>;

  constructor(sql: KeysetSql) {
    this.firstPage = statement(sql.firstPage);
    this.nextPage = statement(sql.nextPage);
  }

  /** Throws the INVALID_ARGUMENT of decodeCursor for a token this service did not issue. */
  async page(db: Queryable, scope: string, request: PageRequest, extra: Record<string, unknown> = {}): Promise<Page<Row>> {
    const cursor = decodeCursor(request.pageToken);
    const size = effectivePageSize(request.pageSize);
    const rows =
      cursor === undefined
        ? await all(db, this.firstPage, { ...extra, scope, limit: size + 1 })
        : await all(db, this.nextPage, { ...extra, scope, limit: size + 1, at: cursor.at, id: cursor.id });
    return pageOf(rows, size);
  }
}
