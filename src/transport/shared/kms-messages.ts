import { create, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { anyPack, durationMs, EmptySchema, durationFromMs, timestampFromMs, type Any, type Duration } from '@bufbuild/protobuf/wkt';
import { ERR } from '../../errors/kms-error.js';
import type { KeyStatus, KeyVersion, SymmetricAlgorithm as Algorithm } from '../../domain/key.js';
import type { KeyView, Operation as DomainOperation, OperationMetadata, OperationResponse } from '../../domain/operation.js';
import {
  SymmetricAlgorithm,
  SymmetricKey_Status,
  SymmetricKeySchema,
  SymmetricKeyVersion_Status,
  SymmetricKeyVersionSchema,
  type SymmetricKey,
  type SymmetricKeyVersion,
} from '../../gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import {
  CancelSymmetricKeyVersionDestructionMetadataSchema,
  CreateSymmetricKeyMetadataSchema,
  DeleteSymmetricKeyMetadataSchema,
  RotateSymmetricKeyMetadataSchema,
  ScheduleSymmetricKeyVersionDestructionMetadataSchema,
  SetPrimarySymmetricKeyVersionMetadataSchema,
  UpdateSymmetricKeyMetadataSchema,
} from '../../gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { OperationSchema, type Operation } from '../../gen/yandex/cloud/operation/operation_pb.js';
import { SetAccessBindingsMetadataSchema, UpdateAccessBindingsMetadataSchema } from '../../gen/yandex/cloud/access/access_pb.js';
import { StatusSchema } from '../../gen/google/rpc/status_pb.js';
import { UPDATABLE_FIELDS, type UpdatableField } from '../../services/keys/key-service.js';

// Domain ⇄ protobuf messages, shared by REST (proto3 JSON) and gRPC (binary): the one place where
// proto names meet domain names.

export function algorithmFromPb(a: SymmetricAlgorithm): Algorithm | undefined {
  return a === SymmetricAlgorithm.SYMMETRIC_ALGORITHM_UNSPECIFIED ? undefined : (SymmetricAlgorithm[a] as Algorithm);
}

export const algorithmToPb = (a: Algorithm): SymmetricAlgorithm => SymmetricAlgorithm[a];

export function keyStatusFromPb(s: SymmetricKey_Status): KeyStatus | 'STATUS_UNSPECIFIED' {
  return SymmetricKey_Status[s] as KeyStatus | 'STATUS_UNSPECIFIED';
}

/** Durations are kept in milliseconds; finer fractions of a second are not meaningful for KMS periods. */
export function durationToMs(d: Duration | undefined, field: string): number | undefined {
  if (d === undefined) return undefined;
  const ms = durationMs(d);
  if (!Number.isSafeInteger(Math.round(ms)) || ms <= 0) throw ERR.field(field, 'must be a positive duration');
  return Math.round(ms);
}

/** update_mask paths, as gRPC clients (snake_case) or REST clients (lowerCamelCase) write them. */
export function updateFieldsFromMask(paths: readonly string[]): Set<UpdatableField> {
  const fields = new Set<UpdatableField>();
  for (const path of paths) {
    const snake = path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (!(UPDATABLE_FIELDS as readonly string[]).includes(snake)) {
      throw ERR.field('update_mask', `"${path}" is not an updatable field (allowed: ${UPDATABLE_FIELDS.join(', ')})`);
    }
    fields.add(snake as UpdatableField);
  }
  return fields;
}

export function versionToPb(v: KeyVersion, primary: boolean): SymmetricKeyVersion {
  return create(SymmetricKeyVersionSchema, {
    id: v.id,
    keyId: v.keyId,
    status: SymmetricKeyVersion_Status[v.status],
    algorithm: algorithmToPb(v.algorithm),
    createdAt: timestampFromMs(v.createdAt),
    primary,
    ...(v.destroyAt === undefined ? {} : { destroyAt: timestampFromMs(v.destroyAt) }),
    hostedByHsm: v.hostedByHsm,
  });
}

export function keyToPb({ key, primaryVersion }: KeyView): SymmetricKey {
  return create(SymmetricKeySchema, {
    id: key.id,
    folderId: key.folderId,
    createdAt: timestampFromMs(key.createdAt),
    name: key.name,
    description: key.description,
    labels: { ...key.labels },
    status: SymmetricKey_Status[key.status],
    primaryVersion: versionToPb(primaryVersion, true),
    defaultAlgorithm: algorithmToPb(key.defaultAlgorithm),
    ...(key.rotatedAt === undefined ? {} : { rotatedAt: timestampFromMs(key.rotatedAt) }),
    ...(key.rotationPeriodMs === undefined ? {} : { rotationPeriod: durationFromMs(key.rotationPeriodMs) }),
    deletionProtection: key.deletionProtection,
  });
}

function pack<D extends DescMessage>(schema: D, init: Parameters<typeof create<D>>[1]): Any {
  return anyPack(schema, create(schema, init) as MessageShape<D>);
}

function metadataToAny(m: OperationMetadata): Any {
  switch (m.type) {
    case 'CreateSymmetricKeyMetadata':
      return pack(CreateSymmetricKeyMetadataSchema, { keyId: m.keyId, primaryVersionId: m.primaryVersionId });
    case 'UpdateSymmetricKeyMetadata':
      return pack(UpdateSymmetricKeyMetadataSchema, { keyId: m.keyId });
    case 'DeleteSymmetricKeyMetadata':
      return pack(DeleteSymmetricKeyMetadataSchema, { keyId: m.keyId });
    case 'SetPrimarySymmetricKeyVersionMetadata':
      return pack(SetPrimarySymmetricKeyVersionMetadataSchema, { keyId: m.keyId, versionId: m.versionId });
    case 'ScheduleSymmetricKeyVersionDestructionMetadata':
      return pack(ScheduleSymmetricKeyVersionDestructionMetadataSchema, {
        keyId: m.keyId,
        versionId: m.versionId,
        destroyAt: timestampFromMs(m.destroyAt),
      });
    case 'CancelSymmetricKeyVersionDestructionMetadata':
      return pack(CancelSymmetricKeyVersionDestructionMetadataSchema, { keyId: m.keyId, versionId: m.versionId });
    case 'RotateSymmetricKeyMetadata':
      return pack(RotateSymmetricKeyMetadataSchema, { keyId: m.keyId, newPrimaryVersionId: m.newPrimaryVersionId });
    case 'SetAccessBindingsMetadata':
      return pack(SetAccessBindingsMetadataSchema, { resourceId: m.resourceId });
    case 'UpdateAccessBindingsMetadata':
      return pack(UpdateAccessBindingsMetadataSchema, { resourceId: m.resourceId });
  }
}

function responseToAny(r: OperationResponse): Any {
  switch (r.type) {
    case 'SymmetricKey':
      return anyPack(SymmetricKeySchema, keyToPb(r.view));
    case 'SymmetricKeyVersion':
      return anyPack(SymmetricKeyVersionSchema, versionToPb(r.version, r.primary));
    case 'Empty':
      return anyPack(EmptySchema, create(EmptySchema));
  }
}

export function operationToPb(op: DomainOperation): Operation {
  const result: Operation['result'] = op.error
    ? { case: 'error', value: create(StatusSchema, { code: op.error.code, message: op.error.message }) }
    : op.response
      ? { case: 'response', value: responseToAny(op.response) }
      : { case: undefined };
  return create(OperationSchema, {
    id: op.id,
    description: op.description,
    createdAt: timestampFromMs(op.createdAt),
    createdBy: op.createdBy,
    modifiedAt: timestampFromMs(op.modifiedAt),
    done: op.done,
    metadata: metadataToAny(op.metadata),
    result,
  });
}

/** page_size arrives as int64 (bigint); the validator has already bounded it to 0..1000. */
export const pageSize = (n: bigint): number => Number(n);
