// The RPCs of the KMS API in both of their wire forms, for tests that run the same request over
// REST (fetch + JSON; the path and body/query split written here from SPEC.md §4, independent of
// kmsd's own binding table) and over gRPC (fromJson → toBinary with a raw @grpc/grpc-js client).
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { createRegistry, fromBinary, fromJson, toBinary, toJson, type DescMethod, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { file_google_protobuf_empty } from '@bufbuild/protobuf/wkt';
import { file_yandex_cloud_access_access } from '../../src/gen/yandex/cloud/access/access_pb.js';
import { file_yandex_cloud_kms_v1_symmetric_crypto_service, SymmetricCryptoService } from '../../src/gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { file_yandex_cloud_kms_v1_symmetric_key } from '../../src/gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import { file_yandex_cloud_kms_v1_symmetric_key_service, SymmetricKeyService } from '../../src/gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { file_yandex_cloud_operation_operation } from '../../src/gen/yandex/cloud/operation/operation_pb.js';
import { file_yandex_cloud_operation_operation_service, OperationService } from '../../src/gen/yandex/cloud/operation/operation_service_pb.js';
import type { KmsdProcess } from './kmsd-process.js';

export const registry = createRegistry(
  file_yandex_cloud_kms_v1_symmetric_key_service,
  file_yandex_cloud_kms_v1_symmetric_crypto_service,
  file_yandex_cloud_kms_v1_symmetric_key,
  file_yandex_cloud_operation_operation_service,
  file_yandex_cloud_operation_operation,
  file_yandex_cloud_access_access,
  file_google_protobuf_empty,
);

export type Verb = 'GET' | 'POST' | 'PATCH' | 'DELETE';
export interface Rpc {
  readonly method: DescMethod;
  readonly verb: Verb;
  /** Path with `{jsonName}` placeholders for the path fields. */
  readonly path: string;
  /** true: the other fields are the JSON body (`body: "*"`); false: they go to the query string. */
  readonly body: boolean;
}
const K = SymmetricKeyService.method;
const C = SymmetricCryptoService.method;
const O = OperationService.method;
export const RPC = {
  'Key.Create': { method: K.create, verb: 'POST', path: '/kms/v1/keys', body: true },
  'Key.Get': { method: K.get, verb: 'GET', path: '/kms/v1/keys/{keyId}', body: false },
  'Key.List': { method: K.list, verb: 'GET', path: '/kms/v1/keys', body: false },
  'Key.ListVersions': { method: K.listVersions, verb: 'GET', path: '/kms/v1/keys/{keyId}/versions', body: false },
  'Key.Update': { method: K.update, verb: 'PATCH', path: '/kms/v1/keys/{keyId}', body: true },
  'Key.Delete': { method: K.delete, verb: 'DELETE', path: '/kms/v1/keys/{keyId}', body: false },
  'Key.SetPrimaryVersion': { method: K.setPrimaryVersion, verb: 'POST', path: '/kms/v1/keys/{keyId}:setPrimaryVersion', body: true },
  'Key.ScheduleVersionDestruction': { method: K.scheduleVersionDestruction, verb: 'POST', path: '/kms/v1/keys/{keyId}:scheduleVersionDestruction', body: true },
  'Key.CancelVersionDestruction': { method: K.cancelVersionDestruction, verb: 'POST', path: '/kms/v1/keys/{keyId}:cancelVersionDestruction', body: true },
  'Key.Rotate': { method: K.rotate, verb: 'POST', path: '/kms/v1/keys/{keyId}:rotate', body: false },
  'Key.ListOperations': { method: K.listOperations, verb: 'GET', path: '/kms/v1/keys/{keyId}/operations', body: false },
  'Key.ListAccessBindings': { method: K.listAccessBindings, verb: 'GET', path: '/kms/v1/keys/{resourceId}:listAccessBindings', body: false },
  'Key.SetAccessBindings': { method: K.setAccessBindings, verb: 'POST', path: '/kms/v1/keys/{resourceId}:setAccessBindings', body: true },
  'Key.UpdateAccessBindings': { method: K.updateAccessBindings, verb: 'POST', path: '/kms/v1/keys/{resourceId}:updateAccessBindings', body: true },
  'Crypto.Encrypt': { method: C.encrypt, verb: 'POST', path: '/kms/v1/keys/{keyId}:encrypt', body: true },
  'Crypto.Decrypt': { method: C.decrypt, verb: 'POST', path: '/kms/v1/keys/{keyId}:decrypt', body: true },
  'Crypto.ReEncrypt': { method: C.reEncrypt, verb: 'POST', path: '/kms/v1/keys/{keyId}:reEncrypt', body: true },
  'Crypto.GenerateDataKey': { method: C.generateDataKey, verb: 'POST', path: '/kms/v1/keys/{keyId}:generateDataKey', body: true },
  'Operation.Get': { method: O.get, verb: 'GET', path: '/operations/{operationId}', body: false },
  'Operation.Cancel': { method: O.cancel, verb: 'GET', path: '/operations/{operationId}:cancel', body: false },
} as const satisfies Record<string, Rpc>;
export type RpcName = keyof typeof RPC;

/** google.rpc code → HTTP status (SPEC.md §3.2). */
export const HTTP_OF: Record<number, number> = { 3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 12: 501, 13: 500, 14: 503, 16: 401 };

export interface Outcome {
  /** 0 for OK, else the google.rpc code. */
  readonly code: number;
  readonly json?: JsonValue;
  readonly message?: string;
}

/** `authorization` is the header value; undefined sends none. */
export async function viaRest(kmsd: KmsdProcess, rpc: Rpc, request: JsonObject, authorization: string | undefined): Promise<Outcome> {
  const rest: JsonObject = { ...request };
  const path = rpc.path.replace(/\{(\w+)\}/g, (_, field: string) => {
    const v = rest[field];
    delete rest[field];
    return encodeURIComponent(String(v ?? ''));
  });
  let url = path;
  let body: JsonObject | undefined;
  if (rpc.body) body = rest;
  else if (Object.keys(rest).length > 0) url += `?${new URLSearchParams(Object.entries(rest).map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
  const res = await kmsd.call<JsonObject>(rpc.verb, url, body, { authorization: authorization ?? '' });
  if (res.status === 200) return { code: 0, json: res.json };
  const code = res.json.code as number;
  assert.equal(res.status, HTTP_OF[code], `REST: HTTP ${res.status} for code ${code}: ${res.text}`);
  return { code, message: res.json.message as string };
}

export function viaGrpc(client: grpc.Client, rpc: Rpc, request: JsonObject, authorization: string | undefined): Promise<Outcome> {
  const message = fromJson(rpc.method.input, request, { registry });
  const metadata = new grpc.Metadata();
  if (authorization !== undefined) metadata.set('authorization', authorization);
  const identity = (b: Buffer): Buffer => b;
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      `/${rpc.method.parent.typeName}/${rpc.method.name}`,
      identity,
      identity,
      Buffer.from(toBinary(rpc.method.input, message)),
      metadata,
      { deadline: Date.now() + 10_000 },
      (err: grpc.ServiceError | null, bytes?: Buffer) => {
        if (err) resolve({ code: err.code, message: err.details });
        else resolve({ code: 0, json: toJson(rpc.method.output, fromBinary(rpc.method.output, bytes!), { registry }) });
      },
    );
  });
}

