// The compatibility suite run with each official Node SDK (SPEC.md §2.2, §5): a real `kmsd serve`
// driven through `new Session({ iamToken, ssl: { rootCerts } })` + `session.client(Client, host:port)`
// over TLS. Every method of SymmetricKeyService, SymmetricCryptoService and OperationService, the SDK's
// `waitForOperation` on every mutation, round trips across gRPC and REST, each error class as the SDK
// surfaces it, and x-request-id. Operation.metadata/response are decoded with the SDK's own
// message codecs, an encoder written independently of kmsd's, which cross-checks the field numbers;
// their JSON is also compared with what kmsd answers over REST for the same resource.
//
// sdk-v3.test.ts and sdk-v2.test.ts import their SDK and hand it over as an SdkBundle. The two
// generated codebases have the same shapes (2.x messages also carry a `$type` member), so the suite
// sees each SDK only through the small structural types below, written from the spec.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { b64, createKey, decrypt, encrypt, fails, freshFolder, ID_RE, ok, RFC3339_RE, sleep, unb64, update, type Operation, type SymmetricKey } from '../helpers/api.js';
import { KmsdProcess, type KmsdResponse } from '../helpers/kmsd-process.js';

// ---- what the suite needs from an SDK -----------------------------------------------------------

/** A ts-proto message codec as both SDKs generate it. Arguments are cast: each SDK types them exactly. */
export interface SdkCodec {
  fromPartial(object: never): object;
  decode(input: Uint8Array): object;
  toJSON(message: never): unknown;
}

export const CODEC_NAMES = [
  'CreateSymmetricKeyRequest',
  'GetSymmetricKeyRequest',
  'ListSymmetricKeysRequest',
  'ListSymmetricKeyVersionsRequest',
  'UpdateSymmetricKeyRequest',
  'DeleteSymmetricKeyRequest',
  'SetPrimarySymmetricKeyVersionRequest',
  'ScheduleSymmetricKeyVersionDestructionRequest',
  'CancelSymmetricKeyVersionDestructionRequest',
  'RotateSymmetricKeyRequest',
  'ListSymmetricKeyOperationsRequest',
  'ListAccessBindingsRequest',
  'SetAccessBindingsRequest',
  'UpdateAccessBindingsRequest',
  'SymmetricEncryptRequest',
  'SymmetricDecryptRequest',
  'SymmetricReEncryptRequest',
  'GenerateDataKeyRequest',
  'GetOperationRequest',
  'CancelOperationRequest',
  'SymmetricKey',
  'SymmetricKeyVersion',
  'CreateSymmetricKeyMetadata',
  'UpdateSymmetricKeyMetadata',
  'DeleteSymmetricKeyMetadata',
  'SetPrimarySymmetricKeyVersionMetadata',
  'ScheduleSymmetricKeyVersionDestructionMetadata',
  'CancelSymmetricKeyVersionDestructionMetadata',
  'RotateSymmetricKeyMetadata',
] as const;
export type CodecName = (typeof CODEC_NAMES)[number];

interface SdkSessionConfig {
  iamToken: string;
  ssl: { rootCerts: Buffer };
  headers?: Record<string, string>;
}

/** Session as the suite uses it; the real one is generic over the client constructor. */
export interface SdkSession {
  client(clientClass: never, customEndpoint?: string): object;
}

export interface SdkBundle {
  /** e.g. "@yandex-cloud/nodejs-sdk 3.2.0". */
  readonly label: string;
  /** The installed package version; its major is asserted. */
  readonly version: string;
  readonly major: number;
  readonly Session: new (config: SdkSessionConfig) => SdkSession;
  waitForOperation(op: never, session: never, timeoutMs?: number, operationServiceEndpoint?: string): Promise<object>;
  readonly ApiError: abstract new (...args: never[]) => Error;
  readonly clients: { readonly keys: object; readonly crypto: object; readonly operations: object };
  readonly codecs: { readonly [N in CodecName]: SdkCodec };
  readonly enums: {
    readonly algorithm: { readonly AES_128: number; readonly AES_192: number; readonly AES_256: number };
    readonly keyStatus: { readonly ACTIVE: number; readonly INACTIVE: number };
    readonly versionStatus: { readonly ACTIVE: number; readonly SCHEDULED_FOR_DESTRUCTION: number };
    readonly accessBindingAction: { readonly ADD: number; readonly REMOVE: number };
  };
  /** The SDK's own Any unpacker, where it has one (2.x `decodeMessage`); checked against the codec. */
  unpackAny?(any: { typeUrl: string; value: Uint8Array }): object;
}

// ---- decoded shapes (SPEC.md §11), as both SDKs decode them -------------------------------------

interface SdkAny {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}
interface SdkOperation {
  readonly id: string;
  readonly description: string;
  readonly createdAt?: Date;
  readonly createdBy: string;
  readonly modifiedAt?: Date;
  readonly done: boolean;
  readonly metadata?: SdkAny;
  readonly error?: { readonly code: number; readonly message: string };
  readonly response?: SdkAny;
}
interface SdkKeyVersion {
  readonly id: string;
  readonly keyId: string;
  readonly status: number;
  readonly algorithm: number;
  readonly createdAt?: Date;
  readonly primary: boolean;
  readonly destroyAt?: Date;
  readonly hostedByHsm: boolean;
}
interface SdkKey {
  readonly id: string;
  readonly folderId: string;
  readonly createdAt?: Date;
  readonly name: string;
  readonly description: string;
  readonly labels: Record<string, string>;
  readonly status: number;
  readonly primaryVersion?: SdkKeyVersion;
  readonly defaultAlgorithm: number;
  readonly rotatedAt?: Date;
  readonly rotationPeriod?: { readonly seconds: number; readonly nanos: number };
  readonly deletionProtection: boolean;
}
interface Header {
  get(key: string): unknown;
}
interface CallOptions {
  onHeader?(header: Header): void;
}
type Call<R> = (request: object, options?: CallOptions) => Promise<R>;
interface KeyClient {
  create: Call<SdkOperation>;
  get: Call<SdkKey>;
  list: Call<{ keys: SdkKey[]; nextPageToken: string }>;
  listVersions: Call<{ keyVersions: SdkKeyVersion[]; nextPageToken: string }>;
  update: Call<SdkOperation>;
  delete: Call<SdkOperation>;
  setPrimaryVersion: Call<SdkOperation>;
  scheduleVersionDestruction: Call<SdkOperation>;
  cancelVersionDestruction: Call<SdkOperation>;
  rotate: Call<SdkOperation>;
  listOperations: Call<{ operations: SdkOperation[]; nextPageToken: string }>;
  listAccessBindings: Call<object>;
  setAccessBindings: Call<SdkOperation>;
  updateAccessBindings: Call<SdkOperation>;
}
interface CryptoClient {
  encrypt: Call<{ keyId: string; versionId: string; ciphertext: Uint8Array }>;
  decrypt: Call<{ keyId: string; versionId: string; plaintext: Uint8Array }>;
  reEncrypt: Call<{ keyId: string; versionId: string; sourceKeyId: string; sourceVersionId: string; ciphertext: Uint8Array }>;
  generateDataKey: Call<{ keyId: string; versionId: string; dataKeyPlaintext: Uint8Array; dataKeyCiphertext: Uint8Array }>;
}
interface OperationClient {
  get: Call<SdkOperation>;
  cancel: Call<SdkOperation>;
}
/** ApiError as both SDKs define it (SPEC.md §2.2): the message, and ids read from the initial metadata. */
interface SdkApiError extends Error {
  readonly requestId: string | undefined;
  readonly serverTraceId: string | undefined;
}

// ---- canonical JSON, to compare SDK-decoded messages with kmsd's REST answers -------------------

const KMS = 'yandex.cloud.kms.v1';
const ADMIN_ID = /^aje[0-9a-v]{17}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DAY_S = 86_400;

/** RFC 3339 text at millisecond precision, which is all a JS Date (and so the SDK) keeps. */
function toMillis(rfc3339: string): string {
  return new Date(Date.parse(rfc3339)).toISOString();
}

/**
 * One form for a message whether it came from ts-proto's toJSON (defaults present, Duration as
 * {seconds,nanos}, `$type` in 2.x) or from proto3 JSON over REST (defaults omitted, "@type",
 * Duration as "86400s", timestamps with up to 9 fractional digits).
 */
export function canonJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonJson);
  if (typeof value === 'string') return RFC3339_RE.test(value) ? toMillis(value) : value;
  if (value === null || typeof value !== 'object') return value;
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => k !== '$type' && k !== '@type' && o[k] !== undefined);
  if (keys.length === 2 && typeof o.seconds === 'number' && typeof o.nanos === 'number') {
    return o.nanos === 0 ? `${o.seconds}s` : `${o.seconds}.${String(o.nanos).padStart(9, '0').replace(/0+$/, '')}s`;
  }
  const out: Record<string, unknown> = {};
  for (const k of keys.sort()) {
    const v = canonJson(o[k]);
    const isDefault =
      v === '' || v === false || v === 0 || v === null || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0);
    if (!isDefault) out[k] = v;
  }
  return out;
}

export function sdkCompatSuite(sdk: SdkBundle): void {
  const { codecs, enums } = sdk;
  const req = (name: CodecName, partial: object): object => codecs[name].fromPartial(partial as never);
  const json = (name: CodecName, message: object): unknown => canonJson(codecs[name].toJSON(message as never));

  describe(`${sdk.label} against kmsd (gRPC over TLS)`, () => {
    let kmsd: KmsdProcess;
    let endpoint: string;
    let rootCerts: Buffer;
    let session: SdkSession;
    let keys: KeyClient;
    let crypto: CryptoClient;
    let operations: OperationClient;
    let folderId: string;

    const connect = (s: SdkSession) => ({
      keys: s.client(sdk.clients.keys as never, endpoint) as KeyClient,
      crypto: s.client(sdk.clients.crypto as never, endpoint) as CryptoClient,
      operations: s.client(sdk.clients.operations as never, endpoint) as OperationClient,
    });
    const newSession = (iamToken: string, headers?: Record<string, string>): SdkSession =>
      new sdk.Session({ iamToken, ssl: { rootCerts }, ...(headers ? { headers } : {}) });

    before(async () => {
      assert.equal(Number(sdk.version.split('.')[0]), sdk.major, `${sdk.label}: installed version ${sdk.version}`);
      kmsd = await KmsdProcess.start({ auth: 'iam' });
      const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
      assert.match(ready.grpc, /^127\.0\.0\.1:\d+$/);
      endpoint = ready.grpc;
      rootCerts = readFileSync(ready.caFile);
      session = newSession(kmsd.token!);
      ({ keys, crypto, operations } = connect(session));
      folderId = freshFolder();
    });
    after(async () => {
      await kmsd?.dispose();
    });

    // ---- helpers over the SDK -------------------------------------------------------------------

    /** Decodes an Any with the SDK codec its type URL names, after checking the URL. */
    function unpackAny(any: SdkAny | undefined, name: CodecName): object {
      assert.ok(any, `an Any of ${name}`);
      assert.equal(any.typeUrl, `type.googleapis.com/${KMS}.${name}`);
      const decoded = codecs[name].decode(any.value);
      if (sdk.unpackAny) assert.deepEqual(sdk.unpackAny(any), decoded, `the SDK's own unpacker agrees for ${name}`);
      return decoded;
    }

    /** The Operation as proto3 JSON, its Any members decoded with the SDK codecs. */
    function opJson(op: SdkOperation, metadataType: CodecName, responseType: CodecName): unknown {
      return canonJson({
        id: op.id,
        description: op.description,
        createdAt: op.createdAt?.toISOString(),
        createdBy: op.createdBy,
        modifiedAt: op.modifiedAt?.toISOString(),
        done: op.done,
        metadata: codecs[metadataType].toJSON(unpackAny(op.metadata, metadataType) as never),
        response: codecs[responseType].toJSON(unpackAny(op.response, responseType) as never),
        error: op.error,
      });
    }

    /**
     * A mutation's Operation (SPEC.md §3.1): done when returned, no error, metadata/response of the
     * documented types. `waitForOperation` resolves it with OperationService.Get on the given
     * endpoint; that answer, OperationService.Get itself and REST GET /operations/{id} all agree.
     */
    async function settled<M extends object, R extends object>(
      op: SdkOperation,
      description: string,
      metadataType: CodecName,
      responseType: CodecName,
    ): Promise<{ metadata: M; response: R }> {
      assert.match(op.id, ID_RE);
      assert.equal(op.description, description);
      assert.equal(op.done, true);
      assert.equal(op.error, undefined);
      assert.match(op.createdBy, ADMIN_ID);
      assert.ok(op.createdAt instanceof Date && op.modifiedAt instanceof Date, 'timestamps decode to Date');
      assert.ok(op.modifiedAt.getTime() >= op.createdAt.getTime());
      assert.ok(Math.abs(op.createdAt.getTime() - Date.now()) < 60_000, 'createdAt is now');
      const expected = opJson(op, metadataType, responseType);

      const waited = (await sdk.waitForOperation(op as never, session as never, 10_000, endpoint)) as SdkOperation;
      assert.deepEqual(opJson(waited, metadataType, responseType), expected, 'waitForOperation resolves with the same operation');
      const got = await operations.get(req('GetOperationRequest', { operationId: op.id }));
      assert.deepEqual(opJson(got, metadataType, responseType), expected, 'OperationService.Get returns it');
      const rest = ok(await kmsd.call<Operation<unknown>>('GET', `/operations/${op.id}`));
      assert.deepEqual(canonJson(rest), expected, 'REST shows the same operation');
      return { metadata: unpackAny(op.metadata, metadataType) as M, response: unpackAny(op.response, responseType) as R };
    }

    /**
     * What the SDK surfaces for a failed call when kmsd sent initial metadata first (SPEC.md §2.2):
     * an ApiError whose message is "<path> <CODE NAME>: <message>", with requestId and serverTraceId
     * read from that metadata, and no numeric code. Returns the server's message part.
     */
    async function apiError(call: Promise<unknown>, path: string, codeName: string, message?: string | RegExp): Promise<SdkApiError & { detail: string }> {
      const e = await call.then(
        (value) => assert.fail(`${path}: expected ${codeName}, got ${JSON.stringify(value)}`),
        (err: unknown) => err,
      );
      assert.ok(e instanceof sdk.ApiError, `an ApiError, got ${String(e)}`);
      const err = e as SdkApiError;
      assert.equal(err.name, 'ApiError');
      const prefix = `${path} ${codeName}: `;
      assert.ok(err.message.startsWith(prefix), `"${err.message}" starts with "${prefix}"`);
      const detail = err.message.slice(prefix.length);
      assert.ok(detail.length > 0);
      if (typeof message === 'string') assert.equal(detail, message);
      else if (message) assert.match(detail, message);
      assert.equal(typeof err.requestId, 'string');
      assert.ok(err.requestId!.length > 0);
      assert.equal(err.serverTraceId, err.requestId);
      assert.equal((err as unknown as { code?: unknown }).code, undefined, 'ApiError keeps the message only, not the numeric code');
      return Object.assign(err, { detail });
    }

    const KEY_SVC = `/${KMS}.SymmetricKeyService`;
    const CRYPTO_SVC = `/${KMS}.SymmetricCryptoService`;
    const OP_SVC = '/yandex.cloud.operation.OperationService';

    async function newKey(extra: object = {}): Promise<SdkKey> {
      const op = await keys.create(req('CreateSymmetricKeyRequest', { folderId, defaultAlgorithm: enums.algorithm.AES_256, ...extra }));
      return unpackAny(op.response, 'SymmetricKey') as SdkKey;
    }

    // ---- SymmetricKeyService ----------------------------------------------------------------------

    describe('SymmetricKeyService', () => {
      it('create: a done Operation; metadata and response decode with the SDK codecs and match REST', async () => {
        const op = await keys.create(
          req('CreateSymmetricKeyRequest', {
            folderId,
            name: 'sdk-key',
            description: `made by ${sdk.label}`,
            labels: { env: 'test', sdk: `v${sdk.major}` },
            defaultAlgorithm: enums.algorithm.AES_128,
            rotationPeriod: { seconds: 30 * DAY_S, nanos: 0 },
            deletionProtection: true,
          }),
        );
        const { metadata, response: key } = await settled<{ keyId: string; primaryVersionId: string }, SdkKey>(
          op,
          'create symmetric key',
          'CreateSymmetricKeyMetadata',
          'SymmetricKey',
        );
        assert.match(key.id, ID_RE);
        assert.deepEqual(json('CreateSymmetricKeyMetadata', metadata), { keyId: key.id, primaryVersionId: key.primaryVersion?.id });
        assert.ok(key.createdAt instanceof Date);
        assert.deepEqual(json('SymmetricKey', key), {
          id: key.id,
          folderId,
          createdAt: key.createdAt.toISOString(),
          name: 'sdk-key',
          description: `made by ${sdk.label}`,
          labels: { env: 'test', sdk: `v${sdk.major}` },
          status: 'ACTIVE',
          primaryVersion: {
            id: key.primaryVersion?.id,
            keyId: key.id,
            status: 'ACTIVE',
            algorithm: 'AES_128',
            createdAt: key.createdAt.toISOString(),
            primary: true,
          },
          defaultAlgorithm: 'AES_128',
          rotationPeriod: `${30 * DAY_S}s`,
          deletionProtection: true,
        });
        assert.equal(key.status, enums.keyStatus.ACTIVE);
        assert.equal(key.defaultAlgorithm, enums.algorithm.AES_128);
        assert.equal(key.primaryVersion?.status, enums.versionStatus.ACTIVE);
        assert.deepEqual(json('SymmetricKey', key), canonJson(ok(await kmsd.call('GET', `/kms/v1/keys/${key.id}`))), 'REST shows the same key');
      });

      it('get: the key as created, equal to the REST view of a key created over REST', async () => {
        const viaGrpc = await newKey({ name: 'get-me' });
        assert.deepEqual(json('SymmetricKey', await keys.get(req('GetSymmetricKeyRequest', { keyId: viaGrpc.id }))), json('SymmetricKey', viaGrpc));
        const viaRest = await createKey(kmsd, { folderId, name: 'from-rest', labels: { a: 'b' }, defaultAlgorithm: 'AES_192', rotationPeriod: '86400s' });
        const got = await keys.get(req('GetSymmetricKeyRequest', { keyId: viaRest.id }));
        assert.equal(got.defaultAlgorithm, enums.algorithm.AES_192);
        assert.deepEqual(got.rotationPeriod && { seconds: got.rotationPeriod.seconds, nanos: got.rotationPeriod.nanos }, { seconds: DAY_S, nanos: 0 });
        assert.deepEqual(json('SymmetricKey', got), canonJson(viaRest));
      });

      it('list: pages through a folder with pageSize and nextPageToken', async () => {
        const folder = freshFolder();
        const made: string[] = [];
        for (let i = 0; i < 3; i++) made.push((await newKey({ folderId: folder, name: `k${i}` })).id);
        const seen: string[] = [];
        let pageToken = '';
        let pages = 0;
        do {
          const page = await keys.list(req('ListSymmetricKeysRequest', { folderId: folder, pageSize: 2, pageToken }));
          pages++;
          assert.ok(page.keys.length <= 2);
          for (const k of page.keys) assert.equal(k.folderId, folder);
          seen.push(...page.keys.map((k) => k.id));
          pageToken = page.nextPageToken;
        } while (pageToken !== '' && pages < 10);
        assert.equal(pages, 2);
        assert.deepEqual([...seen].sort(), [...made].sort());
        const all = await keys.list(req('ListSymmetricKeysRequest', { folderId: folder }));
        const rest = ok(await kmsd.call<{ keys: SymmetricKey[] }>('GET', `/kms/v1/keys?folderId=${folder}`));
        assert.deepEqual(
          all.keys.map((k) => json('SymmetricKey', k)),
          rest.keys.map(canonJson),
        );
        assert.deepEqual((await keys.list(req('ListSymmetricKeysRequest', { folderId: freshFolder() }))).keys, []);
      });

      it('update: the update_mask in snake_case changes only the listed fields', async () => {
        const key = await newKey({ name: 'before', description: 'stays', labels: { old: 'x' } });
        const op = await keys.update(
          req('UpdateSymmetricKeyRequest', {
            keyId: key.id,
            updateMask: { paths: ['name', 'labels', 'default_algorithm', 'rotation_period'] },
            name: 'after',
            labels: { new: 'y' },
            defaultAlgorithm: enums.algorithm.AES_192,
            rotationPeriod: { seconds: 2 * DAY_S, nanos: 0 },
            description: 'ignored: not in the mask',
          }),
        );
        const { metadata, response } = await settled<object, SdkKey>(op, 'update key', 'UpdateSymmetricKeyMetadata', 'SymmetricKey');
        assert.deepEqual(json('UpdateSymmetricKeyMetadata', metadata), { keyId: key.id });
        assert.equal(response.name, 'after');
        assert.equal(response.description, 'stays');
        assert.deepEqual({ ...response.labels }, { new: 'y' });
        assert.equal(response.defaultAlgorithm, enums.algorithm.AES_192);
        assert.equal(response.rotationPeriod?.seconds, 2 * DAY_S);
        assert.deepEqual(json('SymmetricKey', await keys.get(req('GetSymmetricKeyRequest', { keyId: key.id }))), json('SymmetricKey', response));
      });

      it('rotate, listVersions and setPrimaryVersion', async () => {
        const key = await newKey();
        const v1 = key.primaryVersion!.id;
        const rotated = await settled<{ keyId: string; newPrimaryVersionId: string }, SdkKey>(
          await keys.rotate(req('RotateSymmetricKeyRequest', { keyId: key.id })),
          'rotate key',
          'RotateSymmetricKeyMetadata',
          'SymmetricKey',
        );
        const v2 = rotated.response.primaryVersion!.id;
        assert.notEqual(v2, v1);
        assert.deepEqual(json('RotateSymmetricKeyMetadata', rotated.metadata), { keyId: key.id, newPrimaryVersionId: v2 });
        assert.ok(rotated.response.rotatedAt instanceof Date, 'rotatedAt is set by a rotation');

        const versions = await keys.listVersions(req('ListSymmetricKeyVersionsRequest', { keyId: key.id }));
        assert.equal(versions.nextPageToken, '');
        assert.deepEqual(versions.keyVersions.map((v) => [v.id, v.primary, v.status]).sort(), [
          [v1, false, enums.versionStatus.ACTIVE],
          [v2, true, enums.versionStatus.ACTIVE],
        ].sort());
        const restVersions = ok(await kmsd.call<{ keyVersions: unknown[] }>('GET', `/kms/v1/keys/${key.id}/versions`));
        assert.deepEqual(versions.keyVersions.map((v) => json('SymmetricKeyVersion', v)), restVersions.keyVersions.map(canonJson));
        const paged = await keys.listVersions(req('ListSymmetricKeyVersionsRequest', { keyId: key.id, pageSize: 1 }));
        assert.equal(paged.keyVersions.length, 1);
        assert.notEqual(paged.nextPageToken, '');

        const back = await settled<object, SdkKey>(
          await keys.setPrimaryVersion(req('SetPrimarySymmetricKeyVersionRequest', { keyId: key.id, versionId: v1 })),
          'set primary version',
          'SetPrimarySymmetricKeyVersionMetadata',
          'SymmetricKey',
        );
        assert.deepEqual(json('SetPrimarySymmetricKeyVersionMetadata', back.metadata), { keyId: key.id, versionId: v1 });
        assert.equal(back.response.primaryVersion?.id, v1);
        const enc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: Buffer.from('x') }));
        assert.equal(enc.versionId, v1, 'encryption follows the new primary');
      });

      it('scheduleVersionDestruction and cancelVersionDestruction answer the SymmetricKeyVersion', async () => {
        const key = await newKey();
        const old = key.primaryVersion!.id;
        await keys.rotate(req('RotateSymmetricKeyRequest', { keyId: key.id }));
        const before = Date.now();
        const scheduled = await settled<{ keyId: string; versionId: string; destroyAt?: Date }, SdkKeyVersion>(
          await keys.scheduleVersionDestruction(
            req('ScheduleSymmetricKeyVersionDestructionRequest', { keyId: key.id, versionId: old, pendingPeriod: { seconds: 2 * DAY_S, nanos: 0 } }),
          ),
          'schedule version destruction',
          'ScheduleSymmetricKeyVersionDestructionMetadata',
          'SymmetricKeyVersion',
        );
        assert.equal(scheduled.response.id, old);
        assert.equal(scheduled.response.status, enums.versionStatus.SCHEDULED_FOR_DESTRUCTION);
        assert.ok(scheduled.response.destroyAt instanceof Date);
        const due = scheduled.response.destroyAt.getTime() - before;
        assert.ok(Math.abs(due - 2 * DAY_S * 1000) < 60_000, `destroyAt is now + pendingPeriod (${due} ms)`);
        assert.deepEqual(json('ScheduleSymmetricKeyVersionDestructionMetadata', scheduled.metadata), {
          keyId: key.id,
          versionId: old,
          destroyAt: scheduled.response.destroyAt.toISOString(),
        });

        const cancelled = await settled<object, SdkKeyVersion>(
          await keys.cancelVersionDestruction(req('CancelSymmetricKeyVersionDestructionRequest', { keyId: key.id, versionId: old })),
          'cancel version destruction',
          'CancelSymmetricKeyVersionDestructionMetadata',
          'SymmetricKeyVersion',
        );
        assert.deepEqual(json('CancelSymmetricKeyVersionDestructionMetadata', cancelled.metadata), { keyId: key.id, versionId: old });
        assert.equal(cancelled.response.status, enums.versionStatus.ACTIVE);
        assert.equal(cancelled.response.destroyAt, undefined);
      });

      it('listOperations: the key\'s operations, newest first, each one as OperationService.Get returns it', async () => {
        const key = await newKey();
        // Apart by a few milliseconds, so "newest first" has one answer.
        await sleep(5);
        await keys.update(req('UpdateSymmetricKeyRequest', { keyId: key.id, updateMask: { paths: ['name'] }, name: 'renamed' }));
        await sleep(5);
        await keys.rotate(req('RotateSymmetricKeyRequest', { keyId: key.id }));
        const page = await keys.listOperations(req('ListSymmetricKeyOperationsRequest', { keyId: key.id }));
        assert.equal(page.nextPageToken, '');
        assert.deepEqual(
          page.operations.map((o) => o.description),
          ['rotate key', 'update key', 'create symmetric key'],
        );
        for (const listed of page.operations) {
          assert.equal(listed.done, true);
          assert.match(listed.metadata?.typeUrl ?? '', new RegExp(`^type\\.googleapis\\.com/${KMS}\\.\\w+Metadata$`));
          const got = await operations.get(req('GetOperationRequest', { operationId: listed.id }));
          assert.equal(got.id, listed.id);
          assert.equal(got.metadata?.typeUrl, listed.metadata?.typeUrl);
          assert.deepEqual(Buffer.from(got.metadata!.value), Buffer.from(listed.metadata!.value));
        }
        const first = await keys.listOperations(req('ListSymmetricKeyOperationsRequest', { keyId: key.id, pageSize: 1 }));
        assert.deepEqual(first.operations.map((o) => o.description), ['rotate key']);
        assert.notEqual(first.nextPageToken, '');
      });

      it('delete: FAILED_PRECONDITION while protected, then a done Operation; the key is gone', async () => {
        const key = await newKey({ deletionProtection: true });
        const refused = await apiError(
          keys.delete(req('DeleteSymmetricKeyRequest', { keyId: key.id })),
          `${KEY_SVC}/Delete`,
          'FAILED_PRECONDITION',
        );
        const restRefused = fails(await kmsd.call('DELETE', `/kms/v1/keys/${key.id}`), 400, 9);
        assert.equal(refused.detail, restRefused.message, 'the same message over both transports');

        await keys.update(req('UpdateSymmetricKeyRequest', { keyId: key.id, updateMask: { paths: ['deletion_protection'] }, deletionProtection: false }));
        const deleted = await settled<object, SdkKey>(
          await keys.delete(req('DeleteSymmetricKeyRequest', { keyId: key.id })),
          'delete key',
          'DeleteSymmetricKeyMetadata',
          'SymmetricKey',
        );
        assert.deepEqual(json('DeleteSymmetricKeyMetadata', deleted.metadata), { keyId: key.id });
        assert.equal(deleted.response.id, key.id);
        await apiError(keys.get(req('GetSymmetricKeyRequest', { keyId: key.id })), `${KEY_SVC}/Get`, 'NOT_FOUND');
        fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}`), 404, 5);
      });

      it('access bindings: set, update and list them through the SDK; a service account can use the key only while bound', async () => {
        const key = await newKey();
        const sa = ok(await kmsd.call<{ id: string }>('POST', '/kmsd/v1/principals', { type: 'serviceAccount', name: 'sdk-app' }));
        const saToken = ok(await kmsd.call<{ token: string }>('POST', `/kmsd/v1/principals/${sa.id}/tokens`, {})).token;
        const app = connect(newSession(saToken));
        const encryptAsApp = () => app.crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: Buffer.from('as the app') }));
        await apiError(encryptAsApp(), `${CRYPTO_SVC}/Encrypt`, 'PERMISSION_DENIED');

        const binding = { roleId: 'kms.keys.encrypterDecrypter', subject: { id: sa.id, type: 'serviceAccount' } };
        const set = (await keys.setAccessBindings(req('SetAccessBindingsRequest', { resourceId: key.id, accessBindings: [binding] }))) as SdkOperation;
        assert.equal(set.done, true);
        assert.equal(set.metadata?.typeUrl, 'type.googleapis.com/yandex.cloud.access.SetAccessBindingsMetadata');
        assert.equal(set.response?.typeUrl, 'type.googleapis.com/google.protobuf.Empty');
        const waited = (await sdk.waitForOperation(set as never, session as never, 10_000, endpoint)) as SdkOperation;
        assert.equal(waited.id, set.id);

        const listed = (await keys.listAccessBindings(req('ListAccessBindingsRequest', { resourceId: key.id }))) as { accessBindings: { roleId: string; subject?: { id: string; type: string } }[] };
        assert.deepEqual(listed.accessBindings.map((b) => [b.roleId, b.subject?.type, b.subject?.id]), [['kms.keys.encrypterDecrypter', 'serviceAccount', sa.id]]);
        const enc = (await encryptAsApp()) as { versionId: string };
        assert.equal(enc.versionId, key.primaryVersion?.id);
        await apiError(app.keys.rotate(req('RotateSymmetricKeyRequest', { keyId: key.id })), `${KEY_SVC}/Rotate`, 'PERMISSION_DENIED');

        const removed = (await keys.updateAccessBindings(
          req('UpdateAccessBindingsRequest', { resourceId: key.id, accessBindingDeltas: [{ action: enums.accessBindingAction.REMOVE, accessBinding: binding }] }),
        )) as SdkOperation;
        assert.equal(removed.metadata?.typeUrl, 'type.googleapis.com/yandex.cloud.access.UpdateAccessBindingsMetadata');
        await apiError(encryptAsApp(), `${CRYPTO_SVC}/Encrypt`, 'PERMISSION_DENIED');
        await apiError(
          keys.setAccessBindings(req('SetAccessBindingsRequest', { resourceId: key.id, accessBindings: [{ roleId: 'kms.nosuchrole', subject: binding.subject }] })),
          `${KEY_SVC}/SetAccessBindings`,
          'INVALID_ARGUMENT',
          /unknown role/,
        );
      });
    });

    // ---- SymmetricCryptoService -------------------------------------------------------------------

    describe('SymmetricCryptoService', () => {
      it('encrypt and decrypt round-trip, with and without aadContext and an explicit versionId', async () => {
        const key = await newKey();
        for (const aadContext of [Buffer.alloc(0), Buffer.from('tenant:7'), randomBytes(8192)]) {
          for (const plaintext of [Buffer.from('secret'), Buffer.of(0), randomBytes(32_768)]) {
            const enc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, aadContext, plaintext }));
            assert.equal(enc.keyId, key.id);
            assert.equal(enc.versionId, key.primaryVersion?.id);
            assert.ok(enc.ciphertext.length > plaintext.length);
            const dec = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, aadContext, ciphertext: enc.ciphertext }));
            assert.deepEqual({ ...dec, plaintext: Buffer.from(dec.plaintext) }, { ...dec, keyId: key.id, versionId: enc.versionId, plaintext });
          }
        }
        const v1 = key.primaryVersion!.id;
        await keys.rotate(req('RotateSymmetricKeyRequest', { keyId: key.id }));
        const pinned = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, versionId: v1, plaintext: Buffer.from('old version') }));
        assert.equal(pinned.versionId, v1);
        const dec = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, ciphertext: pinned.ciphertext }));
        assert.equal(dec.versionId, v1);
        assert.equal(Buffer.from(dec.plaintext).toString(), 'old version');
      });

      it('reEncrypt moves a ciphertext to another key without revealing the plaintext', async () => {
        const source = await newKey();
        const target = await newKey({ defaultAlgorithm: enums.algorithm.AES_128 });
        const enc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: source.id, aadContext: Buffer.from('src'), plaintext: Buffer.from('moving') }));
        const moved = await crypto.reEncrypt(
          req('SymmetricReEncryptRequest', {
            keyId: target.id,
            aadContext: Buffer.from('dst'),
            sourceKeyId: source.id,
            sourceAadContext: Buffer.from('src'),
            ciphertext: enc.ciphertext,
          }),
        );
        assert.deepEqual(
          { keyId: moved.keyId, versionId: moved.versionId, sourceKeyId: moved.sourceKeyId, sourceVersionId: moved.sourceVersionId },
          { keyId: target.id, versionId: target.primaryVersion?.id, sourceKeyId: source.id, sourceVersionId: source.primaryVersion?.id },
        );
        const dec = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: target.id, aadContext: Buffer.from('dst'), ciphertext: moved.ciphertext }));
        assert.equal(Buffer.from(dec.plaintext).toString(), 'moving');
      });

      it('generateDataKey: a data key of the requested size, its ciphertext decrypts to it; skipPlaintext omits it', async () => {
        const key = await newKey();
        for (const [spec, bytes] of [
          [enums.algorithm.AES_128, 16],
          [enums.algorithm.AES_192, 24],
          [enums.algorithm.AES_256, 32],
        ] as const) {
          const dk = await crypto.generateDataKey(req('GenerateDataKeyRequest', { keyId: key.id, dataKeySpec: spec, aadContext: Buffer.from('dek') }));
          assert.equal(dk.keyId, key.id);
          assert.equal(dk.versionId, key.primaryVersion?.id);
          assert.equal(dk.dataKeyPlaintext.length, bytes);
          const dec = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, aadContext: Buffer.from('dek'), ciphertext: dk.dataKeyCiphertext }));
          assert.deepEqual(Buffer.from(dec.plaintext), Buffer.from(dk.dataKeyPlaintext));
        }
        const skipped = await crypto.generateDataKey(req('GenerateDataKeyRequest', { keyId: key.id, dataKeySpec: enums.algorithm.AES_256, skipPlaintext: true }));
        assert.equal(skipped.dataKeyPlaintext.length, 0);
        const dec = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, ciphertext: skipped.dataKeyCiphertext }));
        assert.equal(dec.plaintext.length, 32);
      });

      it('round trips across transports: gRPC ciphertexts decrypt over REST and REST ones over gRPC', async () => {
        const key = await newKey();
        const aad = Buffer.from('cross');
        const viaGrpc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, aadContext: aad, plaintext: Buffer.from('grpc → rest') }));
        const restDec = await decrypt(kmsd, key.id, Buffer.from(viaGrpc.ciphertext).toString('base64'), { aadContext: b64(aad) });
        assert.deepEqual(restDec, { keyId: key.id, versionId: viaGrpc.versionId, plaintext: b64('grpc → rest') });

        const viaRest = await encrypt(kmsd, key.id, 'rest → grpc', { aadContext: b64(aad) });
        const grpcDec = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, aadContext: aad, ciphertext: unb64(viaRest.ciphertext) }));
        assert.equal(Buffer.from(grpcDec.plaintext).toString(), 'rest → grpc');
        assert.equal(grpcDec.versionId, viaRest.versionId);

        const dk = await crypto.generateDataKey(req('GenerateDataKeyRequest', { keyId: key.id, dataKeySpec: enums.algorithm.AES_256 }));
        const restDk = await decrypt(kmsd, key.id, Buffer.from(dk.dataKeyCiphertext).toString('base64'));
        assert.equal(restDk.plaintext, Buffer.from(dk.dataKeyPlaintext).toString('base64'));

        const other = await createKey(kmsd, { folderId });
        const moved = await crypto.reEncrypt(
          req('SymmetricReEncryptRequest', { keyId: other.id, sourceKeyId: key.id, sourceAadContext: aad, ciphertext: unb64(viaRest.ciphertext) }),
        );
        assert.equal((await decrypt(kmsd, other.id, Buffer.from(moved.ciphertext).toString('base64'))).plaintext, b64('rest → grpc'));

        // A key made inactive over REST refuses gRPC encryption at once.
        await update(kmsd, key.id, { updateMask: 'status', status: 'INACTIVE' });
        await apiError(
          crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: Buffer.from('x') })),
          `${CRYPTO_SVC}/Encrypt`,
          'FAILED_PRECONDITION',
        );
      });
    });

    // ---- OperationService -------------------------------------------------------------------------

    describe('OperationService', () => {
      it('get returns a done operation; cancel returns it unchanged', async () => {
        const op = await keys.create(req('CreateSymmetricKeyRequest', { folderId, defaultAlgorithm: enums.algorithm.AES_256 }));
        const expected = opJson(op, 'CreateSymmetricKeyMetadata', 'SymmetricKey');
        assert.deepEqual(opJson(await operations.get(req('GetOperationRequest', { operationId: op.id })), 'CreateSymmetricKeyMetadata', 'SymmetricKey'), expected);
        const cancelled = await operations.cancel(req('CancelOperationRequest', { operationId: op.id }));
        assert.deepEqual(opJson(cancelled, 'CreateSymmetricKeyMetadata', 'SymmetricKey'), expected);
      });

      it('unknown operations: NOT_FOUND for get and cancel; an empty id is INVALID_ARGUMENT', async () => {
        const missing = 'abj00000000000000000';
        const got = await apiError(operations.get(req('GetOperationRequest', { operationId: missing })), `${OP_SVC}/Get`, 'NOT_FOUND', /abj00000000000000000/);
        assert.equal(got.detail, fails(await kmsd.call('GET', `/operations/${missing}`), 404, 5).message);
        await apiError(operations.cancel(req('CancelOperationRequest', { operationId: missing })), `${OP_SVC}/Cancel`, 'NOT_FOUND');
        await apiError(operations.get(req('GetOperationRequest', { operationId: '' })), `${OP_SVC}/Get`, 'INVALID_ARGUMENT', /operation_id/);
      });
    });

    // ---- errors -----------------------------------------------------------------------------------

    describe('errors, as the SDK surfaces them', () => {
      it('UNAUTHENTICATED for an unknown token, with the message REST gives', async () => {
        const stranger = connect(newSession('not-a-valid-token'));
        const key = await newKey();
        const e = await apiError(stranger.keys.get(req('GetSymmetricKeyRequest', { keyId: key.id })), `${KEY_SVC}/Get`, 'UNAUTHENTICATED');
        const rest = fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { authorization: 'Bearer not-a-valid-token' }), 401, 16);
        assert.equal(e.detail, rest.message);
        await apiError(stranger.crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: Buffer.from('x') })), `${CRYPTO_SVC}/Encrypt`, 'UNAUTHENTICATED');
        await apiError(stranger.operations.get(req('GetOperationRequest', { operationId: 'abj00000000000000000' })), `${OP_SVC}/Get`, 'UNAUTHENTICATED');
      });

      it('INVALID_ARGUMENT for validation failures and bad ciphertexts, with the message REST gives', async () => {
        const key = await newKey();
        const cases: { method: string; grpc: () => Promise<unknown>; rest: () => Promise<KmsdResponse> }[] = [
          {
            method: 'Create',
            grpc: () => keys.create(req('CreateSymmetricKeyRequest', { defaultAlgorithm: enums.algorithm.AES_256 })),
            rest: () => kmsd.call('POST', '/kms/v1/keys', { defaultAlgorithm: 'AES_256' }),
          },
          {
            method: 'Create',
            grpc: () => keys.create(req('CreateSymmetricKeyRequest', { folderId })),
            rest: () => kmsd.call('POST', '/kms/v1/keys', { folderId }),
          },
          {
            method: 'Create',
            grpc: () => keys.create(req('CreateSymmetricKeyRequest', { folderId, defaultAlgorithm: enums.algorithm.AES_256, labels: { '9bad': 'x' } })),
            rest: () => kmsd.call('POST', '/kms/v1/keys', { folderId, defaultAlgorithm: 'AES_256', labels: { '9bad': 'x' } }),
          },
          {
            method: 'Get',
            grpc: () => keys.get(req('GetSymmetricKeyRequest', { keyId: 'k'.repeat(51) })),
            rest: () => kmsd.call('GET', `/kms/v1/keys/${'k'.repeat(51)}`),
          },
          {
            method: 'Update',
            grpc: () => keys.update(req('UpdateSymmetricKeyRequest', { keyId: key.id, name: 'no mask' })),
            rest: () => kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { name: 'no mask' }),
          },
          {
            method: 'Update',
            grpc: () => keys.update(req('UpdateSymmetricKeyRequest', { keyId: key.id, updateMask: { paths: ['no_such_field'] } })),
            rest: () => kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'noSuchField' }),
          },
          {
            method: 'List',
            grpc: () => keys.list(req('ListSymmetricKeysRequest', { folderId, pageSize: 1001 })),
            rest: () => kmsd.call('GET', `/kms/v1/keys?folderId=${folderId}&pageSize=1001`),
          },
        ];
        for (const { method, grpc, rest } of cases) {
          const e = await apiError(grpc(), `${KEY_SVC}/${method}`, 'INVALID_ARGUMENT');
          assert.equal(e.detail, fails(await rest(), 400, 3).message, `${method}: same message over REST`);
        }

        const empty = await apiError(crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id })), `${CRYPTO_SVC}/Encrypt`, 'INVALID_ARGUMENT', /plaintext/);
        assert.equal(empty.detail, fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, {}), 400, 3).message);
        await apiError(
          crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: randomBytes(32_769) })),
          `${CRYPTO_SVC}/Encrypt`,
          'INVALID_ARGUMENT',
          /plaintext/,
        );
        const enc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, aadContext: Buffer.from('a'), plaintext: Buffer.from('x') }));
        const wrongAad = await apiError(
          crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, aadContext: Buffer.from('b'), ciphertext: enc.ciphertext })),
          `${CRYPTO_SVC}/Decrypt`,
          'INVALID_ARGUMENT',
        );
        const garbage = await apiError(
          crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, ciphertext: randomBytes(64) })),
          `${CRYPTO_SVC}/Decrypt`,
          'INVALID_ARGUMENT',
        );
        assert.equal(wrongAad.detail, garbage.detail, 'one message for every bad ciphertext');
        const restGarbage = fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:decrypt`, { ciphertext: b64(randomBytes(64)) }), 400, 3);
        assert.equal(garbage.detail, restGarbage.message);
      });

      it('NOT_FOUND for unknown keys and versions', async () => {
        const key = await newKey();
        const missing = 'abj00000000000000000';
        const e = await apiError(keys.get(req('GetSymmetricKeyRequest', { keyId: missing })), `${KEY_SVC}/Get`, 'NOT_FOUND', new RegExp(missing));
        assert.equal(e.detail, fails(await kmsd.call('GET', `/kms/v1/keys/${missing}`), 404, 5).message);
        await apiError(keys.listVersions(req('ListSymmetricKeyVersionsRequest', { keyId: missing })), `${KEY_SVC}/ListVersions`, 'NOT_FOUND');
        await apiError(keys.rotate(req('RotateSymmetricKeyRequest', { keyId: missing })), `${KEY_SVC}/Rotate`, 'NOT_FOUND');
        await apiError(
          keys.setPrimaryVersion(req('SetPrimarySymmetricKeyVersionRequest', { keyId: key.id, versionId: missing })),
          `${KEY_SVC}/SetPrimaryVersion`,
          'NOT_FOUND',
        );
        await apiError(crypto.encrypt(req('SymmetricEncryptRequest', { keyId: missing, plaintext: Buffer.from('x') })), `${CRYPTO_SVC}/Encrypt`, 'NOT_FOUND');
        await apiError(
          crypto.generateDataKey(req('GenerateDataKeyRequest', { keyId: key.id, versionId: missing, dataKeySpec: enums.algorithm.AES_256 })),
          `${CRYPTO_SVC}/GenerateDataKey`,
          'NOT_FOUND',
        );
      });

      it('RESOURCE_EXHAUSTED over 256 KiB is trailers-only: a ClientError with the code, not an ApiError', async () => {
        // grpc-js refuses the message before kmsd's handler runs, so no initial metadata precedes
        // the status and the SDK's error-metadata middleware leaves nice-grpc's ClientError as is.
        const key = await newKey();
        const e = await crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, ciphertext: Buffer.alloc(300 * 1024, 1) })).then(
          () => assert.fail('an oversized request was accepted'),
          (err: unknown) => err as Error & { code?: unknown; details?: unknown; path?: unknown },
        );
        assert.equal(e instanceof sdk.ApiError, false);
        assert.equal(e.name, 'ClientError');
        assert.equal(e.code, 8, 'RESOURCE_EXHAUSTED');
        assert.equal(e.path, `${CRYPTO_SVC}/Decrypt`);
        assert.match(String(e.details), /larger than max/);
        assert.match(e.message, /^\/yandex\.cloud\.kms\.v1\.SymmetricCryptoService\/Decrypt RESOURCE_EXHAUSTED: /);
        // The same client keeps working.
        const enc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: Buffer.from('after') }));
        assert.equal(enc.keyId, key.id);
      });

      it('FAILED_PRECONDITION for refused state transitions and inactive keys', async () => {
        const key = await newKey();
        const primary = key.primaryVersion!.id;
        const e = await apiError(
          keys.scheduleVersionDestruction(req('ScheduleSymmetricKeyVersionDestructionRequest', { keyId: key.id, versionId: primary })),
          `${KEY_SVC}/ScheduleVersionDestruction`,
          'FAILED_PRECONDITION',
        );
        const rest = fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: primary }), 400, 9);
        assert.equal(e.detail, rest.message);
        await apiError(
          keys.cancelVersionDestruction(req('CancelSymmetricKeyVersionDestructionRequest', { keyId: key.id, versionId: primary })),
          `${KEY_SVC}/CancelVersionDestruction`,
          'FAILED_PRECONDITION',
        );
        const enc = await crypto.encrypt(req('SymmetricEncryptRequest', { keyId: key.id, plaintext: Buffer.from('x') }));
        await keys.update(req('UpdateSymmetricKeyRequest', { keyId: key.id, updateMask: { paths: ['status'] }, status: enums.keyStatus.INACTIVE }));
        const inactive = await apiError(
          crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, ciphertext: enc.ciphertext })),
          `${CRYPTO_SVC}/Decrypt`,
          'FAILED_PRECONDITION',
        );
        assert.equal(inactive.detail, fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:decrypt`, { ciphertext: Buffer.from(enc.ciphertext).toString('base64') }), 400, 9).message);
        await apiError(
          crypto.generateDataKey(req('GenerateDataKeyRequest', { keyId: key.id, dataKeySpec: enums.algorithm.AES_256 })),
          `${CRYPTO_SVC}/GenerateDataKey`,
          'FAILED_PRECONDITION',
        );
      });
    });

    // ---- x-request-id -----------------------------------------------------------------------------

    describe('x-request-id', () => {
      it('a client-sent x-request-id is echoed in the initial metadata and in ApiError.requestId', async () => {
        const requestId = `sdk-v${sdk.major}-${Date.now()}`;
        const tagged = connect(newSession(kmsd.token!, { 'X-Request-Id': requestId }));
        const key = await newKey();
        const headers: Header[] = [];
        await tagged.keys.get(req('GetSymmetricKeyRequest', { keyId: key.id }), { onHeader: (h) => headers.push(h) });
        assert.equal(headers.length, 1);
        assert.equal(headers[0]!.get('x-request-id'), requestId);
        assert.equal(headers[0]!.get('x-server-trace-id'), requestId);

        const e = await apiError(tagged.keys.get(req('GetSymmetricKeyRequest', { keyId: 'abj00000000000000000' })), `${KEY_SVC}/Get`, 'NOT_FOUND');
        assert.equal(e.requestId, requestId);
        assert.equal(e.serverTraceId, requestId);
        const bad = await apiError(
          tagged.crypto.decrypt(req('SymmetricDecryptRequest', { keyId: key.id, ciphertext: Buffer.from('junk') })),
          `${CRYPTO_SVC}/Decrypt`,
          'INVALID_ARGUMENT',
        );
        assert.equal(bad.requestId, requestId);
      });

      it('without one, each call gets its own generated id, in the header and in ApiError.requestId', async () => {
        const ids = new Set<string>();
        for (let i = 0; i < 3; i++) {
          let seen: unknown;
          const e = await apiError(
            keys.get(req('GetSymmetricKeyRequest', { keyId: 'abj00000000000000000' }), { onHeader: (h) => (seen = h.get('x-request-id')) }),
            `${KEY_SVC}/Get`,
            'NOT_FOUND',
          );
          assert.match(e.requestId!, UUID_RE);
          assert.equal(seen, e.requestId);
          ids.add(e.requestId!);
        }
        assert.equal(ids.size, 3);
        const invalid = connect(newSession(kmsd.token!, { 'x-request-id': 'has spaces, not allowed' }));
        const e = await apiError(invalid.keys.get(req('GetSymmetricKeyRequest', { keyId: 'abj00000000000000000' })), `${KEY_SVC}/Get`, 'NOT_FOUND');
        assert.match(e.requestId!, UUID_RE, 'an unusable id is replaced');
      });
    });
  });
}
