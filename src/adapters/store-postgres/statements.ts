import { KeysetList, keysetSql } from './keyset-page.js';
import type { BindingRow, KeyRow, KeyWithVersionRow, OperationRow, PrincipalRow, TokenRow, VersionRow } from './row-mapping.js';
import type { AuditRow } from '../store-rows/audit-rows.js';
import { AUDIT_SQL, BINDING_SQL, keyWithVersionsSql } from '../store-rows/shared-sql.js';
import { statement } from './statement.js';

// Every SQL statement of the PostgreSQL store, in one place, the same queries as the SQLite store's
// (src/adapters/store-sqlite/statements.ts). Parameters are named (@name) and bound from the row
// objects of row-mapping.ts; see statement.ts.

/** The columns of a row type; the compiler rejects a missing or unknown column. */
function columns<Row>(present: Record<keyof Row, true>): readonly string[] {
  return Object.keys(present);
}

const KEY_COLUMNS = columns<KeyRow>({
  id: true,
  folder_id: true,
  name: true,
  description: true,
  labels: true,
  status: true,
  primary_version_id: true,
  default_algorithm: true,
  created_at: true,
  rotated_at: true,
  rotation_period_ms: true,
  deletion_protection: true,
  deleted_at: true,
  revision: true,
  rotation_due_at: true,
});
// wrapped_material is left out: only getWrappedMaterial and getKeyWithVersions read it.
const VERSION_COLUMNS = columns<VersionRow>({
  id: true,
  key_id: true,
  status: true,
  algorithm: true,
  created_at: true,
  destroy_at: true,
  hosted_by_hsm: true,
});
const OPERATION_COLUMNS = columns<OperationRow>({
  id: true,
  resource_id: true,
  created_by: true,
  created_at: true,
  modified_at: true,
  description: true,
  done: true,
  metadata: true,
  response: true,
  error: true,
  idempotency_key: true,
});
const PRINCIPAL_COLUMNS = columns<PrincipalRow>({ id: true, type: true, name: true, description: true, created_at: true });
const TOKEN_COLUMNS = columns<TokenRow>({
  id: true,
  principal_id: true,
  secret_hash: true,
  created_at: true,
  expires_at: true,
  revoked_at: true,
  description: true,
});

const insertInto = (table: string, cols: readonly string[]): string =>
  `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`;
const select = (table: string, cols: readonly string[], alias = ''): string =>
  `SELECT ${cols.map((c) => alias + c).join(', ')} FROM ${table}`;

/** A DESTROYED version keeps no material, whichever way it gets that status (a CHECK enforces it too). */
const materialUnlessDestroyed = (material: string): string =>
  `CASE WHEN @status::text = 'DESTROYED' THEN NULL ELSE ${material} END`;

export const SQL = {
  getKey: `${select('keys', KEY_COLUMNS)} WHERE id = @id`,
  insertKey: insertInto('keys', KEY_COLUMNS),
  updateKey:
    `UPDATE keys SET ${KEY_COLUMNS.filter((c) => c !== 'id').map((c) => `${c} = @${c}`).join(', ')} ` +
    'WHERE id = @id AND revision = @expect_revision',
  // FOR UPDATE: purgeKey holds the key row, as commitKeyChange's UPDATE does, so the two serialise
  // on it and always lock the key before its versions.
  lockKeyDeletedAt: 'SELECT deleted_at FROM keys WHERE id = @id FOR UPDATE',
  deleteKey: 'DELETE FROM keys WHERE id = @id',
  keysDueForRotation: `${select('keys', KEY_COLUMNS)} WHERE rotation_due_at <= @now ORDER BY rotation_due_at, id LIMIT @limit`,
  deletedKeys: `${select('keys', KEY_COLUMNS)} WHERE deleted_at < @before ORDER BY deleted_at, id LIMIT @limit`,
  listKeys: keysetSql({ select: select('keys', KEY_COLUMNS), scope: 'folder_id = @scope AND deleted_at IS NULL', order: 'ASC' }),
  listKeysAmong: keysetSql({ select: select('keys', KEY_COLUMNS), scope: 'folder_id = @scope AND deleted_at IS NULL AND id = ANY(@ids::text[])', order: 'ASC' }),

  getKeyWithVersions: keyWithVersionsSql(KEY_COLUMNS, VERSION_COLUMNS),
  getVersion: `${select('key_versions', VERSION_COLUMNS)} WHERE key_id = @key_id AND id = @id`,
  // Version ids are the primary key; the caller checks each one's key.
  getVersionsByIds: `${select('key_versions', VERSION_COLUMNS)} WHERE id = ANY(@ids::text[])`,
  getWrappedMaterial: 'SELECT wrapped_material FROM key_versions WHERE key_id = @key_id AND id = @id',
  insertVersion:
    `INSERT INTO key_versions (${VERSION_COLUMNS.join(', ')}, wrapped_material) ` +
    `VALUES (${VERSION_COLUMNS.map((c) => `@${c}`).join(', ')}, ${materialUnlessDestroyed('@wrapped_material::bytea')})`,
  updateVersion:
    'UPDATE key_versions SET status = @status, destroy_at = @destroy_at, ' +
    `wrapped_material = ${materialUnlessDestroyed('wrapped_material')} ` +
    'WHERE key_id = @key_id AND id = @id',
  countLiveVersions: `SELECT count(*) AS live FROM key_versions WHERE key_id = @key_id AND status <> 'DESTROYED'`,
  versionsDueForDestruction:
    `${select('key_versions v', VERSION_COLUMNS, 'v.')} JOIN keys k ON k.id = v.key_id ` +
    `WHERE v.status = 'SCHEDULED_FOR_DESTRUCTION' AND v.destroy_at <= @now AND k.deleted_at IS NULL ` +
    'ORDER BY v.destroy_at, v.id LIMIT @limit',
  deleteVersionsOfKey: 'DELETE FROM key_versions WHERE key_id = @key_id',
  listVersions: keysetSql({ select: select('key_versions', VERSION_COLUMNS), scope: 'key_id = @scope', order: 'ASC' }),

  getOperation: `${select('operations', OPERATION_COLUMNS)} WHERE id = @id`,
  insertOperation: insertInto('operations', OPERATION_COLUMNS),
  operationByIdempotencyKey:
    `${select('operations', OPERATION_COLUMNS)} WHERE created_by = @created_by AND idempotency_key = @idempotency_key`,
  listOperations: keysetSql({ select: select('operations', OPERATION_COLUMNS), scope: 'resource_id = @scope', order: 'DESC' }),

  getPrincipal: `${select('principals', PRINCIPAL_COLUMNS)} WHERE id = @id`,
  insertPrincipal: insertInto('principals', PRINCIPAL_COLUMNS),
  // The scope parameter is always '': principals are one list.
  listPrincipals: keysetSql({ select: select('principals', PRINCIPAL_COLUMNS), scope: `@scope::text = ''`, order: 'ASC' }),
  lockPrincipal: `${select('principals', PRINCIPAL_COLUMNS)} WHERE id = @id FOR UPDATE`,
  deletePrincipal: 'DELETE FROM principals WHERE id = @id',
  getToken: `${select('tokens', TOKEN_COLUMNS)} WHERE id = @id`,
  insertToken: insertInto('tokens', TOKEN_COLUMNS),
  listTokens: `${select('tokens', TOKEN_COLUMNS)} WHERE principal_id = @principal_id ORDER BY created_at, id`,
  deleteTokensOfPrincipal: 'DELETE FROM tokens WHERE principal_id = @principal_id RETURNING id',
  revokeToken: 'UPDATE tokens SET revoked_at = coalesce(revoked_at, @at::bigint) WHERE id = @id',

  ...BINDING_SQL,
  // The subjects as two parallel arrays (pg sends a JavaScript array as a PostgreSQL array).
  bindingsOfSubjects:
    `${select('access_bindings', columns<BindingRow>({ scope_type: true, scope_id: true, role_id: true, subject_type: true, subject_id: true }))} ` +
    'WHERE (subject_type, subject_id) IN ' +
    '(SELECT t, i FROM unnest(@subject_types::text[], @subject_ids::text[]) AS s (t, i))',
  // Serialises changes of one scope's bindings across nodes (the rows may not exist yet, so they
  // cannot be locked). The schema is part of the key, as in the other advisory locks, so that
  // schemas sharing a database never wait for each other.
  lockScope:
    `SELECT pg_advisory_xact_lock(${0x6b6d7362 /* "kmsb" */}, ` +
    `hashtext(current_schema() || '/' || @scope_type::text || '/' || @scope_id::text))`,

  // Serialises appends to the audit chain across nodes: the head row is absent until the first
  // append, and an absent row cannot be locked, so two first appends would both number from 1.
  lockAuditChain: `SELECT pg_advisory_xact_lock(${0x6b6d7361 /* "kmsa" */}, hashtext(current_schema()))`,
  ...AUDIT_SQL,
  // Taken after lockAuditChain: the row lock also holds off a writer that skips the advisory lock
  // (an operator's tool), and the statement reads the head as last committed.
  lockAuditHead: `${AUDIT_SQL.getAuditHead} FOR UPDATE`,

  getMeta: 'SELECT value FROM meta WHERE name = @name',
  insertMetaIfAbsent: 'INSERT INTO meta (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING',
  replaceMeta: 'UPDATE meta SET value = @next WHERE name = @name AND value = @expected',

  // Root-key rotation walks every blob by version id (the primary key) and swaps each one only if unchanged.
  listStoredMaterial:
    'SELECT key_id, id, wrapped_material FROM key_versions WHERE id > @after AND wrapped_material IS NOT NULL ORDER BY id LIMIT @limit',
  replaceStoredMaterial:
    'UPDATE key_versions SET wrapped_material = @next::bytea ' +
    'WHERE key_id = @key_id AND id = @id AND wrapped_material = @expected::bytea',
  insertMeta: 'INSERT INTO meta (name, value) VALUES (@name, @value)',
} as const;

const INSERT_AUDITS =
  'INSERT INTO audit_log (seq, at, subject_id, key_id, code, body, hash) ' +
  'SELECT * FROM unnest(@seq::bigint[], @at::bigint[], @subject_id::text[], @key_id::text[], @code::int[], @body::text[], @hash::text[])';
type AuditColumns = { [K in keyof AuditRow]: AuditRow[K][] };

/**
 * BEGIN, the audit chain's lock and its head, sent as one simple query: one round trip (there are
 * no parameters). Each statement of it still reads what committed before it began.
 */
export const BEGIN_AUDIT_APPEND = `BEGIN; ${SQL.lockAuditChain}; ${SQL.lockAuditHead}`;

type ById = { id: string };
type VersionRef = { key_id: string; id: string };
type Due = { now: number; limit: number };
type ScopeRef = { scope_type: string; scope_id: string };
type SubjectRef = { subject_type: string; subject_id: string };
type AuditHeadRow = { seq: number; hash: string; mac: string };

/** The statements, compiled once; they hold no connection, so one set serves every store. */
export const STATEMENTS = {
  getKey: statement<ById, KeyRow>(SQL.getKey),
  insertKey: statement<KeyRow>(SQL.insertKey),
  updateKey: statement<KeyRow & { expect_revision: number }>(SQL.updateKey),
  lockKeyDeletedAt: statement<ById, { deleted_at: number | null }>(SQL.lockKeyDeletedAt),
  deleteKey: statement<ById>(SQL.deleteKey),
  keysDueForRotation: statement<Due, KeyRow>(SQL.keysDueForRotation),
  deletedKeys: statement<{ before: number; limit: number }, KeyRow>(SQL.deletedKeys),
  listKeys: new KeysetList<KeyRow>(SQL.listKeys),
  listKeysAmong: new KeysetList<KeyRow>(SQL.listKeysAmong),

  getKeyWithVersions: statement<ById, KeyWithVersionRow>(SQL.getKeyWithVersions),
  getVersion: statement<VersionRef, VersionRow>(SQL.getVersion),
  getVersionsByIds: statement<{ ids: string[] }, VersionRow>(SQL.getVersionsByIds),
  getWrappedMaterial: statement<VersionRef, { wrapped_material: Buffer | null }>(SQL.getWrappedMaterial),
  /** wrapped_material is NULL only for a DESTROYED version (from a snapshot). */
  insertVersion: statement<VersionRow & { wrapped_material: Buffer | null }>(SQL.insertVersion),
  updateVersion: statement<Pick<VersionRow, 'key_id' | 'id' | 'status' | 'destroy_at'>>(SQL.updateVersion),
  countLiveVersions: statement<{ key_id: string }, { live: number }>(SQL.countLiveVersions),
  versionsDueForDestruction: statement<Due, VersionRow>(SQL.versionsDueForDestruction),
  deleteVersionsOfKey: statement<{ key_id: string }>(SQL.deleteVersionsOfKey),
  listVersions: new KeysetList<VersionRow>(SQL.listVersions),

  getOperation: statement<ById, OperationRow>(SQL.getOperation),
  insertOperation: statement<OperationRow>(SQL.insertOperation),
  operationByIdempotencyKey: statement<{ created_by: string; idempotency_key: string }, OperationRow>(
    SQL.operationByIdempotencyKey,
  ),
  listOperations: new KeysetList<OperationRow>(SQL.listOperations),

  getPrincipal: statement<ById, PrincipalRow>(SQL.getPrincipal),
  insertPrincipal: statement<PrincipalRow>(SQL.insertPrincipal),
  getToken: statement<ById, TokenRow>(SQL.getToken),
  insertToken: statement<TokenRow>(SQL.insertToken),
  listPrincipals: new KeysetList<PrincipalRow>(SQL.listPrincipals),
  lockPrincipal: statement<ById, PrincipalRow>(SQL.lockPrincipal),
  deletePrincipal: statement<ById>(SQL.deletePrincipal),
  listTokens: statement<{ principal_id: string }, TokenRow>(SQL.listTokens),
  deleteTokensOfPrincipal: statement<{ principal_id: string }, { id: string }>(SQL.deleteTokensOfPrincipal),
  revokeToken: statement<{ id: string; at: number }>(SQL.revokeToken),

  listBindings: statement<ScopeRef, BindingRow>(SQL.listBindings),
  bindingsOfSubject: statement<SubjectRef, BindingRow>(SQL.bindingsOfSubject),
  bindingsOfSubjects: statement<{ subject_types: string[]; subject_ids: string[] }, BindingRow>(SQL.bindingsOfSubjects),
  insertBinding: statement<BindingRow>(SQL.insertBinding),
  deleteBinding: statement<BindingRow>(SQL.deleteBinding),
  deleteBindingsOfScope: statement<ScopeRef>(SQL.deleteBindingsOfScope),
  deleteBindingsOfSubject: statement<SubjectRef>(SQL.deleteBindingsOfSubject),
  lockScope: statement<ScopeRef>(SQL.lockScope),

  lockAuditChain: statement<Record<string, never>>(SQL.lockAuditChain),
  getAuditHead: statement<Record<string, never>, AuditHeadRow>(SQL.getAuditHead),
  lockAuditHead: statement<Record<string, never>, AuditHeadRow>(SQL.lockAuditHead),
  setAuditHead: statement<AuditHeadRow>(SQL.setAuditHead),
  insertAudit: statement<AuditRow>(SQL.insertAudit),
  /** Many records in one statement (one round trip for a whole group commit), as parallel arrays. */
  insertAudits: statement<AuditColumns>(INSERT_AUDITS),
  /** The records and the new head in one statement: the last round trip of a group commit before COMMIT. */
  insertAuditsAndHead: statement<AuditColumns & { head_seq: number; head_hash: string; head_mac: string }>(
    `WITH records AS (${INSERT_AUDITS}) ` +
      'INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, @head_seq, @head_hash, @head_mac) ' +
      'ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac',
  ),
  /**
   * A whole group commit in one statement, run outside a transaction (it commits by itself), for a
   * node that knows the head: moves the head only if it is still @expected_seq/@expected_hash, and
   * inserts the records only if it moved. `moved` is 0 when another writer got there first; then
   * nothing was written. A writer holding the head's row lock (a mutation appending in its
   * transaction) makes this wait, and its new head then fails the check.
   */
  appendAuditsAfterHead: statement<AuditColumns & { head_seq: number; head_hash: string; head_mac: string; expected_seq: number; expected_hash: string }, { moved: number }>(
    'WITH moved AS (UPDATE audit_head SET seq = @head_seq, hash = @head_hash, mac = @head_mac ' +
      'WHERE id = 1 AND seq = @expected_seq AND hash = @expected_hash RETURNING seq), ' +
      `records AS (${INSERT_AUDITS} WHERE EXISTS (SELECT 1 FROM moved)) ` +
      'SELECT count(*)::int AS moved FROM moved',
  ),
  scanAudit: statement<{ after: number; limit: number }, { seq: number; body: string; hash: string }>(SQL.scanAudit),

  getMeta: statement<{ name: string }, { value: string }>(SQL.getMeta),
  insertMetaIfAbsent: statement<{ name: string; value: string }>(SQL.insertMetaIfAbsent),
  replaceMeta: statement<{ name: string; expected: string; next: string }>(SQL.replaceMeta),
  listStoredMaterial: statement<{ after: string; limit: number }, { key_id: string; id: string; wrapped_material: Buffer }>(SQL.listStoredMaterial),
  replaceStoredMaterial: statement<VersionRef & { expected: Buffer; next: Buffer }>(SQL.replaceStoredMaterial),
  insertMeta: statement<{ name: string; value: string }>(SQL.insertMeta),
} as const;
