import type { BindingRow } from './row-mapping.js';

// Statements that read the same in SQLite and PostgreSQL (@name parameters; each adapter compiles
// them its own way): access bindings and the audit log.

const BINDING_COLUMNS: readonly (keyof BindingRow)[] = ['scope_type', 'scope_id', 'role_id', 'subject_type', 'subject_id'];
const SELECT_BINDINGS = `SELECT ${BINDING_COLUMNS.join(', ')} FROM access_bindings`;
const SAME_SCOPE = 'scope_type = @scope_type AND scope_id = @scope_id';
const SAME_SUBJECT = 'subject_type = @subject_type AND subject_id = @subject_id';

export const BINDING_SQL = {
  listBindings: `${SELECT_BINDINGS} WHERE ${SAME_SCOPE} ORDER BY role_id, subject_type, subject_id`,
  bindingsOfSubject: `${SELECT_BINDINGS} WHERE ${SAME_SUBJECT}`,
  insertBinding: `INSERT INTO access_bindings (${BINDING_COLUMNS.join(', ')}) VALUES (${BINDING_COLUMNS.map((c) => `@${c}`).join(', ')}) ON CONFLICT DO NOTHING`,
  deleteBinding: `DELETE FROM access_bindings WHERE ${SAME_SCOPE} AND role_id = @role_id AND ${SAME_SUBJECT}`,
  deleteBindingsOfScope: `DELETE FROM access_bindings WHERE ${SAME_SCOPE}`,
  deleteBindingsOfSubject: `DELETE FROM access_bindings WHERE ${SAME_SUBJECT}`,
} as const;

/**
 * getKeyWithVersions: the key joined with each of its versions (columns prefixed v_), and a
 * version's material only when it is ACTIVE, in creation order. One statement, so key and versions
 * are of one moment; the primary key and key_versions_by_key make it two index lookups.
 */
export function keyWithVersionsSql(keyColumns: readonly string[], versionColumns: readonly string[]): string {
  return (
    `SELECT ${keyColumns.map((c) => `k.${c}`).join(', ')}, ${versionColumns.map((c) => `v.${c} AS v_${c}`).join(', ')}, ` +
    `CASE WHEN v.status = 'ACTIVE' THEN v.wrapped_material END AS v_wrapped_material ` +
    'FROM keys k LEFT JOIN key_versions v ON v.key_id = k.id WHERE k.id = @id ORDER BY v.created_at, v.id'
  );
}

export const AUDIT_SQL = {
  getAuditHead: 'SELECT seq, hash, mac FROM audit_head WHERE id = 1',
  setAuditHead:
    'INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, @seq, @hash, @mac) ' +
    'ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac',
  insertAudit: 'INSERT INTO audit_log (seq, at, subject_id, key_id, code, body, hash) VALUES (@seq, @at, @subject_id, @key_id, @code, @body, @hash)',
  scanAudit: 'SELECT seq, body, hash FROM audit_log WHERE seq > @after ORDER BY seq LIMIT @limit',
} as const;
