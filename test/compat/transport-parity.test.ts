// One table of cases, two transports (SPEC.md §2.4, §3.2, §5): each case is a method and a request
// in proto3 JSON form, run once over REST (fetch + JSON, the path and body/query split written here
// from SPEC.md §4) and once over gRPC (the request through @bufbuild/protobuf fromJson → toBinary,
// sent with a raw @grpc/grpc-js client over TLS; the answer decoded and printed with toJson). Both
// must give the same code and, after ids, timestamps and random bytes are replaced by placeholders,
// the same canonical JSON or the same error message. Each transport has its own fixtures (made
// over REST in `before`), so mutations on one never show up on the other.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { DescMethod, JsonObject, JsonValue } from '@bufbuild/protobuf';
import { SymmetricCryptoService } from '../../src/gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { SymmetricKeyService } from '../../src/gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { OperationService } from '../../src/gen/yandex/cloud/operation/operation_service_pb.js';
import { b64, encrypt, freshFolder, ID_RE, ok, RFC3339_RE, sleep, update, type Operation, type SymmetricKey } from '../helpers/api.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';
import { RPC, viaGrpc, viaRest, type Outcome, type Rpc, type RpcName } from '../helpers/rpc.js';

const CODE = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, FAILED_PRECONDITION: 9, UNIMPLEMENTED: 12, UNAUTHENTICATED: 16 } as const;

// ---- fixtures, one set per transport -------------------------------------------------------------

interface Fixtures {
  [name: string]: string;
}

const MISSING = 'abj00000000000000000';
const PLAINTEXT = 'parity plaintext';

async function makeFixtures(kmsd: KmsdProcess): Promise<Fixtures> {
  const folder = freshFolder();
  const lonelyFolder = freshFolder();
  const emptyFolder = freshFolder();
  const createOp = ok(
    await kmsd.call<Operation>('POST', '/kms/v1/keys', { folderId: folder, name: 'parity', labels: { suite: 'parity' }, defaultAlgorithm: 'AES_256' }),
  );
  const active = createOp.response!;
  const make = async (body: Record<string, unknown>): Promise<SymmetricKey> =>
    ok(await kmsd.call<Operation>('POST', '/kms/v1/keys', { folderId: folder, defaultAlgorithm: 'AES_256', ...body })).response!;
  const inactive = await make({ name: 'inactive' });
  await update(kmsd, inactive.id, { updateMask: 'status', status: 'INACTIVE' });
  const protectedKey = await make({ name: 'protected', deletionProtection: true });
  const victim = await make({ name: 'victim', defaultAlgorithm: 'AES_128' });
  const lonely = await make({ folderId: lonelyFolder, name: 'lonely', description: 'the only key here' });
  const ciphertext = (await encrypt(kmsd, active.id, PLAINTEXT, { aadContext: b64('ctx') })).ciphertext;
  return {
    folder,
    lonelyFolder,
    emptyFolder,
    admin: createOp.createdBy,
    createOp: createOp.id,
    active: active.id,
    activeV1: active.primaryVersion.id,
    inactive: inactive.id,
    protected: protectedKey.id,
    victim: victim.id,
    victimV1: victim.primaryVersion.id,
    lonely: lonely.id,
    lonelyV1: lonely.primaryVersion.id,
    ciphertext,
  };
}

// ---- canonical form ------------------------------------------------------------------------------

/** Fields whose bytes are random per call: only their length is compared. */
const RANDOM_BYTES = new Set(['ciphertext', 'dataKeyCiphertext', 'dataKeyPlaintext']);

/**
 * Replaces fixture values by `<name>` (also inside messages), other ids by `<id>`, timestamps by
 * `<time>`, page tokens by `<token>` and random bytes by `<N bytes>`.
 */
function canon(value: JsonValue, fx: Fixtures, field = ''): JsonValue {
  if (Array.isArray(value)) return value.map((v) => canon(v, fx));
  if (value !== null && typeof value === 'object') {
    const out: JsonObject = {};
    for (const k of Object.keys(value).sort()) out[k] = canon(value[k]!, fx, k);
    return out;
  }
  if (typeof value !== 'string') return value;
  if (RANDOM_BYTES.has(field)) return `<${Buffer.from(value, 'base64').length} bytes>`;
  if (field === 'nextPageToken') return '<token>';
  let s = value;
  for (const [name, v] of Object.entries(fx).sort((a, b) => b[1].length - a[1].length)) s = s.split(v).join(`<${name}>`);
  if (ID_RE.test(s)) return '<id>';
  if (RFC3339_RE.test(s)) return '<time>';
  return s;
}

// ---- running one case on one transport -----------------------------------------------------------

type Auth = 'admin' | 'missing' | 'invalid';

function bearer(kmsd: KmsdProcess, auth: Auth): string | undefined {
  if (auth === 'missing') return undefined;
  return auth === 'invalid' ? 'Bearer not-a-valid-token' : `Bearer ${kmsd.token}`;
}

// ---- the cases -----------------------------------------------------------------------------------

type Expect =
  | { readonly json: JsonValue; readonly capture?: (json: JsonObject) => Fixtures }
  | { readonly code: number; readonly message?: string | RegExp };

interface Case {
  readonly name: string;
  readonly rpc: RpcName;
  readonly request: (fx: Fixtures) => JsonObject;
  readonly auth?: Auth;
  /** The canonical JSON of a success, or the code (and canonical message) of a failure. */
  readonly expect: Expect;
}

const key = (fields: JsonObject): JsonObject => ({
  id: '<active>',
  folderId: '<folder>',
  createdAt: '<time>',
  status: 'ACTIVE',
  defaultAlgorithm: 'AES_256',
  ...fields,
});
const version = (fields: JsonObject): JsonObject => ({ status: 'ACTIVE', algorithm: 'AES_256', createdAt: '<time>', ...fields });
const operation = (description: string, metadata: JsonObject, response: JsonObject): JsonObject => ({
  id: '<id>',
  description,
  createdAt: '<time>',
  createdBy: '<admin>',
  modifiedAt: '<time>',
  done: true,
  metadata,
  response,
});
const T = 'type.googleapis.com/yandex.cloud.kms.v1.';
const victim = (fields: JsonObject): JsonObject =>
  key({
    '@type': `${T}SymmetricKey`,
    id: '<victim>',
    name: 'victim',
    defaultAlgorithm: 'AES_128',
    primaryVersion: version({ id: '<victimV1>', keyId: '<victim>', algorithm: 'AES_128', primary: true }),
    ...fields,
  });
const activeKey = key({
  name: 'parity',
  labels: { suite: 'parity' },
  primaryVersion: version({ id: '<activeV1>', keyId: '<active>', primary: true }),
});
const binding = (fx: Fixtures) => ({ roleId: 'kms.keys.encrypterDecrypter', subject: { id: fx.admin!, type: 'userAccount' } });

const CASES: readonly Case[] = [
  // ---- successes, SymmetricKeyService (in order: later cases see earlier mutations) ----
  { name: 'Get a key', rpc: 'Key.Get', request: (fx) => ({ keyId: fx.active! }), expect: { json: activeKey } },
  {
    name: 'List a folder with one key',
    rpc: 'Key.List',
    request: (fx) => ({ folderId: fx.lonelyFolder!, pageSize: '10' }),
    expect: {
      json: {
        keys: [
          key({
            id: '<lonely>',
            folderId: '<lonelyFolder>',
            name: 'lonely',
            description: 'the only key here',
            primaryVersion: version({ id: '<lonelyV1>', keyId: '<lonely>', primary: true }),
          }),
        ],
      },
    },
  },
  { name: 'List an empty folder', rpc: 'Key.List', request: (fx) => ({ folderId: fx.emptyFolder! }), expect: { json: {} } },
  {
    name: 'ListVersions',
    rpc: 'Key.ListVersions',
    request: (fx) => ({ keyId: fx.active! }),
    expect: { json: { keyVersions: [version({ id: '<activeV1>', keyId: '<active>', primary: true })] } },
  },
  {
    name: 'Update with a mask',
    rpc: 'Key.Update',
    request: (fx) => ({ keyId: fx.victim!, updateMask: 'name,labels,rotationPeriod', name: 'victim', labels: { step: 'updated' }, rotationPeriod: '172800s' }),
    expect: {
      json: operation('update key', { '@type': `${T}UpdateSymmetricKeyMetadata`, keyId: '<victim>' }, victim({ labels: { step: 'updated' }, rotationPeriod: '172800s' })),
    },
  },
  {
    name: 'Rotate',
    rpc: 'Key.Rotate',
    request: (fx) => ({ keyId: fx.victim! }),
    expect: {
      json: operation(
        'rotate key',
        { '@type': `${T}RotateSymmetricKeyMetadata`, keyId: '<victim>', newPrimaryVersionId: '<id>' },
        victim({
          labels: { step: 'updated' },
          rotationPeriod: '172800s',
          rotatedAt: '<time>',
          primaryVersion: version({ id: '<id>', keyId: '<victim>', algorithm: 'AES_128', primary: true }),
        }),
      ),
      capture: (op) => ({ victimV2: (op.metadata as JsonObject).newPrimaryVersionId as string }),
    },
  },
  {
    name: 'ListVersions, one per page',
    rpc: 'Key.ListVersions',
    request: (fx) => ({ keyId: fx.victim!, pageSize: '1' }),
    expect: { json: { keyVersions: [version({ id: '<victimV1>', keyId: '<victim>', algorithm: 'AES_128' })], nextPageToken: '<token>' } },
  },
  {
    name: 'SetPrimaryVersion',
    rpc: 'Key.SetPrimaryVersion',
    request: (fx) => ({ keyId: fx.victim!, versionId: fx.victimV1! }),
    expect: {
      json: operation(
        'set primary version',
        { '@type': `${T}SetPrimarySymmetricKeyVersionMetadata`, keyId: '<victim>', versionId: '<victimV1>' },
        victim({ labels: { step: 'updated' }, rotationPeriod: '172800s', rotatedAt: '<time>' }),
      ),
    },
  },
  {
    name: 'ScheduleVersionDestruction',
    rpc: 'Key.ScheduleVersionDestruction',
    request: (fx) => ({ keyId: fx.victim!, versionId: fx.victimV2!, pendingPeriod: '172800s' }),
    expect: {
      json: operation(
        'schedule version destruction',
        { '@type': `${T}ScheduleSymmetricKeyVersionDestructionMetadata`, keyId: '<victim>', versionId: '<victimV2>', destroyAt: '<time>' },
        {
          '@type': `${T}SymmetricKeyVersion`,
          ...version({ id: '<victimV2>', keyId: '<victim>', algorithm: 'AES_128', status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: '<time>' }),
        },
      ),
    },
  },
  {
    name: 'CancelVersionDestruction',
    rpc: 'Key.CancelVersionDestruction',
    request: (fx) => ({ keyId: fx.victim!, versionId: fx.victimV2! }),
    expect: {
      json: operation(
        'cancel version destruction',
        { '@type': `${T}CancelSymmetricKeyVersionDestructionMetadata`, keyId: '<victim>', versionId: '<victimV2>' },
        { '@type': `${T}SymmetricKeyVersion`, ...version({ id: '<victimV2>', keyId: '<victim>', algorithm: 'AES_128' }) },
      ),
    },
  },
  {
    name: 'ListOperations, newest first',
    rpc: 'Key.ListOperations',
    request: (fx) => ({ keyId: fx.victim!, pageSize: '1' }),
    expect: {
      json: {
        operations: [
          operation(
            'cancel version destruction',
            { '@type': `${T}CancelSymmetricKeyVersionDestructionMetadata`, keyId: '<victim>', versionId: '<victimV2>' },
            { '@type': `${T}SymmetricKeyVersion`, ...version({ id: '<victimV2>', keyId: '<victim>', algorithm: 'AES_128' }) },
          ),
        ],
        nextPageToken: '<token>',
      },
    },
  },
  {
    name: 'Delete',
    rpc: 'Key.Delete',
    request: (fx) => ({ keyId: fx.victim! }),
    expect: {
      json: operation(
        'delete key',
        { '@type': `${T}DeleteSymmetricKeyMetadata`, keyId: '<victim>' },
        victim({ labels: { step: 'updated' }, rotationPeriod: '172800s', rotatedAt: '<time>' }),
      ),
    },
  },
  { name: 'Get a deleted key', rpc: 'Key.Get', request: (fx) => ({ keyId: fx.victim! }), expect: { code: CODE.NOT_FOUND, message: 'key <victim> not found' } },

  // ---- successes, SymmetricCryptoService and OperationService ----
  {
    name: 'Encrypt',
    rpc: 'Crypto.Encrypt',
    request: (fx) => ({ keyId: fx.active!, aadContext: b64('ctx'), plaintext: b64('hello') }),
    expect: { json: { keyId: '<active>', versionId: '<activeV1>', ciphertext: `<${3 + 20 + 12 + 5 + 16} bytes>` } },
  },
  {
    name: 'Decrypt',
    rpc: 'Crypto.Decrypt',
    request: (fx) => ({ keyId: fx.active!, aadContext: b64('ctx'), ciphertext: fx.ciphertext! }),
    expect: { json: { keyId: '<active>', versionId: '<activeV1>', plaintext: b64(PLAINTEXT) } },
  },
  {
    name: 'ReEncrypt',
    rpc: 'Crypto.ReEncrypt',
    request: (fx) => ({ keyId: fx.active!, aadContext: b64('new'), sourceKeyId: fx.active!, sourceAadContext: b64('ctx'), ciphertext: fx.ciphertext! }),
    expect: {
      json: {
        keyId: '<active>',
        versionId: '<activeV1>',
        sourceKeyId: '<active>',
        sourceVersionId: '<activeV1>',
        ciphertext: `<${3 + 20 + 12 + PLAINTEXT.length + 16} bytes>`,
      },
    },
  },
  {
    name: 'GenerateDataKey',
    rpc: 'Crypto.GenerateDataKey',
    request: (fx) => ({ keyId: fx.active!, dataKeySpec: 'AES_128' }),
    expect: { json: { keyId: '<active>', versionId: '<activeV1>', dataKeyPlaintext: '<16 bytes>', dataKeyCiphertext: `<${3 + 20 + 12 + 16 + 16} bytes>` } },
  },
  {
    name: 'GenerateDataKey with skipPlaintext',
    rpc: 'Crypto.GenerateDataKey',
    request: (fx) => ({ keyId: fx.active!, dataKeySpec: 'AES_256', skipPlaintext: true }),
    expect: { json: { keyId: '<active>', versionId: '<activeV1>', dataKeyCiphertext: `<${3 + 20 + 12 + 32 + 16} bytes>` } },
  },
  {
    name: 'Operation Get',
    rpc: 'Operation.Get',
    request: (fx) => ({ operationId: fx.createOp! }),
    expect: {
      json: {
        ...operation('create symmetric key', { '@type': `${T}CreateSymmetricKeyMetadata`, keyId: '<active>', primaryVersionId: '<activeV1>' }, {
          '@type': `${T}SymmetricKey`,
          ...activeKey,
        }),
        id: '<createOp>',
      },
    },
  },
  {
    name: 'Operation Cancel (already done: unchanged)',
    rpc: 'Operation.Cancel',
    request: (fx) => ({ operationId: fx.createOp! }),
    expect: {
      json: {
        ...operation('create symmetric key', { '@type': `${T}CreateSymmetricKeyMetadata`, keyId: '<active>', primaryVersionId: '<activeV1>' }, {
          '@type': `${T}SymmetricKey`,
          ...activeKey,
        }),
        id: '<createOp>',
      },
    },
  },

  // ---- UNAUTHENTICATED ----
  { name: 'no token', rpc: 'Key.Get', auth: 'missing', request: (fx) => ({ keyId: fx.active! }), expect: { code: CODE.UNAUTHENTICATED } },
  {
    name: 'an unknown token',
    rpc: 'Crypto.Encrypt',
    auth: 'invalid',
    request: (fx) => ({ keyId: fx.active!, plaintext: b64('x') }),
    expect: { code: CODE.UNAUTHENTICATED },
  },
  { name: 'no token for OperationService', rpc: 'Operation.Get', auth: 'missing', request: (fx) => ({ operationId: fx.createOp! }), expect: { code: CODE.UNAUTHENTICATED } },

  // ---- INVALID_ARGUMENT: validation ----
  { name: 'Create without folderId', rpc: 'Key.Create', request: () => ({ defaultAlgorithm: 'AES_256' }), expect: { code: CODE.INVALID_ARGUMENT, message: /folder_id/ } },
  { name: 'Create without defaultAlgorithm', rpc: 'Key.Create', request: (fx) => ({ folderId: fx.folder! }), expect: { code: CODE.INVALID_ARGUMENT, message: /default_algorithm/ } },
  {
    name: 'Create with a bad label key',
    rpc: 'Key.Create',
    request: (fx) => ({ folderId: fx.folder!, defaultAlgorithm: 'AES_256', labels: { '9bad': 'x' } }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /labels/ },
  },
  {
    name: 'Create with a too short rotationPeriod',
    rpc: 'Key.Create',
    request: (fx) => ({ folderId: fx.folder!, defaultAlgorithm: 'AES_256', rotationPeriod: '60s' }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /rotation_period/ },
  },
  {
    name: 'Create with a too long name',
    rpc: 'Key.Create',
    request: (fx) => ({ folderId: fx.folder!, defaultAlgorithm: 'AES_256', name: 'n'.repeat(101) }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /name/ },
  },
  { name: 'Get with a 51-character keyId', rpc: 'Key.Get', request: () => ({ keyId: 'k'.repeat(51) }), expect: { code: CODE.INVALID_ARGUMENT, message: /key_id/ } },
  { name: 'List without folderId', rpc: 'Key.List', request: () => ({}), expect: { code: CODE.INVALID_ARGUMENT, message: /folder_id/ } },
  { name: 'List with a negative pageSize', rpc: 'Key.List', request: (fx) => ({ folderId: fx.folder!, pageSize: '-1' }), expect: { code: CODE.INVALID_ARGUMENT, message: /page_size/ } },
  { name: 'List with a pageSize over 1000', rpc: 'Key.List', request: (fx) => ({ folderId: fx.folder!, pageSize: '1001' }), expect: { code: CODE.INVALID_ARGUMENT, message: /page_size/ } },
  {
    name: 'List with a forged pageToken',
    rpc: 'Key.List',
    request: (fx) => ({ folderId: fx.folder!, pageToken: 'not-a-token' }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /page_token/ },
  },
  { name: 'Update without updateMask', rpc: 'Key.Update', request: (fx) => ({ keyId: fx.active!, name: 'x' }), expect: { code: CODE.INVALID_ARGUMENT, message: /update_mask/ } },
  {
    name: 'Update with an unknown mask path',
    rpc: 'Key.Update',
    request: (fx) => ({ keyId: fx.active!, updateMask: 'folderId' }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /update_mask/ },
  },
  {
    name: 'Update status to CREATING',
    rpc: 'Key.Update',
    request: (fx) => ({ keyId: fx.active!, updateMask: 'status', status: 'CREATING' }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /status/ },
  },
  {
    name: 'ScheduleVersionDestruction without versionId',
    rpc: 'Key.ScheduleVersionDestruction',
    request: (fx) => ({ keyId: fx.active! }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /version_id/ },
  },
  { name: 'Encrypt without plaintext', rpc: 'Crypto.Encrypt', request: (fx) => ({ keyId: fx.active! }), expect: { code: CODE.INVALID_ARGUMENT, message: /plaintext/ } },
  {
    name: 'Encrypt a plaintext over 32 KiB',
    rpc: 'Crypto.Encrypt',
    request: (fx) => ({ keyId: fx.active!, plaintext: Buffer.alloc(32_769, 7).toString('base64') }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /plaintext/ },
  },
  {
    name: 'Encrypt with an AAD over 8 KiB',
    rpc: 'Crypto.Encrypt',
    request: (fx) => ({ keyId: fx.active!, plaintext: b64('x'), aadContext: Buffer.alloc(8_193).toString('base64') }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /aad_context/ },
  },
  {
    name: 'Decrypt with the wrong AAD',
    rpc: 'Crypto.Decrypt',
    request: (fx) => ({ keyId: fx.active!, aadContext: b64('other'), ciphertext: fx.ciphertext! }),
    expect: { code: CODE.INVALID_ARGUMENT },
  },
  {
    name: 'Decrypt garbage',
    rpc: 'Crypto.Decrypt',
    request: (fx) => ({ keyId: fx.active!, ciphertext: Buffer.alloc(60, 1).toString('base64') }),
    expect: { code: CODE.INVALID_ARGUMENT },
  },
  {
    name: 'ReEncrypt without sourceKeyId',
    rpc: 'Crypto.ReEncrypt',
    request: (fx) => ({ keyId: fx.active!, ciphertext: fx.ciphertext! }),
    expect: { code: CODE.INVALID_ARGUMENT, message: /source_key_id/ },
  },
  { name: 'Operation Get without an id', rpc: 'Operation.Get', request: () => ({}), expect: { code: CODE.INVALID_ARGUMENT, message: /operation_id/ } },

  // ---- NOT_FOUND ----
  { name: 'Get an unknown key', rpc: 'Key.Get', request: () => ({ keyId: MISSING }), expect: { code: CODE.NOT_FOUND, message: `key ${MISSING} not found` } },
  { name: 'ListVersions of an unknown key', rpc: 'Key.ListVersions', request: () => ({ keyId: MISSING }), expect: { code: CODE.NOT_FOUND } },
  {
    name: 'SetPrimaryVersion to an unknown version',
    rpc: 'Key.SetPrimaryVersion',
    request: (fx) => ({ keyId: fx.active!, versionId: MISSING }),
    expect: { code: CODE.NOT_FOUND },
  },
  { name: 'Encrypt with an unknown key', rpc: 'Crypto.Encrypt', request: () => ({ keyId: MISSING, plaintext: b64('x') }), expect: { code: CODE.NOT_FOUND } },
  {
    name: 'Decrypt with an unknown key',
    rpc: 'Crypto.Decrypt',
    request: (fx) => ({ keyId: MISSING, ciphertext: fx.ciphertext! }),
    expect: { code: CODE.NOT_FOUND },
  },
  { name: 'Operation Get of an unknown id', rpc: 'Operation.Get', request: () => ({ operationId: MISSING }), expect: { code: CODE.NOT_FOUND } },

  // ---- FAILED_PRECONDITION ----
  { name: 'Encrypt with an inactive key', rpc: 'Crypto.Encrypt', request: (fx) => ({ keyId: fx.inactive!, plaintext: b64('x') }), expect: { code: CODE.FAILED_PRECONDITION } },
  {
    name: 'GenerateDataKey with an inactive key',
    rpc: 'Crypto.GenerateDataKey',
    request: (fx) => ({ keyId: fx.inactive!, dataKeySpec: 'AES_256' }),
    expect: { code: CODE.FAILED_PRECONDITION },
  },
  { name: 'Delete a protected key', rpc: 'Key.Delete', request: (fx) => ({ keyId: fx.protected! }), expect: { code: CODE.FAILED_PRECONDITION, message: /deletion protection/ } },
  {
    name: 'ScheduleVersionDestruction of the primary version',
    rpc: 'Key.ScheduleVersionDestruction',
    request: (fx) => ({ keyId: fx.active!, versionId: fx.activeV1! }),
    expect: { code: CODE.FAILED_PRECONDITION },
  },
  {
    name: 'CancelVersionDestruction of an active version',
    rpc: 'Key.CancelVersionDestruction',
    request: (fx) => ({ keyId: fx.active!, versionId: fx.activeV1! }),
    expect: { code: CODE.FAILED_PRECONDITION },
  },

  // ---- access bindings (SPEC.md §4.1.12–14) ----
  {
    name: 'UpdateAccessBindings',
    rpc: 'Key.UpdateAccessBindings',
    request: (fx) => ({ resourceId: fx.lonely!, accessBindingDeltas: [{ action: 'ADD', accessBinding: binding(fx) }] }),
    expect: {
      json: operation('update access bindings', { '@type': 'type.googleapis.com/yandex.cloud.access.UpdateAccessBindingsMetadata', resourceId: '<lonely>' }, {
        '@type': 'type.googleapis.com/google.protobuf.Empty',
      }),
    },
  },
  {
    name: 'ListAccessBindings',
    rpc: 'Key.ListAccessBindings',
    request: (fx) => ({ resourceId: fx.lonely! }),
    expect: { json: { accessBindings: [{ roleId: 'kms.keys.encrypterDecrypter', subject: { id: '<admin>', type: 'userAccount' } }] } },
  },
  {
    name: 'SetAccessBindings to none',
    rpc: 'Key.SetAccessBindings',
    request: (fx) => ({ resourceId: fx.lonely!, accessBindings: [] }),
    expect: {
      json: operation('set access bindings', { '@type': 'type.googleapis.com/yandex.cloud.access.SetAccessBindingsMetadata', resourceId: '<lonely>' }, {
        '@type': 'type.googleapis.com/google.protobuf.Empty',
      }),
    },
  },
  { name: 'Create a GOST key', rpc: 'Key.Create', request: (fx) => ({ folderId: fx.emptyFolder!, defaultAlgorithm: 'GOST_R_3412_2015_K' }), expect: { code: CODE.UNIMPLEMENTED } },
  { name: 'ListAccessBindings of a key without any', rpc: 'Key.ListAccessBindings', request: (fx) => ({ resourceId: fx.lonely! }), expect: { json: {} } },
  {
    name: 'SetAccessBindings with an unknown role',
    rpc: 'Key.SetAccessBindings',
    request: (fx) => ({ resourceId: fx.lonely!, accessBindings: [{ ...binding(fx), roleId: 'kms.root' }] }),
    expect: { code: CODE.INVALID_ARGUMENT, message: 'access_bindings[0].role_id: unknown role "kms.root"' },
  },
];

// ---- the run -------------------------------------------------------------------------------------

describe('REST and gRPC give the same answers (one table of cases, two transports)', () => {
  let kmsd: KmsdProcess;
  let client: grpc.Client;
  let restFx: Fixtures;
  let grpcFx: Fixtures;

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
    client = new grpc.Client(ready.grpc, grpc.credentials.createSsl(readFileSync(ready.caFile)));
    restFx = await makeFixtures(kmsd);
    grpcFx = await makeFixtures(kmsd);
  });
  after(async () => {
    client?.close();
    await kmsd?.dispose();
  });

  it('covers every method of the three services', () => {
    const covered = new Set<DescMethod>(CASES.map((c) => RPC[c.rpc].method));
    for (const service of [SymmetricKeyService, SymmetricCryptoService, OperationService]) {
      for (const m of service.methods) assert.ok(covered.has(m), `no case for ${service.typeName}.${m.name}`);
    }
    for (const code of Object.values(CODE)) assert.ok(CASES.some((c) => 'code' in c.expect && c.expect.code === code), `no case answers code ${code}`);
  });

  for (const c of CASES) {
    it(`${c.rpc}: ${c.name}`, async () => {
      const rpc: Rpc = RPC[c.rpc];
      const auth = c.auth ?? 'admin';
      // A few milliseconds apart, so operations never share a timestamp and "newest first" has one order.
      await sleep(3);
      const rest = await viaRest(kmsd, rpc, c.request(restFx), bearer(kmsd, auth));
      await sleep(3);
      const overGrpc = await viaGrpc(client, rpc, c.request(grpcFx), bearer(kmsd, auth));
      const shown = (o: Outcome, fx: Fixtures) => ({ code: o.code, ...(o.json === undefined ? {} : { json: canon(o.json, fx) }), ...(o.message === undefined ? {} : { message: canon(o.message, fx) }) });
      const restShown = shown(rest, restFx);
      const grpcShown = shown(overGrpc, grpcFx);
      assert.deepEqual(grpcShown, restShown, 'gRPC answers as REST does');

      if ('json' in c.expect) {
        assert.equal(rest.code, 0, `expected OK, got ${JSON.stringify(restShown)}`);
        assert.deepEqual(restShown.json, c.expect.json);
        if (c.expect.capture) {
          Object.assign(restFx, c.expect.capture(rest.json as JsonObject));
          Object.assign(grpcFx, c.expect.capture(overGrpc.json as JsonObject));
        }
      } else {
        assert.equal(rest.code, c.expect.code, `expected code ${c.expect.code}, got ${JSON.stringify(restShown)}`);
        assert.ok(typeof restShown.message === 'string' && restShown.message.length > 0);
        if (typeof c.expect.message === 'string') assert.equal(restShown.message, c.expect.message);
        else if (c.expect.message) assert.match(restShown.message, c.expect.message);
      }
    });
  }
});
