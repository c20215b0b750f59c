import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, type JsonObject } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { DAY_MS, type KeyVersion, type SymmetricKey } from '../../domain/key.js';
import type { KeyView, Operation, OperationMetadata, OperationResponse } from '../../domain/operation.js';
import { Code, isKmsError } from '../../errors/kms-error.js';
import { SymmetricAlgorithm, SymmetricKey_Status, SymmetricKeySchema, SymmetricKeyVersionSchema } from '../../gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import { OperationSchema } from '../../gen/yandex/cloud/operation/operation_pb.js';
import { messageToJson } from '../rest/json-codec.js';
import {
  algorithmFromPb,
  algorithmToPb,
  durationToMs,
  keyStatusFromPb,
  keyToPb,
  operationToPb,
  updateFieldsFromMask,
  versionToPb,
} from './kms-messages.js';

// Domain objects as clients see them: protobuf messages, and through them the REST JSON.

const T0 = Date.UTC(2026, 6, 23, 8, 0, 0);
const KEY_ID = 'abjkey00000000000001';
const V1 = 'abjversion0000000001';
const V2 = 'abjversion0000000002';

const baseKey: SymmetricKey = {
  id: KEY_ID,
  folderId: 'b1gfolder',
  name: 'app',
  description: 'for the app',
  labels: { env: 'prod' },
  status: 'ACTIVE',
  primaryVersionId: V1,
  defaultAlgorithm: 'AES_256',
  createdAt: T0,
  deletionProtection: false,
  revision: 3,
};
const primary: KeyVersion = { id: V1, keyId: KEY_ID, status: 'ACTIVE', algorithm: 'AES_128', createdAt: T0, hostedByHsm: false };
const view: KeyView = { key: baseKey, primaryVersion: primary };

const json = (op: Operation) => messageToJson(OperationSchema, operationToPb(op)) as JsonObject;

function op(metadata: OperationMetadata, response?: OperationResponse, error?: Operation['error']): Operation {
  return {
    id: 'abjoperation00000001',
    description: 'some change',
    createdAt: T0,
    createdBy: 'ajeadmin',
    modifiedAt: T0 + 5,
    done: true,
    metadata,
    ...(response ? { response } : {}),
    ...(error ? { error } : {}),
    resourceId: KEY_ID,
  };
}

function throwsInvalid(fn: () => unknown, mentions: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
    assert.equal(e.code, Code.InvalidArgument);
    assert.match(e.message, mentions);
    return true;
  });
}

describe('a key as the API shows it', () => {
  it('has every field with its proto name and the primary version embedded', () => {
    assert.deepEqual(messageToJson(SymmetricKeySchema, keyToPb(view)), {
      id: KEY_ID,
      folderId: 'b1gfolder',
      createdAt: '2026-07-23T08:00:00Z',
      name: 'app',
      description: 'for the app',
      labels: { env: 'prod' },
      status: 'ACTIVE',
      primaryVersion: { id: V1, keyId: KEY_ID, status: 'ACTIVE', algorithm: 'AES_128', createdAt: '2026-07-23T08:00:00Z', primary: true },
      defaultAlgorithm: 'AES_256',
    });
  });

  it('shows rotatedAt, rotationPeriod and deletionProtection only when set', () => {
    const k = { ...baseKey, rotatedAt: T0 + 1500, rotationPeriodMs: 30 * DAY_MS, deletionProtection: true, status: 'INACTIVE' as const };
    const j = messageToJson(SymmetricKeySchema, keyToPb({ key: k, primaryVersion: primary })) as JsonObject;
    assert.equal(j.rotatedAt, '2026-07-23T08:00:01.500Z');
    assert.equal(j.rotationPeriod, '2592000s');
    assert.equal(j.deletionProtection, true);
    assert.equal(j.status, 'INACTIVE');
  });

  it('never exposes internal fields (revision, deletedAt)', () => {
    const j = messageToJson(SymmetricKeySchema, keyToPb({ key: { ...baseKey, deletedAt: T0 + 1 }, primaryVersion: primary })) as JsonObject;
    assert.ok(!('revision' in j) && !('deletedAt' in j));
    assert.ok(!JSON.stringify(j).includes('"3"') && !JSON.stringify(j).includes('revision'));
  });

  it('copies labels instead of sharing the domain object', () => {
    const pb = keyToPb(view);
    pb.labels.extra = 'x';
    assert.deepEqual(baseKey.labels, { env: 'prod' });
  });
});

describe('a version as the API shows it', () => {
  it('has no destroyAt unless it is scheduled for destruction', () => {
    assert.deepEqual(messageToJson(SymmetricKeyVersionSchema, versionToPb({ ...primary, id: V2, algorithm: 'AES_192' }, false)), {
      id: V2,
      keyId: KEY_ID,
      status: 'ACTIVE',
      algorithm: 'AES_192',
      createdAt: '2026-07-23T08:00:00Z',
    });
    const scheduled: KeyVersion = { ...primary, id: V2, status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + 7 * DAY_MS };
    assert.deepEqual(messageToJson(SymmetricKeyVersionSchema, versionToPb(scheduled, false)), {
      id: V2,
      keyId: KEY_ID,
      status: 'SCHEDULED_FOR_DESTRUCTION',
      algorithm: 'AES_128',
      createdAt: '2026-07-23T08:00:00Z',
      destroyAt: '2026-07-30T08:00:00Z',
    });
  });

  it('shows DESTROYED and hostedByHsm', () => {
    const j = messageToJson(
      SymmetricKeyVersionSchema,
      versionToPb({ ...primary, status: 'DESTROYED', algorithm: 'AES_256_HSM', hostedByHsm: true }, true),
    ) as JsonObject;
    assert.equal(j.status, 'DESTROYED');
    assert.equal(j.algorithm, 'AES_256_HSM');
    assert.equal(j.hostedByHsm, true);
    assert.equal(j.primary, true);
  });
});

describe('operations', () => {
  const KMS = 'type.googleapis.com/yandex.cloud.kms.v1.';
  const keyResponse: OperationResponse = { type: 'SymmetricKey', view };
  const versionResponse: OperationResponse = { type: 'SymmetricKeyVersion', version: { ...primary, id: V2 }, primary: false };
  const destroyAt = T0 + 7 * DAY_MS;

  // SPEC.md §5.3: metadata and response type URLs per method.
  const CASES: [OperationMetadata, OperationResponse, string, JsonObject, string][] = [
    [{ type: 'CreateSymmetricKeyMetadata', keyId: KEY_ID, primaryVersionId: V1 }, keyResponse, `${KMS}CreateSymmetricKeyMetadata`, { keyId: KEY_ID, primaryVersionId: V1 }, `${KMS}SymmetricKey`],
    [{ type: 'UpdateSymmetricKeyMetadata', keyId: KEY_ID }, keyResponse, `${KMS}UpdateSymmetricKeyMetadata`, { keyId: KEY_ID }, `${KMS}SymmetricKey`],
    [{ type: 'DeleteSymmetricKeyMetadata', keyId: KEY_ID }, keyResponse, `${KMS}DeleteSymmetricKeyMetadata`, { keyId: KEY_ID }, `${KMS}SymmetricKey`],
    [
      { type: 'SetPrimarySymmetricKeyVersionMetadata', keyId: KEY_ID, versionId: V2 },
      keyResponse,
      `${KMS}SetPrimarySymmetricKeyVersionMetadata`,
      { keyId: KEY_ID, versionId: V2 },
      `${KMS}SymmetricKey`,
    ],
    [
      { type: 'ScheduleSymmetricKeyVersionDestructionMetadata', keyId: KEY_ID, versionId: V2, destroyAt },
      versionResponse,
      `${KMS}ScheduleSymmetricKeyVersionDestructionMetadata`,
      { keyId: KEY_ID, versionId: V2, destroyAt: '2026-07-30T08:00:00Z' },
      `${KMS}SymmetricKeyVersion`,
    ],
    [
      { type: 'CancelSymmetricKeyVersionDestructionMetadata', keyId: KEY_ID, versionId: V2 },
      versionResponse,
      `${KMS}CancelSymmetricKeyVersionDestructionMetadata`,
      { keyId: KEY_ID, versionId: V2 },
      `${KMS}SymmetricKeyVersion`,
    ],
    [
      { type: 'RotateSymmetricKeyMetadata', keyId: KEY_ID, newPrimaryVersionId: V2 },
      keyResponse,
      `${KMS}RotateSymmetricKeyMetadata`,
      { keyId: KEY_ID, newPrimaryVersionId: V2 },
      `${KMS}SymmetricKey`,
    ],
  ];

  for (const [metadata, response, metadataType, metadataFields, responseType] of CASES) {
    it(`${metadata.type}: metadata "@type" ${metadataType.slice(20)}, response ${responseType.slice(20)}`, () => {
      const j = json(op(metadata, response));
      assert.deepEqual(j.metadata, { '@type': metadataType, ...metadataFields });
      assert.equal((j.response as JsonObject)['@type'], responseType);
      assert.equal(j.error, undefined);
    });
  }

  it('covers every metadata type of the domain', () => {
    assert.equal(new Set(CASES.map(([m]) => m.type)).size, 7);
  });

  it('a done operation carries its envelope fields', () => {
    const j = json(op({ type: 'RotateSymmetricKeyMetadata', keyId: KEY_ID, newPrimaryVersionId: V2 }, keyResponse));
    assert.equal(j.id, 'abjoperation00000001');
    assert.equal(j.description, 'some change');
    assert.equal(j.createdAt, '2026-07-23T08:00:00Z');
    assert.equal(j.modifiedAt, '2026-07-23T08:00:00.005Z');
    assert.equal(j.createdBy, 'ajeadmin');
    assert.equal(j.done, true);
    const response = j.response as JsonObject;
    assert.equal(response.id, KEY_ID);
    assert.equal((response.primaryVersion as JsonObject).primary, true);
  });

  it('a version response tells whether the version is primary', () => {
    const j = json(op({ type: 'CancelSymmetricKeyVersionDestructionMetadata', keyId: KEY_ID, versionId: V2 }, versionResponse));
    assert.deepEqual(j.response, {
      '@type': `${KMS}SymmetricKeyVersion`,
      id: V2,
      keyId: KEY_ID,
      status: 'ACTIVE',
      algorithm: 'AES_128',
      createdAt: '2026-07-23T08:00:00Z',
    });
  });

  it('an operation with an error carries google.rpc.Status and no response', () => {
    const j = json(op({ type: 'DeleteSymmetricKeyMetadata', keyId: KEY_ID }, keyResponse, { code: Code.FailedPrecondition, message: 'nope' }));
    assert.deepEqual(j.error, { code: 9, message: 'nope' });
    assert.equal(j.response, undefined);
    assert.equal(j.done, true);
    assert.equal((j.metadata as JsonObject)['@type'], `${KMS}DeleteSymmetricKeyMetadata`);
  });

  it('an operation with neither error nor response has no result', () => {
    const pb = operationToPb({ ...op({ type: 'UpdateSymmetricKeyMetadata', keyId: KEY_ID }), done: false });
    assert.equal(pb.result.case, undefined);
    const j = messageToJson(OperationSchema, pb) as JsonObject;
    assert.ok(!('done' in j) && !('response' in j) && !('error' in j));
  });
});

describe('updateFieldsFromMask', () => {
  const FIELDS = ['name', 'description', 'status', 'labels', 'default_algorithm', 'rotation_period', 'deletion_protection'];
  const CAMEL = ['name', 'description', 'status', 'labels', 'defaultAlgorithm', 'rotationPeriod', 'deletionProtection'];

  it('accepts the 7 updatable fields in snake_case', () => {
    assert.deepEqual([...updateFieldsFromMask(FIELDS)].sort(), [...FIELDS].sort());
  });

  it('accepts the 7 updatable fields in lowerCamelCase, as the same fields', () => {
    assert.deepEqual([...updateFieldsFromMask(CAMEL)].sort(), [...FIELDS].sort());
    for (let i = 0; i < FIELDS.length; i++) assert.deepEqual([...updateFieldsFromMask([CAMEL[i]!])], [FIELDS[i]]);
  });

  it('collapses repeats and mixed spellings', () => {
    assert.deepEqual([...updateFieldsFromMask(['defaultAlgorithm', 'default_algorithm', 'name', 'name'])].sort(), ['default_algorithm', 'name']);
  });

  it('refuses immutable and unknown fields with INVALID_ARGUMENT naming update_mask and the path', () => {
    for (const path of ['folder_id', 'folderId', 'id', 'created_at', 'createdAt', 'primary_version', 'rotated_at', 'key_id', 'labels.env', 'Name', 'nope', '']) {
      throwsInvalid(() => updateFieldsFromMask([path]), new RegExp(`^update_mask: "${path.replace('.', '\\.')}"`));
    }
    throwsInvalid(() => updateFieldsFromMask(['name', 'folder_id']), /folder_id/);
  });
});

describe('durations', () => {
  const d = (seconds: bigint, nanos = 0) => create(DurationSchema, { seconds, nanos });

  it('absent stays absent', () => {
    assert.equal(durationToMs(undefined, 'rotation_period'), undefined);
  });

  it('converts to milliseconds', () => {
    assert.equal(durationToMs(d(86400n), 'rotation_period'), DAY_MS);
    assert.equal(durationToMs(d(1n, 500_000_000), 'pending_period'), 1500);
  });

  it('refuses zero and negative durations, naming the field', () => {
    throwsInvalid(() => durationToMs(d(0n), 'rotation_period'), /^rotation_period: /);
    throwsInvalid(() => durationToMs(d(-1n), 'pending_period'), /^pending_period: /);
    throwsInvalid(() => durationToMs(d(0n, -1), 'pending_period'), /^pending_period: /);
  });

  it('keeps the longest proto3 duration (10 000 years) exact, and refuses longer ones that lose precision', () => {
    assert.equal(durationToMs(d(315_576_000_000n), 'rotation_period'), 315_576_000_000_000);
    throwsInvalid(() => durationToMs(d(10n ** 15n), 'rotation_period'), /^rotation_period: /);
  });

  it('never turns a positive duration into zero milliseconds', () => {
    // 1 ns is positive but rounds to 0 ms: it must be refused, not passed on as "0".
    let ms: number | undefined;
    try {
      ms = durationToMs(d(0n, 1), 'rotation_period');
    } catch (e) {
      assert.ok(isKmsError(e) && e.code === Code.InvalidArgument);
      return;
    }
    assert.ok(ms !== undefined && ms > 0, `got ${ms}`);
  });
});

describe('enums', () => {
  it('map algorithms both ways; unspecified has no domain value', () => {
    for (const a of ['AES_128', 'AES_192', 'AES_256', 'AES_256_HSM', 'GOST_R_3412_2015_K'] as const) assert.equal(algorithmFromPb(algorithmToPb(a)), a);
    assert.equal(algorithmToPb('AES_256'), SymmetricAlgorithm.AES_256);
    assert.equal(algorithmFromPb(SymmetricAlgorithm.SYMMETRIC_ALGORITHM_UNSPECIFIED), undefined);
  });

  it('map key statuses by name', () => {
    assert.equal(keyStatusFromPb(SymmetricKey_Status.ACTIVE), 'ACTIVE');
    assert.equal(keyStatusFromPb(SymmetricKey_Status.INACTIVE), 'INACTIVE');
    assert.equal(keyStatusFromPb(SymmetricKey_Status.STATUS_UNSPECIFIED), 'STATUS_UNSPECIFIED');
  });
});
