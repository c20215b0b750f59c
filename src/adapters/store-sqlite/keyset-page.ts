import type Database from 'better-sqlite3';
import { decodeCursor, effectivePageSize } from '../../domain/paging.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import { pageOf, type KeysetSql, type PositionedRow } from '../store-rows/keyset.js';

// A keyset list on prepared better-sqlite3 statements (the shared rules: ../store-rows/keyset.ts).

export { keysetSql, mapPage } from '../store-rows/keyset.js';

export class KeysetList<Row extends PositionedRow> {
  private readonly firstPage: Database.Statement<{ scope: string; limit: number }, Row>;
  private readonly nextPage: Database.Statement<{ scope: string; limit: number; at: number; id: string }, Row>;

  constructor(db: Database.Database, sql: KeysetSql) {
    this.firstPage = db.prepare(sql.firstPage);
    this.nextPage = db.prepare(sql.nextPage);
  }

  /** Throws the INVALID_ARGUMENT of decodeCursor for a token this service did not issue. */
  page(scope: string, request: PageRequest): Page<Row> {
    const cursor = decodeCursor(request.pageToken);
    const size = effectivePageSize(request.pageSize);
    const rows =
      cursor === undefined
        ? this.firstPage.all({ scope, limit: size + 1 })
        : this.nextPage.all({ scope, limit: size + 1, at: cursor.at, id: cursor.id });
    return pageOf(rows, size);
  }
}
