import type Database from 'better-sqlite3';
import { decodeCursor, effectivePageSize } from '../../domain/paging.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import { pageOf, type KeysetSql, type PositionedRow } from '../store-rows/keyset.js';

// A keyset list on prepared better-sqlite3 statements (the shared rules: ../store-rows/keyset.ts).

export { keysetSql, mapPage } from '../store-rows/keyset.js';

export class KeysetList<Row extends PositionedRow> {
  private readonly firstPage: Database.Statement<Record<string, unknown>, Row>;
  private readonly nextPage: Database.Statement<Record<string, unknown>, Row>;

  constructor(db: Database.Database, sql: KeysetSql) {
    this.firstPage = db.prepare(sql.firstPage);
    this.nextPage = db.prepare(sql.nextPage);
  }

  /** Throws the INVALID_ARGUMENT of decodeCursor for a token this service did not issue. */
  page(scope: string, request: PageRequest, extra: Record<string, unknown> = {}): Page<Row> {
    const cursor = decodeCursor(request.pageToken);
    const size = effectivePageSize(request.pageSize);
    const rows =
      cursor === undefined
        ? this.firstPage.all({ ...extra, scope, limit: size + 1 })
        : this.nextPage.all({ ...extra, scope, limit: size + 1, at: cursor.at, id: cursor.id });
    return pageOf(rows, size);
  }
}
