import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, type DescMessage, type JsonValue, type Message, type MessageInitShape } from '@bufbuild/protobuf';
import { anyPack, durationFromMs, EmptySchema, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, isKmsError } from '../../errors/kms-error.js';
import { GenerateDataKeyRequestSchema, SymmetricEncryptRequestSchema, SymmetricReEncryptRequestSchema } from '../../gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { SymmetricAlgorithm, SymmetricKeySchema, SymmetricKey_Status, type SymmetricKey } from '../../gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import {
  CreateSymmetricKeyMetadataSchema,
  CreateSymmetricKeyRequestSchema,
  ListSymmetricKeysRequestSchema,
  UpdateSymmetricKeyRequestSchema,
  type CreateSymmetricKeyRequest,
  type ListSymmetricKeysRequest,
  type UpdateSymmetricKeyRequest,
} from '../../gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { OperationSchema } from '../../gen/yandex/cloud/operation/operation_pb.js';
import { jsonFromQuery, messageFromJson, messageToJson } from './json-codec.js';

// REST bodies are canonical proto3 JSON plus what the Yandex gateway also accepts (SPEC.md §2.4).

function rejects(desc: DescMessage, json: JsonValue, check: (message: string) => void): void {
  assert.throws(
    () => messageFromJson(desc, json),
    (e: unknown) => {
      assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
      assert.equal(e.code, Code.InvalidArgument, e.message);
      check(e.message);
      return true;
    },
  );
}

const decodeCreate = (json: JsonValue) => messageFromJson(CreateSymmetricKeyRequestSchema, json) as CreateSymmetricKeyRequest;
const decodeUpdate = (json: JsonValue) => messageFromJson(UpdateSymmetricKeyRequestSchema, json) as UpdateSymmetricKeyRequest;
const decodeEncrypt = (json: JsonValue) => messageFromJson(SymmetricEncryptRequestSchema, json) as Message & { plaintext: Uint8Array; aadContext: Uint8Array };

describe('request bodies', () => {
  it('accept lowerCamelCase and snake_case field names alike', () => {
    const camel = decodeCreate({ folderId: 'b1g', defaultAlgorithm: 'AES_128', deletionProtection: true, rotationPeriod: '86400s' });
    const snake = decodeCreate({ folder_id: 'b1g', default_algorithm: 'AES_128', deletion_protection: true, rotation_period: '86400s' });
    assert.deepEqual(snake, camel);
    assert.equal(camel.folderId, 'b1g');
    assert.equal(camel.defaultAlgorithm, SymmetricAlgorithm.AES_128);
    assert.equal(camel.deletionProtection, true);
    assert.equal(camel.rotationPeriod?.seconds, 86400n);
  });

  it('decode updateMask in either spelling to the same snake_case paths', () => {
    const paths = (mask: string) => decodeUpdate({ keyId: 'k', updateMask: mask }).updateMask?.paths;
    assert.deepEqual(paths('name,default_algorithm'), ['name', 'default_algorithm']);
    assert.deepEqual(paths('name,defaultAlgorithm'), ['name', 'default_algorithm']);
    assert.deepEqual(paths('rotationPeriod,deletion_protection'), ['rotation_period', 'deletion_protection']);
    assert.deepEqual(paths('name, description'), ['name', 'description'], 'spaces after commas are tolerated');
    assert.deepEqual(decodeUpdate({ key_id: 'k', update_mask: 'defaultAlgorithm' }).updateMask?.paths, ['default_algorithm']);
  });

  it('refuse an unknown field with INVALID_ARGUMENT naming it', () => {
    rejects(CreateSymmetricKeyRequestSchema, { folderId: 'b1g', defaultAlgoritm: 'AES_256' }, (m) => assert.match(m, /defaultAlgoritm/));
    rejects(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: 'aGk=', context: 'x' }, (m) => assert.match(m, /unknown field "context"/));
  });

  it('refuse a body that is not an object', () => {
    for (const body of [null, [], 'text', 5, true] as JsonValue[]) rejects(CreateSymmetricKeyRequestSchema, body, (m) => assert.match(m, /JSON object/));
  });

  it('refuse invalid base64 without echoing the submitted value', () => {
    const secret = 'SECRET-hunter2-p@ssw0rd!';
    for (const [desc, field, json] of [
      [SymmetricEncryptRequestSchema, 'plaintext', { keyId: 'k', plaintext: secret }],
      [SymmetricEncryptRequestSchema, 'aad_context', { keyId: 'k', plaintext: 'aGk=', aadContext: secret }],
      [SymmetricReEncryptRequestSchema, 'source_aad_context', { keyId: 'k', sourceKeyId: 's', ciphertext: 'aGk=', sourceAadContext: secret }],
    ] as const) {
      rejects(desc, json, (m) => {
        assert.ok(m.startsWith(`${field}: `), m);
        assert.ok(!m.includes('hunter2') && !m.includes('p@ssw0rd') && !m.includes('SECRET'), `message leaks the value: ${m}`);
      });
    }
  });

  it('accept standard, URL-safe, padded and unpadded base64', () => {
    const bytes = Uint8Array.of(0xfb, 0xff, 0xbf, 0x00, 0x10);
    for (const text of ['+/+/ABA=', '-_-_ABA=', '+/+/ABA', '-_-_ABA']) {
      assert.deepEqual(new Uint8Array(decodeEncrypt({ keyId: 'k', plaintext: text }).plaintext), bytes, text);
    }
  });

  it('accept enums by name and by number', () => {
    assert.equal(decodeCreate({ folderId: 'f', defaultAlgorithm: 'AES_192' }).defaultAlgorithm, SymmetricAlgorithm.AES_192);
    assert.equal(decodeCreate({ folderId: 'f', defaultAlgorithm: 2 }).defaultAlgorithm, SymmetricAlgorithm.AES_192);
  });

  it('refuse an unknown enum name, naming the field', () => {
    rejects(CreateSymmetricKeyRequestSchema, { folderId: 'f', defaultAlgorithm: 'AES_512' }, (m) => assert.match(m, /^default_algorithm: /));
  });

  it('refuse a duration that is not proto3 JSON ("24h"), naming the field', () => {
    rejects(CreateSymmetricKeyRequestSchema, { folderId: 'f', rotationPeriod: '24h' }, (m) => assert.match(m, /^rotation_period: /));
  });

  it('refuse a wrongly typed scalar, naming the field', () => {
    rejects(CreateSymmetricKeyRequestSchema, { folderId: 5 }, (m) => assert.match(m, /^folder_id: /));
    rejects(CreateSymmetricKeyRequestSchema, { folderId: 'f', deletionProtection: 'yes' }, (m) => assert.match(m, /^deletion_protection: /));
  });

  it('accept int64 as a JSON string or number', () => {
    const size = (json: JsonValue) => (messageFromJson(ListSymmetricKeysRequestSchema, json) as ListSymmetricKeysRequest).pageSize;
    assert.equal(size({ folderId: 'f', pageSize: '5' }), 5n);
    assert.equal(size({ folderId: 'f', pageSize: 5 }), 5n);
    assert.equal(size({ folderId: 'f', page_size: '1000' }), 1000n);
  });
});

describe('query parameters', () => {
  it('map onto the request message: pageSize=5 becomes page_size 5', () => {
    const json = jsonFromQuery(ListSymmetricKeysRequestSchema, { folderId: 'b1g', pageSize: '5', pageToken: 'tok' });
    const msg = messageFromJson(ListSymmetricKeysRequestSchema, json) as ListSymmetricKeysRequest;
    assert.equal(msg.folderId, 'b1g');
    assert.equal(msg.pageSize, 5n);
    assert.equal(msg.pageToken, 'tok');
  });

  it('accept snake_case names too', () => {
    assert.deepEqual(jsonFromQuery(ListSymmetricKeysRequestSchema, { folder_id: 'b1g', page_size: '7' }), { folderId: 'b1g', pageSize: '7' });
  });

  it('ignore unknown parameters', () => {
    const json = jsonFromQuery(ListSymmetricKeysRequestSchema, { folderId: 'b1g', utm_source: 'x', foo: 'bar', pageSize: undefined });
    assert.deepEqual(json, { folderId: 'b1g' });
    assert.doesNotThrow(() => messageFromJson(ListSymmetricKeysRequestSchema, json));
  });

  it('take the last value of a repeated parameter', () => {
    assert.deepEqual(jsonFromQuery(ListSymmetricKeysRequestSchema, { folderId: ['a', 'b'] }), { folderId: 'b' });
  });

  it('read bools as "true"/"false" and enums by name or number', () => {
    const decode = (query: Record<string, string>) =>
      messageFromJson(GenerateDataKeyRequestSchema, jsonFromQuery(GenerateDataKeyRequestSchema, { keyId: 'k', ...query })) as Message & {
        skipPlaintext: boolean;
        dataKeySpec: SymmetricAlgorithm;
      };
    assert.equal(decode({ skipPlaintext: 'true' }).skipPlaintext, true);
    assert.equal(decode({ skip_plaintext: 'false' }).skipPlaintext, false);
    assert.equal(decode({ dataKeySpec: 'AES_128' }).dataKeySpec, SymmetricAlgorithm.AES_128);
    assert.equal(decode({ dataKeySpec: '2' }).dataKeySpec, SymmetricAlgorithm.AES_192);
    rejects(GenerateDataKeyRequestSchema, jsonFromQuery(GenerateDataKeyRequestSchema, { keyId: 'k', skipPlaintext: 'yes' }), (m) =>
      assert.match(m, /skip_plaintext/),
    );
  });
});

describe('response bodies', () => {
  const T = Date.UTC(2026, 6, 23, 10, 20, 30, 456);

  function symmetricKey(fields: MessageInitShape<typeof SymmetricKeySchema> = {}): SymmetricKey {
    return create(SymmetricKeySchema, { id: 'abjkey', folderId: 'b1g', status: SymmetricKey_Status.ACTIVE, createdAt: timestampFromMs(T), ...fields });
  }

  it('omit fields that hold their default value', () => {
    const json = messageToJson(SymmetricKeySchema, symmetricKey()) as Record<string, JsonValue>;
    assert.deepEqual(Object.keys(json).sort(), ['createdAt', 'folderId', 'id', 'status']);
  });

  it('write lowerCamelCase names, enums by name, Duration as seconds and Timestamp as RFC 3339 UTC', () => {
    const json = messageToJson(
      SymmetricKeySchema,
      symmetricKey({ defaultAlgorithm: SymmetricAlgorithm.AES_256, rotationPeriod: durationFromMs(86_400_000), deletionProtection: true, labels: { env: 'prod' } }),
    );
    assert.deepEqual(json, {
      id: 'abjkey',
      folderId: 'b1g',
      createdAt: '2026-07-23T10:20:30.456Z',
      status: 'ACTIVE',
      defaultAlgorithm: 'AES_256',
      rotationPeriod: '86400s',
      deletionProtection: true,
      labels: { env: 'prod' },
    });
  });

  it('write whole-second timestamps with a Z and no offset', () => {
    const json = messageToJson(SymmetricKeySchema, symmetricKey({ createdAt: timestampFromMs(Date.UTC(2026, 0, 1)) })) as { createdAt: string };
    assert.equal(json.createdAt, '2026-01-01T00:00:00Z');
  });

  it('write int64 as a string', () => {
    const json = messageToJson(ListSymmetricKeysRequestSchema, create(ListSymmetricKeysRequestSchema, { folderId: 'f', pageSize: 5n }));
    assert.deepEqual(json, { folderId: 'f', pageSize: '5' });
  });

  it('write bytes as standard padded base64', () => {
    const json = messageToJson(SymmetricEncryptRequestSchema, create(SymmetricEncryptRequestSchema, { keyId: 'k', plaintext: Uint8Array.of(0xfb, 0xff) }));
    assert.deepEqual(json, { keyId: 'k', plaintext: '+/8=' });
  });

  it('write Any with "@type" and the packed fields; Empty as just "@type"', () => {
    const op = create(OperationSchema, {
      id: 'abjop',
      done: true,
      metadata: anyPack(CreateSymmetricKeyMetadataSchema, create(CreateSymmetricKeyMetadataSchema, { keyId: 'abjkey', primaryVersionId: 'abjver' })),
      result: { case: 'response', value: anyPack(EmptySchema, create(EmptySchema)) },
    });
    assert.deepEqual(messageToJson(OperationSchema, op), {
      id: 'abjop',
      done: true,
      metadata: { '@type': 'type.googleapis.com/yandex.cloud.kms.v1.CreateSymmetricKeyMetadata', keyId: 'abjkey', primaryVersionId: 'abjver' },
      response: { '@type': 'type.googleapis.com/google.protobuf.Empty' },
    });
  });

  it('round-trip through the decoder', () => {
    const key = symmetricKey({ rotationPeriod: durationFromMs(3_600_000), labels: { a: 'b' } });
    assert.deepEqual(messageFromJson(SymmetricKeySchema, messageToJson(SymmetricKeySchema, key)), key);
  });
});
