import { codeFromName, indexColumns, parseBody, type AuditEvent, type AuditFilter, type AuditRecord, type StoredAuditRecord } from '../../domain/audit.js';
import type { SealedBatch } from '../../crypto/audit-chain.js';
import { ERR } from '../../errors/kms-error.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import { effectivePageSize } from '../../domain/paging.js';

// The audit log's rows and its filtered query, shared by the relational stores. A page token is
// the seq of the last record served (base 36); records are served in seq order.

export interface AuditRow {
  seq: number;
  at: number;
  subject_id: string;
  key_id: string | null;
  code: number;
  body: string;
  hash: string;
}

function rowOf(r: StoredAuditRecord, record: AuditRecord): AuditRow {
  const ix = indexColumns(record);
  return { seq: r.seq, at: ix.at, subject_id: ix.subjectId, key_id: ix.keyId, code: ix.code, body: r.body, hash: r.hash };
}

/** The row of a stored record (a restore): its index columns are read back from its body. */
export function auditRow(r: StoredAuditRecord): AuditRow {
  const parsed = parseBody(r.body);
  if (parsed === undefined) throw new Error(`audit record ${r.seq} has no canonical body`);
  return rowOf(r, parsed);
}

/** The rows of records just sealed from `events` (the hot path): index columns come from the events, no re-parse. */
export function sealedAuditRows(sealed: SealedBatch, events: readonly AuditEvent[]): AuditRow[] {
  return sealed.records.map((r, i) => rowOf(r, { ...events[i]!, seq: r.seq }));
}

/** One SELECT with only the conditions the filter sets, and its @named parameters. */
export function auditQuery(filter: AuditFilter, page: PageRequest): { sql: string; params: Record<string, string | number>; size: number } {
  const where: string[] = [];
  const params: Record<string, string | number> = {};
  if (page.pageToken !== '') {
    const after = /^[0-9a-z]{1,11}$/.test(page.pageToken) ? parseInt(page.pageToken, 36) : NaN;
    if (!Number.isSafeInteger(after)) throw ERR.field('page_token', 'is not a token this service issued');
    where.push('seq > @after');
    params.after = after;
  }
  if (filter.from !== undefined) {
    where.push('at >= @from');
    params.from = filter.from;
  }
  if (filter.to !== undefined) {
    where.push('at < @to');
    params.to = filter.to;
  }
  if (filter.subjectId !== undefined) {
    where.push('subject_id = @subject_id');
    params.subject_id = filter.subjectId;
  }
  if (filter.keyId !== undefined) {
    where.push('key_id = @key_id');
    params.key_id = filter.keyId;
  }
  if (filter.outcome !== undefined) {
    const o = filter.outcome;
    if (o === 'ok') where.push('code = 0');
    else if (o === 'error') where.push('code <> 0');
    else {
      const code = codeFromName(o);
      if (code === undefined) throw ERR.field('outcome', 'must be ok, error or a status name such as PERMISSION_DENIED');
      where.push('code = @code');
      params.code = code;
    }
  }
  const size = effectivePageSize(page.pageSize);
  params.limit = size + 1;
  const sql = `SELECT seq, body, hash FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT @limit`;
  return { sql, params, size };
}

export function auditPage(rows: StoredAuditRecord[], size: number): Page<StoredAuditRecord> {
  const items = rows.slice(0, size);
  const last = items.at(-1);
  return { items, nextPageToken: rows.length > size && last ? last.seq.toString(36) : '' };
}
