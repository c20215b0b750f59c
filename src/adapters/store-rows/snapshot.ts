import { ERR } from '../../errors/kms-error.js';
import type { SnapshotRecord, SnapshotRecordType } from '../../ports/store.js';
import { rowToBinding, type rowMapping } from './row-mapping.js';

// exportSnapshot and importSnapshot, the parts both relational stores share: which table holds
// each record type, the order records travel in (parents before children, so each record can be
// inserted as it arrives), and rows to records and back.

/** The order of a snapshot: a record may only refer to records of earlier types. */
export const SNAPSHOT_ORDER: readonly SnapshotRecordType[] = ['meta', 'principal', 'token', 'key', 'version', 'operation', 'binding', 'audit', 'auditHead'];

const TABLES: Readonly<Record<SnapshotRecordType, { readonly table: string; readonly order: string }>> = {
  meta: { table: 'meta', order: 'name' },
  principal: { table: 'principals', order: 'id' },
  token: { table: 'tokens', order: 'id' },
  key: { table: 'keys', order: 'id' },
  version: { table: 'key_versions', order: 'id' },
  operation: { table: 'operations', order: 'id' },
  binding: { table: 'access_bindings', order: 'scope_type, scope_id, role_id, subject_type, subject_id' },
  audit: { table: 'audit_log', order: 'seq' },
  auditHead: { table: 'audit_head', order: 'id' },
};

/** Every table a snapshot covers; a store must be empty in all of them to import one. */
export const SNAPSHOT_TABLES: readonly string[] = SNAPSHOT_ORDER.map((t) => TABLES[t].table);

/** Reads a whole table for a snapshot: every column, in primary-key order. */
export const snapshotSelect = (type: SnapshotRecordType): string => `SELECT * FROM ${TABLES[type].table} ORDER BY ${TABLES[type].order}`;

/** One query answering whether any snapshot table holds a row. */
export const ANY_ROW_SQL = `SELECT ${SNAPSHOT_TABLES.map((t) => `EXISTS (SELECT 1 FROM ${t})`).join(' OR ')} AS found`;

type Mapping<Flag> = ReturnType<typeof rowMapping<Flag>>;

/** A row of `type`'s table, as its record. */
export function recordOfRow<Flag>(m: Mapping<Flag>, type: SnapshotRecordType, row: Record<string, unknown>): SnapshotRecord {
  switch (type) {
    case 'meta':
      return { type, name: row.name as string, value: row.value as string };
    case 'principal':
      return { type, principal: m.rowToPrincipal(row as never) };
    case 'token':
      return { type, token: m.rowToToken(row as never) };
    case 'key':
      return { type, key: m.rowToKey(row as never) };
    case 'version': {
      const material = row.wrapped_material as Buffer | null;
      return { type, version: m.rowToVersion(row as never), ...(material === null ? {} : { wrappedMaterial: material }) };
    }
    case 'operation':
      return { type, operation: m.rowToOperation(row as never) };
    case 'binding': {
      const { scope, binding } = rowToBinding(row as never);
      return { type, scope, binding };
    }
    case 'audit':
      return { type, record: { seq: row.seq as number, body: row.body as string, hash: row.hash as string } };
    case 'auditHead':
      return { type, head: { seq: row.seq as number, hash: row.hash as string, mac: row.mac as string } };
  }
}

/**
 * Checks what the schema alone would not, before a record is inserted: the snapshot order, and
 * that a version has material unless it is DESTROYED. `previous` is the type of the record before.
 */
export function checkImported(record: SnapshotRecord, previous: SnapshotRecordType | undefined, position: number): void {
  if (previous !== undefined && SNAPSHOT_ORDER.indexOf(record.type) < SNAPSHOT_ORDER.indexOf(previous)) {
    throw ERR.invalidArgument(`snapshot record ${position}: a ${record.type} record after ${previous} records; the order is ${SNAPSHOT_ORDER.join(', ')}`);
  }
  if (record.type === 'version') {
    const destroyed = record.version.status === 'DESTROYED';
    if (destroyed !== (record.wrappedMaterial === undefined)) {
      throw ERR.invalidArgument(
        `snapshot record ${position}: version ${record.version.id} is ${record.version.status} ` +
          (destroyed ? 'but has material' : 'but has no material'),
      );
    }
  }
}

/** A count of zero for every record type. */
export const noRecords = (): Record<SnapshotRecordType, number> =>
  Object.fromEntries(SNAPSHOT_ORDER.map((t) => [t, 0])) as Record<SnapshotRecordType, number>;
