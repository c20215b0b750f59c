import pg from 'pg';
import { rotationDueAt } from '../../domain/key.js';
import type { KeyStatus, KeyVersion, SymmetricAlgorithm, SymmetricKey, VersionStatus } from '../../domain/key.js';
import type { Operation, OperationMetadata, OperationResponse } from '../../domain/operation.js';
import type { Principal, SubjectType, TokenRecord } from '../../domain/principal.js';

// Rows as the PostgreSQL store reads and writes them and their conversion to and from domain
// objects. An optional domain field maps to a NULL column and back to an absent property (never to
// `undefined` or `null`), so what is read deep-equals what was written. BIGINT columns arrive as
// numbers and JSON columns as their text (see TYPE_PARSERS), so a row reads back as it was written.

export interface KeyRow {
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
  deletion_protection: boolean;
  deleted_at: number | null;
  revision: number;
  rotation_due_at: number | null;
}

export interface VersionRow {
  id: string;
  key_id: string;
  status: string;
  algorithm: string;
  created_at: number;
  destroy_at: number | null;
  hosted_by_hsm: boolean;
}

export interface OperationRow {
  id: string;
  resource_id: string;
  created_by: string;
  created_at: number;
  modified_at: number;
  description: string;
  done: boolean;
  metadata: string;
  response: string | null;
  error: string | null;
  idempotency_key: string | null;
}

export interface PrincipalRow {
  id: string;
  type: string;
  name: string;
  created_at: number;
  admin: boolean;
}

export interface TokenRow {
  id: string;
  principal_id: string;
  secret_hash: Buffer;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

const INT8_OID = 20;
const JSON_OID = 114;
const JSONB_OID = 3802;

/** BIGINT as a JavaScript number; a value beyond 2^53 fails the query rather than losing digits. */
export function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`BIGINT ${text} is not a safe integer`);
  return n;
}

/**
 * The pool's type parsers (pg's global ones are left alone): BIGINT (times, revisions, counts)
 * as numbers, JSON as its text for row-mapping to parse, everything else as pg parses it (BYTEA as
 * a fresh Buffer, BOOLEAN as boolean).
 */
export const TYPE_PARSERS: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (format === undefined || format === 'text') {
      if (oid === INT8_OID) return parseInt8;
      if (oid === JSON_OID || oid === JSONB_OID) return (text: string) => text;
    }
    return format === undefined ? pg.types.getTypeParser(oid) : pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** `{ [name]: value }` when the column holds a value, `{}` when it is NULL. */
function optional<K extends string, V>(name: K, value: V | null): { [P in K]?: V } {
  return value === null ? {} : ({ [name]: value } as { [P in K]: V });
}

const nullable = <V>(value: V | undefined): V | null => value ?? null;
const json = (value: unknown): string => JSON.stringify(value);

export function keyToRow(key: SymmetricKey): KeyRow {
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
    deletion_protection: key.deletionProtection,
    deleted_at: nullable(key.deletedAt),
    revision: key.revision,
    rotation_due_at: nullable(rotationDueAt(key)),
  };
}

export function rowToKey(row: KeyRow): SymmetricKey {
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
    deletionProtection: row.deletion_protection,
    ...optional('deletedAt', row.deleted_at),
    revision: row.revision,
  };
}

export function versionToRow(v: KeyVersion): VersionRow {
  return {
    id: v.id,
    key_id: v.keyId,
    status: v.status,
    algorithm: v.algorithm,
    created_at: v.createdAt,
    destroy_at: nullable(v.destroyAt),
    hosted_by_hsm: v.hostedByHsm,
  };
}

export function rowToVersion(row: VersionRow): KeyVersion {
  return {
    id: row.id,
    keyId: row.key_id,
    status: row.status as VersionStatus,
    algorithm: row.algorithm as SymmetricAlgorithm,
    createdAt: row.created_at,
    ...optional('destroyAt', row.destroy_at),
    hostedByHsm: row.hosted_by_hsm,
  };
}

export function operationToRow(op: Operation): OperationRow {
  return {
    id: op.id,
    resource_id: op.resourceId,
    created_by: op.createdBy,
    created_at: op.createdAt,
    modified_at: op.modifiedAt,
    description: op.description,
    done: op.done,
    metadata: json(op.metadata),
    response: op.response === undefined ? null : json(op.response),
    error: op.error === undefined ? null : json(op.error),
    idempotency_key: nullable(op.idempotencyKey),
  };
}

export function rowToOperation(row: OperationRow): Operation {
  return {
    id: row.id,
    description: row.description,
    createdAt: row.created_at,
    createdBy: row.created_by,
    modifiedAt: row.modified_at,
    done: row.done,
    metadata: JSON.parse(row.metadata) as OperationMetadata,
    ...optional('response', row.response === null ? null : (JSON.parse(row.response) as OperationResponse)),
    ...optional('error', row.error === null ? null : (JSON.parse(row.error) as Operation['error'])),
    resourceId: row.resource_id,
    ...optional('idempotencyKey', row.idempotency_key),
  };
}

export function principalToRow(p: Principal): PrincipalRow {
  return { id: p.id, type: p.type, name: p.name, created_at: p.createdAt, admin: p.admin };
}

export function rowToPrincipal(row: PrincipalRow): Principal {
  return { id: row.id, type: row.type as SubjectType, name: row.name, createdAt: row.created_at, admin: row.admin };
}

export function tokenToRow(t: TokenRecord): TokenRow {
  return {
    id: t.id,
    principal_id: t.principalId,
    secret_hash: t.secretHash,
    created_at: t.createdAt,
    expires_at: nullable(t.expiresAt),
    revoked_at: nullable(t.revokedAt),
  };
}

export function rowToToken(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    principalId: row.principal_id,
    secretHash: row.secret_hash,
    createdAt: row.created_at,
    ...optional('expiresAt', row.expires_at),
    ...optional('revokedAt', row.revoked_at),
  };
}
