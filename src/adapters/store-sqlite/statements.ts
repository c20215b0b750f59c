import type Database from 'better-sqlite3';
import { KeysetList, keysetSql } from './keyset-page.js';
import type { AuditRow } from '../store-rows/audit-rows.js';
import { AUDIT_SQL, BINDING_SQL, keyWithVersionsSql } from '../store-rows/shared-sql.js';
import type { BindingRow, KeyRow, KeyWithVersionRow, OperationRow, PrincipalRow, TokenRow, VersionRow } from './row-mapping.js';

// Every SQL statement of the SQLite store, in one place, prepared once per connection. All
// parameters are named (@name) and bound from the row objects of row-mapping.ts.

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
const materialUnlessDestroyed = (material: string): string => `CASE WHEN @status = 'DESTROYED' THEN NULL ELSE ${material} END`;

export const SQL = {
  getKey: `${select('keys', KEY_COLUMNS)} WHERE id = @id`,
  insertKey: insertInto('keys', KEY_COLUMNS),
  updateKey:
    `UPDATE keys SET ${KEY_COLUMNS.filter((c) => c !== 'id').map((c) => `${c} = @${c}`).join(', ')} ` +
    'WHERE id = @id AND revision = @expect_revision',
  keyDeletedAt: 'SELECT deleted_at FROM keys WHERE id = @id',
  deleteKey: 'DELETE FROM keys WHERE id = @id',
  keysDueForRotation: `${select('keys', KEY_COLUMNS)} WHERE rotation_due_at <= @now ORDER BY rotation_due_at, id LIMIT @limit`,
  deletedKeys: `${select('keys', KEY_COLUMNS)} WHERE deleted_at < @before ORDER BY deleted_at, id LIMIT @limit`,
  listKeys: keysetSql({ select: select('keys', KEY_COLUMNS), scope: 'folder_id = @scope AND deleted_at IS NULL', order: 'ASC' }),
  // @ids is a JSON array of key ids.
  listKeysAmong: keysetSql({
    select: select('keys', KEY_COLUMNS),
    scope: 'folder_id = @scope AND deleted_at IS NULL AND id IN (SELECT value FROM json_each(@ids))',
    order: 'ASC',
  }),

  getKeyWithVersions: keyWithVersionsSql(KEY_COLUMNS, VERSION_COLUMNS),
  getVersion: `${select('key_versions', VERSION_COLUMNS)} WHERE key_id = @key_id AND id = @id`,
  // @ids is a JSON array of version ids (the primary key); the caller checks each one's key.
  getVersionsByIds: `${select('key_versions', VERSION_COLUMNS)} WHERE id IN (SELECT value FROM json_each(@ids))`,
  getWrappedMaterial: 'SELECT wrapped_material FROM key_versions WHERE key_id = @key_id AND id = @id',
  insertVersion:
    `INSERT INTO key_versions (${VERSION_COLUMNS.join(', ')}, wrapped_material) ` +
    `VALUES (${VERSION_COLUMNS.map((c) => `@${c}`).join(', ')}, ${materialUnlessDestroyed('@wrapped_material')})`,
  updateVersion:
    'UPDATE key_versions SET status = @status, destroy_at = @destroy_at, ' +
    `wrapped_material = ${materialUnlessDestroyed('wrapped_material')} ` +
    'WHERE key_id = @key_id AND id = @id',
  countLiveVersions: `SELECT count(*) FROM key_versions WHERE key_id = @key_id AND status <> 'DESTROYED'`,
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
  listPrincipals: keysetSql({ select: select('principals', PRINCIPAL_COLUMNS), scope: `@scope = ''`, order: 'ASC' }),
  deletePrincipal: 'DELETE FROM principals WHERE id = @id',
  getToken: `${select('tokens', TOKEN_COLUMNS)} WHERE id = @id`,
  insertToken: insertInto('tokens', TOKEN_COLUMNS),
  listTokens: `${select('tokens', TOKEN_COLUMNS)} WHERE principal_id = @principal_id ORDER BY created_at, id`,
  deleteTokensOfPrincipal: 'DELETE FROM tokens WHERE principal_id = @principal_id RETURNING id',
  revokeToken: 'UPDATE tokens SET revoked_at = coalesce(revoked_at, @at) WHERE id = @id',

  ...BINDING_SQL,

  ...AUDIT_SQL,

  getMeta: 'SELECT value FROM meta WHERE name = @name',
  insertMetaIfAbsent: 'INSERT INTO meta (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING',
  replaceMeta: 'UPDATE meta SET value = @next WHERE name = @name AND value = @expected',

  // Root-key rotation walks every blob by version id (the primary key) and swaps each one only if unchanged.
  listStoredMaterial:
    'SELECT key_id, id, wrapped_material FROM key_versions WHERE id > @after AND wrapped_material IS NOT NULL ORDER BY id LIMIT @limit',
  replaceStoredMaterial:
    'UPDATE key_versions SET wrapped_material = @next WHERE key_id = @key_id AND id = @id AND wrapped_material = @expected',
  insertMeta: 'INSERT INTO meta (name, value) VALUES (@name, @value)',
} as const;

type ById = { id: string };
type VersionRef = { key_id: string; id: string };
type Due = { now: number; limit: number };
type ScopeRef = { scope_type: string; scope_id: string };
type SubjectRef = { subject_type: string; subject_id: string };

export function prepareStatements(db: Database.Database) {
  return {
    getKey: db.prepare<ById, KeyRow>(SQL.getKey),
    insertKey: db.prepare<KeyRow>(SQL.insertKey),
    updateKey: db.prepare<KeyRow & { expect_revision: number }>(SQL.updateKey),
    keyDeletedAt: db.prepare<ById, number | null>(SQL.keyDeletedAt).pluck(),
    deleteKey: db.prepare<ById>(SQL.deleteKey),
    keysDueForRotation: db.prepare<Due, KeyRow>(SQL.keysDueForRotation),
    deletedKeys: db.prepare<{ before: number; limit: number }, KeyRow>(SQL.deletedKeys),
    listKeys: new KeysetList<KeyRow>(db, SQL.listKeys),
    listKeysAmong: new KeysetList<KeyRow>(db, SQL.listKeysAmong),

    getKeyWithVersions: db.prepare<ById, KeyWithVersionRow>(SQL.getKeyWithVersions),
    getVersion: db.prepare<VersionRef, VersionRow>(SQL.getVersion),
    getVersionsByIds: db.prepare<{ ids: string }, VersionRow>(SQL.getVersionsByIds),
    getWrappedMaterial: db.prepare<VersionRef, Buffer | null>(SQL.getWrappedMaterial).pluck(),
    /** wrapped_material is NULL only for a DESTROYED version (from a snapshot). */
    insertVersion: db.prepare<VersionRow & { wrapped_material: Buffer | null }>(SQL.insertVersion),
    updateVersion: db.prepare<Pick<VersionRow, 'key_id' | 'id' | 'status' | 'destroy_at'>>(SQL.updateVersion),
    countLiveVersions: db.prepare<{ key_id: string }, number>(SQL.countLiveVersions).pluck(),
    versionsDueForDestruction: db.prepare<Due, VersionRow>(SQL.versionsDueForDestruction),
    deleteVersionsOfKey: db.prepare<{ key_id: string }>(SQL.deleteVersionsOfKey),
    listVersions: new KeysetList<VersionRow>(db, SQL.listVersions),

    getOperation: db.prepare<ById, OperationRow>(SQL.getOperation),
    insertOperation: db.prepare<OperationRow>(SQL.insertOperation),
    operationByIdempotencyKey: db.prepare<{ created_by: string; idempotency_key: string }, OperationRow>(
      SQL.operationByIdempotencyKey,
    ),
    listOperations: new KeysetList<OperationRow>(db, SQL.listOperations),

    getPrincipal: db.prepare<ById, PrincipalRow>(SQL.getPrincipal),
    insertPrincipal: db.prepare<PrincipalRow>(SQL.insertPrincipal),
    getToken: db.prepare<ById, TokenRow>(SQL.getToken),
    insertToken: db.prepare<TokenRow>(SQL.insertToken),
    listPrincipals: new KeysetList<PrincipalRow>(db, SQL.listPrincipals),
    deletePrincipal: db.prepare<ById>(SQL.deletePrincipal),
    listTokens: db.prepare<{ principal_id: string }, TokenRow>(SQL.listTokens),
    deleteTokensOfPrincipal: db.prepare<{ principal_id: string }, string>(SQL.deleteTokensOfPrincipal).pluck(),
    revokeToken: db.prepare<{ id: string; at: number }>(SQL.revokeToken),

    listBindings: db.prepare<ScopeRef, BindingRow>(SQL.listBindings),
    bindingsOfSubject: db.prepare<SubjectRef, BindingRow>(SQL.bindingsOfSubject),
    insertBinding: db.prepare<BindingRow>(SQL.insertBinding),
    deleteBinding: db.prepare<BindingRow>(SQL.deleteBinding),
    deleteBindingsOfScope: db.prepare<ScopeRef>(SQL.deleteBindingsOfScope),
    deleteBindingsOfSubject: db.prepare<SubjectRef>(SQL.deleteBindingsOfSubject),

    getAuditHead: db.prepare<[], { seq: number; hash: string; mac: string }>(SQL.getAuditHead),
    setAuditHead: db.prepare<{ seq: number; hash: string; mac: string }>(SQL.setAuditHead),
    insertAudit: db.prepare<AuditRow>(SQL.insertAudit),
    scanAudit: db.prepare<{ after: number; limit: number }, { seq: number; body: string; hash: string }>(SQL.scanAudit),

    getMeta: db.prepare<{ name: string }, string>(SQL.getMeta).pluck(),
    insertMetaIfAbsent: db.prepare<{ name: string; value: string }>(SQL.insertMetaIfAbsent),
    replaceMeta: db.prepare<{ name: string; expected: string; next: string }>(SQL.replaceMeta),
    listStoredMaterial: db.prepare<{ after: string; limit: number }, { key_id: string; id: string; wrapped_material: Buffer }>(SQL.listStoredMaterial),
    replaceStoredMaterial: db.prepare<VersionRef & { expected: Buffer; next: Buffer }>(SQL.replaceStoredMaterial),
    insertMeta: db.prepare<{ name: string; value: string }>(SQL.insertMeta),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
