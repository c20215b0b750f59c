import { rotationDueAt } from '../../domain/key.js';
import type { KeyStatus, KeyVersion, SymmetricAlgorithm, SymmetricKey, VersionStatus } from '../../domain/key.js';
import type { Operation, OperationMetadata, OperationResponse } from '../../domain/operation.js';
import type { AccessBinding, Scope, ScopeType, SubjectKind } from '../../domain/access.js';
import type { Principal, PrincipalType, TokenRecord } from '../../domain/principal.js';
import type { KeyWithVersions, LoadedVersion, VersionRef } from '../../ports/store.js';

// Rows of the relational stores (SQLite, PostgreSQL) and their conversion to and from domain
// objects, written once for both: the stores differ only in how a boolean column reads (0/1 in
// SQLite, true/false in PostgreSQL). An optional domain field maps to a NULL column and back to an
// absent property (never to `undefined` or `null`), so what is read deep-equals what was written.
// JSON columns (labels, metadata, response, error) travel as their text.

export interface KeyRow<Flag = boolean> {
  id: string;
  folder_id: string;
  name: string;
  description: string;
  labels: string;
  status: string;
  primary_version_id: string;
  default_algorithm: string;
  created_at: number;
  rotated_at: number | null;
  rotation_period_ms: number | null;
  deletion_protection: Flag;
  deleted_at: number | null;
  revision: number;
  rotation_due_at: number | null;
}

export interface VersionRow<Flag = boolean> {
  id: string;
  key_id: string;
  status: string;
  algorithm: string;
  created_at: number;
  destroy_at: number | null;
  hosted_by_hsm: Flag;
}

/**
 * A key row joined with one of its versions (v_ columns, NULL when the key has no version) and that
 * version's material when it is ACTIVE (getKeyWithVersions).
 */
export type KeyWithVersionRow<Flag = boolean> = KeyRow<Flag> & { [K in keyof VersionRow<Flag> as `v_${K}`]: VersionRow<Flag>[K] | null } & {
  v_wrapped_material: Buffer | null;
};

export interface OperationRow<Flag = boolean> {
  id: string;
  resource_id: string;
  created_by: string;
  created_at: number;
  modified_at: number;
  description: string;
  done: Flag;
  metadata: string;
  response: string | null;
  error: string | null;
  idempotency_key: string | null;
}

export interface PrincipalRow {
  id: string;
  type: string;
  name: string;
  description: string | null;
  created_at: number;
}

export interface TokenRow {
  id: string;
  principal_id: string;
  secret_hash: Buffer;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  description: string | null;
}

export interface BindingRow {
  scope_type: string;
  scope_id: string;
  role_id: string;
  subject_type: string;
  subject_id: string;
}

/** `{ [name]: value }` when the column holds a value, `{}` when it is NULL. */
function optional<K extends string, V>(name: K, value: V | null): { [P in K]?: V } {
  return value === null ? {} : ({ [name]: value } as { [P in K]: V });
}

const nullable = <V>(value: V | undefined): V | null => value ?? null;
const json = (value: unknown): string => JSON.stringify(value);

/** How a store writes and reads a boolean column. */
export interface FlagColumn<Flag> {
  write(flag: boolean): Flag;
  read(column: Flag): boolean;
}

export function rowMapping<Flag>(flag: FlagColumn<Flag>) {
  function keyToRow(key: SymmetricKey): KeyRow<Flag> {
    return {
      id: key.id,
      folder_id: key.folderId,
      name: key.name,
      description: key.description,
      labels: json(key.labels),
      status: key.status,
      primary_version_id: key.primaryVersionId,
      default_algorithm: key.defaultAlgorithm,
      created_at: key.createdAt,
      rotated_at: nullable(key.rotatedAt),
      rotation_period_ms: nullable(key.rotationPeriodMs),
      deletion_protection: flag.write(key.deletionProtection),
      deleted_at: nullable(key.deletedAt),
      revision: key.revision,
      rotation_due_at: nullable(rotationDueAt(key)),
    };
  }

  function rowToKey(row: KeyRow<Flag>): SymmetricKey {
    return {
      id: row.id,
      folderId: row.folder_id,
      name: row.name,
      description: row.description,
      labels: JSON.parse(row.labels) as Record<string, string>,
      status: row.status as KeyStatus,
      primaryVersionId: row.primary_version_id,
      defaultAlgorithm: row.default_algorithm as SymmetricAlgorithm,
      createdAt: row.created_at,
      ...optional('rotatedAt', row.rotated_at),
      ...optional('rotationPeriodMs', row.rotation_period_ms),
      deletionProtection: flag.read(row.deletion_protection),
      ...optional('deletedAt', row.deleted_at),
      revision: row.revision,
    };
  }

  function versionToRow(v: KeyVersion): VersionRow<Flag> {
    return {
      id: v.id,
      key_id: v.keyId,
      status: v.status,
      algorithm: v.algorithm,
      created_at: v.createdAt,
      destroy_at: nullable(v.destroyAt),
      hosted_by_hsm: flag.write(v.hostedByHsm),
    };
  }

  function rowToVersion(row: VersionRow<Flag>): KeyVersion {
    return {
      id: row.id,
      keyId: row.key_id,
      status: row.status as VersionStatus,
      algorithm: row.algorithm as SymmetricAlgorithm,
      createdAt: row.created_at,
      ...optional('destroyAt', row.destroy_at),
      hostedByHsm: flag.read(row.hosted_by_hsm),
    };
  }

  /** The rows of one key joined with each of its versions; undefined for no rows (no such key). */
  function rowsToKeyWithVersions(rows: readonly KeyWithVersionRow<Flag>[]): KeyWithVersions | undefined {
    const first = rows[0];
    if (first === undefined) return undefined;
    const versions: LoadedVersion[] = [];
    for (const r of rows) {
      if (r.v_id === null) continue; // the LEFT JOIN's row of a key without versions
      const version = rowToVersion({
        id: r.v_id,
        key_id: r.v_key_id!,
        status: r.v_status!,
        algorithm: r.v_algorithm!,
        created_at: r.v_created_at!,
        destroy_at: r.v_destroy_at,
        hosted_by_hsm: r.v_hosted_by_hsm!,
      });
      versions.push(r.v_wrapped_material === null ? { version } : { version, wrappedMaterial: r.v_wrapped_material });
    }
    return { key: rowToKey(first), versions };
  }

  function operationToRow(op: Operation): OperationRow<Flag> {
    return {
      id: op.id,
      resource_id: op.resourceId,
      created_by: op.createdBy,
      created_at: op.createdAt,
      modified_at: op.modifiedAt,
      description: op.description,
      done: flag.write(op.done),
      metadata: json(op.metadata),
      response: op.response === undefined ? null : json(op.response),
      error: op.error === undefined ? null : json(op.error),
      idempotency_key: nullable(op.idempotencyKey),
    };
  }

  function rowToOperation(row: OperationRow<Flag>): Operation {
    return {
      id: row.id,
      description: row.description,
      createdAt: row.created_at,
      createdBy: row.created_by,
      modifiedAt: row.modified_at,
      done: flag.read(row.done),
      metadata: JSON.parse(row.metadata) as OperationMetadata,
      ...optional('response', row.response === null ? null : (JSON.parse(row.response) as OperationResponse)),
      ...optional('error', row.error === null ? null : (JSON.parse(row.error) as Operation['error'])),
      resourceId: row.resource_id,
      ...optional('idempotencyKey', row.idempotency_key),
    };
  }

  function principalToRow(p: Principal): PrincipalRow {
    return { id: p.id, type: p.type, name: p.name, description: nullable(p.description), created_at: p.createdAt };
  }

  function rowToPrincipal(row: PrincipalRow): Principal {
    return { id: row.id, type: row.type as PrincipalType, name: row.name, ...optional('description', row.description), createdAt: row.created_at };
  }

  function tokenToRow(t: TokenRecord): TokenRow {
    return {
      id: t.id,
      principal_id: t.principalId,
      secret_hash: t.secretHash,
      created_at: t.createdAt,
      expires_at: nullable(t.expiresAt),
      revoked_at: nullable(t.revokedAt),
      description: nullable(t.description),
    };
  }

  function rowToToken(row: TokenRow): TokenRecord {
    return {
      id: row.id,
      principalId: row.principal_id,
      secretHash: row.secret_hash,
      createdAt: row.created_at,
      ...optional('expiresAt', row.expires_at),
      ...optional('revokedAt', row.revoked_at),
      ...optional('description', row.description),
    };
  }

  return { keyToRow, rowToKey, versionToRow, rowToVersion, rowsToKeyWithVersions, operationToRow, rowToOperation, principalToRow, rowToPrincipal, tokenToRow, rowToToken };
}

/** Of `versions` (found by version id alone), those that `refs` name under their own key. */
export function versionsUnderTheirKeys(refs: readonly VersionRef[], versions: readonly KeyVersion[]): KeyVersion[] {
  const wanted = new Set(refs.map((r) => `${r.keyId}/${r.versionId}`));
  return versions.filter((v) => wanted.has(`${v.keyId}/${v.id}`));
}

export function bindingToRow(scope: Scope, b: AccessBinding): BindingRow {
  return { scope_type: scope.type, scope_id: scope.id, role_id: b.roleId, subject_type: b.subject.type, subject_id: b.subject.id };
}

export function rowToBinding(row: BindingRow): { scope: Scope; binding: AccessBinding } {
  return {
    scope: { type: row.scope_type as ScopeType, id: row.scope_id },
    binding: { roleId: row.role_id, subject: { type: row.subject_type as SubjectKind, id: row.subject_id } },
  };
}
