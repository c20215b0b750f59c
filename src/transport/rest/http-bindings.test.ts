import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SymmetricCryptoService } from '../../gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { SymmetricKeyService } from '../../gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { OperationService } from '../../gen/yandex/cloud/operation/operation_service_pb.js';
import { httpBindings, splitCustomVerb, type HttpBinding } from './http-bindings.js';

// The REST surface comes from the google.api.http annotations in proto/. This pins it to the
// paths of SPEC.md §4 (and §3.1 for OperationService), written out here by hand from the SPEC.

const SERVICES = [SymmetricKeyService, SymmetricCryptoService, OperationService];
const bindings = httpBindings(SERVICES.flatMap((s) => s.methods));

/** [RPC, HTTP verb, path as SPEC.md writes it (host prefix dropped), request fields from the body?] */
const SPEC_PATHS: readonly (readonly [string, string, string, boolean])[] = [
  // §4.1 SymmetricKeyService (KM)
  ['yandex.cloud.kms.v1.SymmetricKeyService.Create', 'POST', '/kms/v1/keys', true],
  ['yandex.cloud.kms.v1.SymmetricKeyService.Get', 'GET', '/kms/v1/keys/{keyId}', false],
  ['yandex.cloud.kms.v1.SymmetricKeyService.List', 'GET', '/kms/v1/keys', false],
  ['yandex.cloud.kms.v1.SymmetricKeyService.ListVersions', 'GET', '/kms/v1/keys/{keyId}/versions', false],
  ['yandex.cloud.kms.v1.SymmetricKeyService.Update', 'PATCH', '/kms/v1/keys/{keyId}', true],
  ['yandex.cloud.kms.v1.SymmetricKeyService.Delete', 'DELETE', '/kms/v1/keys/{keyId}', false],
  ['yandex.cloud.kms.v1.SymmetricKeyService.SetPrimaryVersion', 'POST', '/kms/v1/keys/{keyId}:setPrimaryVersion', true],
  ['yandex.cloud.kms.v1.SymmetricKeyService.ScheduleVersionDestruction', 'POST', '/kms/v1/keys/{keyId}:scheduleVersionDestruction', true],
  ['yandex.cloud.kms.v1.SymmetricKeyService.CancelVersionDestruction', 'POST', '/kms/v1/keys/{keyId}:cancelVersionDestruction', true],
  ['yandex.cloud.kms.v1.SymmetricKeyService.Rotate', 'POST', '/kms/v1/keys/{keyId}:rotate', false], // "No body" (§4.1.10, §2.4)
  ['yandex.cloud.kms.v1.SymmetricKeyService.ListOperations', 'GET', '/kms/v1/keys/{keyId}/operations', false],
  ['yandex.cloud.kms.v1.SymmetricKeyService.ListAccessBindings', 'GET', '/kms/v1/keys/{resourceId}:listAccessBindings', false],
  ['yandex.cloud.kms.v1.SymmetricKeyService.SetAccessBindings', 'POST', '/kms/v1/keys/{resourceId}:setAccessBindings', true],
  ['yandex.cloud.kms.v1.SymmetricKeyService.UpdateAccessBindings', 'POST', '/kms/v1/keys/{resourceId}:updateAccessBindings', true],
  // §4.2 SymmetricCryptoService (KC)
  ['yandex.cloud.kms.v1.SymmetricCryptoService.Encrypt', 'POST', '/kms/v1/keys/{keyId}:encrypt', true],
  ['yandex.cloud.kms.v1.SymmetricCryptoService.Decrypt', 'POST', '/kms/v1/keys/{keyId}:decrypt', true],
  ['yandex.cloud.kms.v1.SymmetricCryptoService.GenerateDataKey', 'POST', '/kms/v1/keys/{keyId}:generateDataKey', true],
  ['yandex.cloud.kms.v1.SymmetricCryptoService.ReEncrypt', 'POST', '/kms/v1/keys/{keyId}:reEncrypt', true],
  // §3.1 OperationService (OP): Cancel is GET per the proto, POST per the design guide; both accepted.
  ['yandex.cloud.operation.OperationService.Get', 'GET', '/operations/{operationId}', false],
  ['yandex.cloud.operation.OperationService.Cancel', 'GET', '/operations/{operationId}:cancel', false],
  ['yandex.cloud.operation.OperationService.Cancel', 'POST', '/operations/{operationId}:cancel', false],
];

/** A binding in the SPEC's notation: `{keyId}` path parameters and `:verb` at the end. */
function specPath(b: HttpBinding): string {
  const path = b.routePath.replace(/:p(\d+)/g, (_, i: string) => {
    const name = b.pathFields[Number(i)]!;
    const field = b.method.input.fields.find((f) => f.name === name);
    assert.ok(field, `${b.method.name}: path field ${name} is not a field of ${b.method.input.typeName}`);
    return `{${field.jsonName}}`;
  });
  return b.customVerb === undefined ? path : `${path}:${b.customVerb}`;
}

const rpcName = (b: HttpBinding) => `${b.method.parent.typeName}.${b.method.name}`;

describe('HTTP bindings', () => {
  it('every RPC of SymmetricKeyService, SymmetricCryptoService and OperationService has a binding', () => {
    const bound = new Set(bindings.map(rpcName));
    for (const service of SERVICES) {
      for (const method of service.methods) assert.ok(bound.has(`${service.typeName}.${method.name}`), `${method.name} has no HTTP binding`);
    }
    assert.equal(SERVICES.reduce((n, s) => n + s.methods.length, 0), 14 + 4 + 2);
  });

  it('are exactly the paths of SPEC.md §4 and §3.1, with the same verbs and body rules', () => {
    const actual = bindings.map((b) => [rpcName(b), b.verb, specPath(b), b.bodyIsMessage] as const);
    const sort = (rows: readonly (readonly [string, string, string, boolean])[]) => [...rows].map((r) => r.join(' ')).sort();
    assert.deepEqual(sort(actual), sort(SPEC_PATHS));
  });

  it('never bind two RPCs to the same verb, path and custom verb', () => {
    const seen = new Map<string, string>();
    for (const b of bindings) {
      const id = `${b.verb} ${b.routePath} :${b.customVerb ?? ''}`;
      assert.equal(seen.get(id), undefined, `${rpcName(b)} collides with ${seen.get(id)} on ${id}`);
      seen.set(id, rpcName(b));
    }
  });

  it('group into routes that the custom verb alone tells apart', () => {
    // One fastify route per (verb, path shape): inside it, every binding must name the same path
    // fields in the same places and differ by custom verb (at most one has none).
    const routes = new Map<string, HttpBinding[]>();
    for (const b of bindings) routes.set(`${b.verb} ${b.routePath}`, [...(routes.get(`${b.verb} ${b.routePath}`) ?? []), b]);
    for (const [route, group] of routes) {
      const verbs = group.map((b) => b.customVerb ?? '');
      assert.equal(new Set(verbs).size, verbs.length, `${route}: custom verbs repeat`);
      assert.equal(new Set(group.map((b) => b.pathFields.length)).size, 1, `${route}: different numbers of path fields`);
    }
    // `{key_id}` and `{resource_id}` share the /kms/v1/keys/:p0 routes.
    const post = routes.get('POST /kms/v1/keys/:p0')!;
    assert.deepEqual(
      post.map((b) => b.customVerb).sort(),
      [
        'cancelVersionDestruction',
        'decrypt',
        'encrypt',
        'generateDataKey',
        'reEncrypt',
        'rotate',
        'scheduleVersionDestruction',
        'setAccessBindings',
        'setPrimaryVersion',
        'updateAccessBindings',
      ],
    );
  });

  it('name path fields by their proto names, which are required request fields', () => {
    for (const b of bindings) {
      for (const name of b.pathFields) {
        assert.match(name, /^(key_id|resource_id|operation_id)$/, `${rpcName(b)}: ${name}`);
        assert.ok(b.method.input.fields.some((f) => f.name === name));
      }
    }
  });
});

describe('splitCustomVerb', () => {
  it('splits the id from the verb', () => {
    assert.deepEqual(splitCustomVerb('abj76v82ficsmn446ri7:encrypt'), { value: 'abj76v82ficsmn446ri7', verb: 'encrypt' });
  });

  it('splits at the LAST colon, so an id may contain colons', () => {
    assert.deepEqual(splitCustomVerb('a:b:c:decrypt'), { value: 'a:b:c', verb: 'decrypt' });
    assert.deepEqual(splitCustomVerb('urn:key:rotate'), { value: 'urn:key', verb: 'rotate' });
  });

  it('has no verb without a colon', () => {
    const split = splitCustomVerb('abj76v82ficsmn446ri7');
    assert.deepEqual(split, { value: 'abj76v82ficsmn446ri7' });
    assert.equal('verb' in split, false);
  });

  it('keeps empty parts as empty strings', () => {
    assert.deepEqual(splitCustomVerb('abc:'), { value: 'abc', verb: '' });
    assert.deepEqual(splitCustomVerb(':encrypt'), { value: '', verb: 'encrypt' });
    assert.deepEqual(splitCustomVerb(''), { value: '' });
  });
});
