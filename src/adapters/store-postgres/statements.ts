import { KeysetList, keysetSql } from './keyset-page.js';
import type { KeyRow, OperationRow, PrincipalRow, TokenRow, VersionRow } from './row-mapping.js';
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
// wrapped_material is left out: only getWrappedMaterial reads it.
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
const PRINCIPAL_COLUMNS = columns<PrincipalRow>({ id: true, type: true, name: true, created_at: true, admin: true });
const TOKEN_COLUMNS = columns<TokenRow>({
  id: true,
  principal_id: true,
  secret_hash: true,
  created_at: true,
  expires_at: true,
  revoked_at: true,
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

  getVersion: `${select('key_versions', VERSION_COLUMNS)} WHERE key_id = @key_id AND id = @id`,
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
  getToken: `${select('tokens', TOKEN_COLUMNS)} WHERE id = @id`,
  insertToken: insertInto('tokens', TOKEN_COLUMNS),

  getMeta: 'SELECT value FROM meta WHERE name = @name',
  insertMetaIfAbsent: 'INSERT INTO meta (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING',
} as const;

type ById = { id: string };
type VersionRef = { key_id: string; id: string };
type Due = { now: number; limit: number };

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

  getVersion: statement<VersionRef, VersionRow>(SQL.getVersion),
  getWrappedMaterial: statement<VersionRef, { wrapped_material: Buffer | null }>(SQL.getWrappedMaterial),
  insertVersion: statement<VersionRow & { wrapped_material: Buffer }>(SQL.insertVersion),
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

  getMeta: statement<{ name: string }, { value: string }>(SQL.getMeta),
  insertMetaIfAbsent: statement<{ name: string; value: string }>(SQL.insertMetaIfAbsent),
} as const;
