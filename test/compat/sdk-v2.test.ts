// The compatibility suite (sdk-cases.ts) with the last 2.x release of the official Node SDK,
// installed under the npm alias `yc-sdk-v2` (npm:@yandex-cloud/nodejs-sdk@2.9.3). 2.x exposes its
// clients as `serviceClients.*` and its messages under `cloudApi.<service>.<file>`; decoded
// messages carry a `$type` member, and `decodeMessage` unpacks an Any through the SDK's own type
// registry: the suite decodes every Operation payload that way too.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { cloudApi, decodeMessage, errors, serviceClients, Session, waitForOperation } from 'yc-sdk-v2';
import { sdkCompatSuite } from './sdk-cases.js';

function installedVersion(pkg: string): string {
  const main = createRequire(import.meta.url).resolve(pkg);
  return (JSON.parse(readFileSync(join(dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
}

const version = installedVersion('yc-sdk-v2');
const k = cloudApi.kms.symmetric_key_service;
const c = cloudApi.kms.symmetric_crypto_service;
const key = cloudApi.kms.symmetric_key;
const op = cloudApi.operation.operation_service;
const access = cloudApi.access.access;

sdkCompatSuite({
  label: `@yandex-cloud/nodejs-sdk ${version} (as yc-sdk-v2)`,
  version,
  major: 2,
  Session,
  waitForOperation,
  ApiError: errors.ApiError,
  clients: {
    keys: serviceClients.SymmetricKeyServiceClient,
    crypto: serviceClients.SymmetricCryptoServiceClient,
    operations: serviceClients.OperationServiceClient,
  },
  codecs: {
    CreateSymmetricKeyRequest: k.CreateSymmetricKeyRequest,
    GetSymmetricKeyRequest: k.GetSymmetricKeyRequest,
    ListSymmetricKeysRequest: k.ListSymmetricKeysRequest,
    ListSymmetricKeyVersionsRequest: k.ListSymmetricKeyVersionsRequest,
    UpdateSymmetricKeyRequest: k.UpdateSymmetricKeyRequest,
    DeleteSymmetricKeyRequest: k.DeleteSymmetricKeyRequest,
    SetPrimarySymmetricKeyVersionRequest: k.SetPrimarySymmetricKeyVersionRequest,
    ScheduleSymmetricKeyVersionDestructionRequest: k.ScheduleSymmetricKeyVersionDestructionRequest,
    CancelSymmetricKeyVersionDestructionRequest: k.CancelSymmetricKeyVersionDestructionRequest,
    RotateSymmetricKeyRequest: k.RotateSymmetricKeyRequest,
    ListSymmetricKeyOperationsRequest: k.ListSymmetricKeyOperationsRequest,
    ListAccessBindingsRequest: access.ListAccessBindingsRequest,
    SetAccessBindingsRequest: access.SetAccessBindingsRequest,
    UpdateAccessBindingsRequest: access.UpdateAccessBindingsRequest,
    SymmetricEncryptRequest: c.SymmetricEncryptRequest,
    SymmetricDecryptRequest: c.SymmetricDecryptRequest,
    SymmetricReEncryptRequest: c.SymmetricReEncryptRequest,
    GenerateDataKeyRequest: c.GenerateDataKeyRequest,
    GetOperationRequest: op.GetOperationRequest,
    CancelOperationRequest: op.CancelOperationRequest,
    SymmetricKey: key.SymmetricKey,
    SymmetricKeyVersion: key.SymmetricKeyVersion,
    CreateSymmetricKeyMetadata: k.CreateSymmetricKeyMetadata,
    UpdateSymmetricKeyMetadata: k.UpdateSymmetricKeyMetadata,
    DeleteSymmetricKeyMetadata: k.DeleteSymmetricKeyMetadata,
    SetPrimarySymmetricKeyVersionMetadata: k.SetPrimarySymmetricKeyVersionMetadata,
    ScheduleSymmetricKeyVersionDestructionMetadata: k.ScheduleSymmetricKeyVersionDestructionMetadata,
    CancelSymmetricKeyVersionDestructionMetadata: k.CancelSymmetricKeyVersionDestructionMetadata,
    RotateSymmetricKeyMetadata: k.RotateSymmetricKeyMetadata,
  },
  enums: {
    algorithm: key.SymmetricAlgorithm,
    keyStatus: key.SymmetricKey_Status,
    versionStatus: key.SymmetricKeyVersion_Status,
    accessBindingAction: access.AccessBindingAction,
  },
  // 2.x only: unpacks an Any through the SDK's type registry, keyed by the type URL's last segment.
  unpackAny: (any) => decodeMessage(any as Parameters<typeof decodeMessage>[0]),
});
