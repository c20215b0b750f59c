import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { FieldMaskSchema } from '@bufbuild/protobuf/wkt';
import { Code, isKmsError } from '../../errors/kms-error.js';
import {
  AccessBindingAction,
  ListAccessBindingsRequestSchema,
  SetAccessBindingsRequestSchema,
  UpdateAccessBindingsRequestSchema,
} from '../../gen/yandex/cloud/access/access_pb.js';
import {
  GenerateDataKeyRequestSchema,
  SymmetricDecryptRequestSchema,
  SymmetricEncryptRequestSchema,
  SymmetricReEncryptRequestSchema,
} from '../../gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { SymmetricAlgorithm, SymmetricKey_Status } from '../../gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import {
  CreateSymmetricKeyRequestSchema,
  ListSymmetricKeysRequestSchema,
  ListSymmetricKeyVersionsRequestSchema,
  UpdateSymmetricKeyRequestSchema,
} from '../../gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { GetOperationRequestSchema } from '../../gen/yandex/cloud/operation/operation_service_pb.js';
import { validateRequest } from './validation.js';

// The field rules are read from the (yandex.cloud.*) options in proto/ (SPEC.md §3.5); these
// tests pin the limits a client meets, through the generated messages.

function valid<D extends DescMessage>(desc: D, init: MessageInitShape<D>): void {
  assert.doesNotThrow(() => validateRequest(desc, create(desc, init)));
}

/** Expects INVALID_ARGUMENT whose message starts with "Request validation error: <field>: <problem>". */
function invalid<D extends DescMessage>(desc: D, init: MessageInitShape<D>, field: string, problem?: RegExp): string {
  let message = '';
  assert.throws(
    () => validateRequest(desc, create(desc, init)),
    (e: unknown) => {
      assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
      assert.equal(e.code, Code.InvalidArgument);
      assert.ok(
        e.message.startsWith(`Request validation error: ${field}: `),
        `"${e.message}" should start with "Request validation error: ${field}: "`,
      );
      if (problem) assert.match(e.message.slice(`Request validation error: ${field}: `.length), problem);
      message = e.message;
      return true;
    },
  );
  return message;
}

const createKey = { folderId: 'b1gfolder', defaultAlgorithm: SymmetricAlgorithm.AES_256 };

describe('required', () => {
  it('names the field exactly: "Request validation error: folder_id: required"', () => {
    const message = invalid(CreateSymmetricKeyRequestSchema, { defaultAlgorithm: SymmetricAlgorithm.AES_256 }, 'folder_id');
    assert.equal(message, 'Request validation error: folder_id: required');
  });

  it('a complete request passes', () => {
    valid(CreateSymmetricKeyRequestSchema, createKey);
    valid(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: Buffer.from('x') });
    valid(GetOperationRequestSchema, { operationId: 'abj' });
  });

  it('strings: an empty required string is refused', () => {
    invalid(SymmetricEncryptRequestSchema, { plaintext: Buffer.from('x') }, 'key_id', /^required$/);
    invalid(SymmetricReEncryptRequestSchema, { keyId: 'k', ciphertext: Buffer.from('c') }, 'source_key_id', /^required$/);
    invalid(GetOperationRequestSchema, {}, 'operation_id', /^required$/);
  });

  it('bytes: an empty plaintext or ciphertext is refused', () => {
    invalid(SymmetricEncryptRequestSchema, { keyId: 'k' }, 'plaintext', /^required$/);
    invalid(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: new Uint8Array(0) }, 'plaintext', /^required$/);
    invalid(SymmetricDecryptRequestSchema, { keyId: 'k' }, 'ciphertext', /^required$/);
  });

  it('enums: the zero value of a required enum is refused', () => {
    invalid(CreateSymmetricKeyRequestSchema, { folderId: 'f' }, 'default_algorithm', /^required$/);
    invalid(
      CreateSymmetricKeyRequestSchema,
      { folderId: 'f', defaultAlgorithm: SymmetricAlgorithm.SYMMETRIC_ALGORITHM_UNSPECIFIED },
      'default_algorithm',
      /^required$/,
    );
  });

  it('messages: an absent required message is refused, a present empty one is not', () => {
    invalid(UpdateSymmetricKeyRequestSchema, { keyId: 'k' }, 'update_mask', /^required$/);
    valid(UpdateSymmetricKeyRequestSchema, { keyId: 'k', updateMask: create(FieldMaskSchema, { paths: ['name'] }) });
  });

  it('nested messages are checked, and the path names the item', () => {
    invalid(SetAccessBindingsRequestSchema, { resourceId: 'k', accessBindings: [{ roleId: 'kms.admin' }] }, 'access_bindings[0].subject', /^required$/);
    invalid(
      SetAccessBindingsRequestSchema,
      { resourceId: 'k', accessBindings: [{ roleId: 'r', subject: { id: 'u', type: 'userAccount' } }, { roleId: 'r', subject: { id: 'u' } }] },
      'access_bindings[1].subject.type',
      /^required$/,
    );
    invalid(
      UpdateAccessBindingsRequestSchema,
      { resourceId: 'k', accessBindingDeltas: [{ accessBinding: { roleId: 'r', subject: { id: 'u', type: 't' } } }] },
      'access_binding_deltas[0].action',
      /^required$/,
    );
  });
});

describe('length', () => {
  it('strings are measured in characters (code points), not bytes or UTF-16 units', () => {
    for (const ch of ['a', 'é', 'я', '中', '😀', '\u{10FFFF}']) {
      valid(CreateSymmetricKeyRequestSchema, { ...createKey, folderId: ch.repeat(50) });
      invalid(CreateSymmetricKeyRequestSchema, { ...createKey, folderId: ch.repeat(51) }, 'folder_id', /at most 50 characters, got 51$/);
    }
    valid(CreateSymmetricKeyRequestSchema, { ...createKey, name: '😀'.repeat(100), description: 'ж'.repeat(1024) });
    invalid(CreateSymmetricKeyRequestSchema, { ...createKey, name: '😀'.repeat(101) }, 'name');
    invalid(CreateSymmetricKeyRequestSchema, { ...createKey, description: 'ж'.repeat(1025) }, 'description');
  });

  it('a mix of astral and plain characters counts each as one', () => {
    const fifty = '😀a'.repeat(25);
    assert.equal(fifty.length, 75);
    valid(SymmetricEncryptRequestSchema, { keyId: fifty, plaintext: Buffer.from('x') });
    invalid(SymmetricEncryptRequestSchema, { keyId: `${fifty}😀`, plaintext: Buffer.from('x') }, 'key_id');
  });

  it('bytes are measured in bytes', () => {
    valid(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: new Uint8Array(32768), aadContext: new Uint8Array(8192) });
    invalid(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: new Uint8Array(32769) }, 'plaintext', /at most 32768 bytes, got 32769$/);
    invalid(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: Buffer.from('x'), aadContext: new Uint8Array(8193) }, 'aad_context', /bytes/);
    invalid(
      SymmetricReEncryptRequestSchema,
      { keyId: 'k', sourceKeyId: 's', ciphertext: Buffer.from('c'), sourceAadContext: new Uint8Array(8193) },
      'source_aad_context',
    );
  });

  it('page tokens: 256 characters for List, 100 for ListVersions', () => {
    valid(ListSymmetricKeysRequestSchema, { folderId: 'f', pageToken: 't'.repeat(256) });
    invalid(ListSymmetricKeysRequestSchema, { folderId: 'f', pageToken: 't'.repeat(257) }, 'page_token');
    valid(ListSymmetricKeyVersionsRequestSchema, { keyId: 'k', pageToken: 't'.repeat(100) });
    invalid(ListSymmetricKeyVersionsRequestSchema, { keyId: 'k', pageToken: 't'.repeat(101) }, 'page_token');
  });
});

describe('labels', () => {
  const withLabels = (labels: Record<string, string>) => ({ ...createKey, labels });
  const sixtyFour = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, `v${i}`]));

  it('allow up to 64 entries', () => {
    valid(CreateSymmetricKeyRequestSchema, withLabels(sixtyFour));
    invalid(CreateSymmetricKeyRequestSchema, withLabels({ ...sixtyFour, k64: 'v' }), 'labels', /at most 64 entries, got 65$/);
  });

  it('keys match [a-z][-_0-9a-z]* and are 1-63 characters', () => {
    for (const k of ['a', 'env', 'a-_09z', 'x'.repeat(63)]) valid(CreateSymmetricKeyRequestSchema, withLabels({ [k]: 'v' }));
    for (const k of ['', 'Env', '1abc', '-a', '_a', 'a.b', 'a b', 'aé', 'x'.repeat(64)]) {
      invalid(CreateSymmetricKeyRequestSchema, withLabels({ [k]: 'v' }), `labels key ${JSON.stringify(k)}`);
    }
  });

  it('values match [-_0-9a-z]* and are at most 63 characters; empty is fine', () => {
    for (const v of ['', 'prod', '-_09az', '1', 'x'.repeat(63)]) valid(CreateSymmetricKeyRequestSchema, withLabels({ env: v }));
    for (const v of ['Prod', 'a b', 'a.b', 'é', 'x'.repeat(64)]) {
      invalid(CreateSymmetricKeyRequestSchema, withLabels({ env: v }), 'labels["env"]');
    }
  });

  it('the same rules hold in Update', () => {
    const mask = create(FieldMaskSchema, { paths: ['labels'] });
    valid(UpdateSymmetricKeyRequestSchema, { keyId: 'k', updateMask: mask, labels: { env: 'prod' } });
    invalid(UpdateSymmetricKeyRequestSchema, { keyId: 'k', updateMask: mask, labels: { Env: 'prod' } }, 'labels key "Env"');
    invalid(UpdateSymmetricKeyRequestSchema, { keyId: 'k', updateMask: mask, labels: { ...sixtyFour, k64: 'v' } }, 'labels');
  });
});

describe('page_size', () => {
  it('accepts 0 to 1000', () => {
    for (const n of [0n, 1n, 100n, 1000n]) {
      valid(ListSymmetricKeysRequestSchema, { folderId: 'f', pageSize: n });
      valid(ListSymmetricKeyVersionsRequestSchema, { keyId: 'k', pageSize: n });
      valid(ListAccessBindingsRequestSchema, { resourceId: 'k', pageSize: n });
    }
  });

  it('refuses more than 1000 and negative values', () => {
    for (const n of [1001n, 1n << 40n, -1n, -1000n, -(1n << 62n)]) {
      invalid(ListSymmetricKeysRequestSchema, { folderId: 'f', pageSize: n }, 'page_size');
      invalid(ListSymmetricKeyVersionsRequestSchema, { keyId: 'k', pageSize: n }, 'page_size');
      invalid(ListAccessBindingsRequestSchema, { resourceId: 'k', pageSize: n }, 'page_size');
    }
  });
});

describe('enums', () => {
  it('refuses enum numbers the proto does not define', () => {
    invalid(CreateSymmetricKeyRequestSchema, { folderId: 'f', defaultAlgorithm: 99 as SymmetricAlgorithm }, 'default_algorithm', /unknown enum value 99/);
    invalid(CreateSymmetricKeyRequestSchema, { folderId: 'f', defaultAlgorithm: -1 as SymmetricAlgorithm }, 'default_algorithm');
    invalid(GenerateDataKeyRequestSchema, { keyId: 'k', dataKeySpec: 6 as SymmetricAlgorithm }, 'data_key_spec');
    invalid(
      UpdateSymmetricKeyRequestSchema,
      { keyId: 'k', updateMask: create(FieldMaskSchema, { paths: ['status'] }), status: 4 as SymmetricKey_Status },
      'status',
    );
    invalid(
      UpdateAccessBindingsRequestSchema,
      { resourceId: 'k', accessBindingDeltas: [{ action: 3 as AccessBindingAction, accessBinding: { roleId: 'r', subject: { id: 'u', type: 't' } } }] },
      'access_binding_deltas[0].action',
    );
  });

  it('accepts every defined value, including the unspecified one where not required', () => {
    for (const spec of [0, 1, 2, 3, 4, 5] as SymmetricAlgorithm[]) valid(GenerateDataKeyRequestSchema, { keyId: 'k', dataKeySpec: spec });
  });
});

describe('list sizes', () => {
  it('UpdateAccessBindings needs 1 to 1000 deltas', () => {
    invalid(UpdateAccessBindingsRequestSchema, { resourceId: 'k' }, 'access_binding_deltas', /between 1 and 1000 items, got 0$/);
    const delta = { action: AccessBindingAction.ADD, accessBinding: { roleId: 'r', subject: { id: 'u', type: 't' } } };
    valid(UpdateAccessBindingsRequestSchema, { resourceId: 'k', accessBindingDeltas: [delta] });
  });
});

describe('NUL characters', () => {
  it('are refused in every string field, so the SQLite and PostgreSQL stores accept the same values', () => {
    invalid(CreateSymmetricKeyRequestSchema, { ...createKey, name: 'a\u0000b' }, 'name', /NUL/);
    invalid(CreateSymmetricKeyRequestSchema, { ...createKey, description: '\u0000' }, 'description', /NUL/);
    invalid(CreateSymmetricKeyRequestSchema, { ...createKey, folderId: 'b1g\u0000' }, 'folder_id', /NUL/);
    valid(CreateSymmetricKeyRequestSchema, { ...createKey, name: 'tab\tand newline\n are fine' });
  });
});
