// The compatibility suite (sdk-cases.ts) with the latest official Node SDK, @yandex-cloud/nodejs-sdk
// 3.x, imported through its documented entry points: the package root for Session,
// waitForOperation and errors, and the `kms-v1` / `operation` client modules (SPEC.md §2.2, §5.2).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { errors, Session, waitForOperation } from '@yandex-cloud/nodejs-sdk';
import { symmetricCryptoService, symmetricKey, symmetricKeyService } from '@yandex-cloud/nodejs-sdk/kms-v1';
import { operationService } from '@yandex-cloud/nodejs-sdk/operation';
import {
  AccessBindingAction,
  ListAccessBindingsRequest,
  SetAccessBindingsRequest,
  UpdateAccessBindingsRequest,
} from '@yandex-cloud/nodejs-sdk/dist/generated/yandex/cloud/access/access';
import { sdkCompatSuite } from './sdk-cases.js';

/** The package's exports map does not expose package.json; it sits two levels above dist/index.js. */
function installedVersion(pkg: string): string {
  const main = createRequire(import.meta.url).resolve(pkg);
  return (JSON.parse(readFileSync(join(dirname(main), '..', 'package.json'), 'utf8')) as { version: string }).version;
}

const version = installedVersion('@yandex-cloud/nodejs-sdk');
const k = symmetricKeyService;
const c = symmetricCryptoService;

sdkCompatSuite({
  label: `@yandex-cloud/nodejs-sdk ${version}`,
  version,
  major: 3,
  Session,
  waitForOperation,
  ApiError: errors.ApiError,
  clients: { keys: k.SymmetricKeyServiceClient, crypto: c.SymmetricCryptoServiceClient, operations: operationService.OperationServiceClient },
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
    ListAccessBindingsRequest,
    SetAccessBindingsRequest,
    UpdateAccessBindingsRequest,
    SymmetricEncryptRequest: c.SymmetricEncryptRequest,
    SymmetricDecryptRequest: c.SymmetricDecryptRequest,
    SymmetricReEncryptRequest: c.SymmetricReEncryptRequest,
    GenerateDataKeyRequest: c.GenerateDataKeyRequest,
    GetOperationRequest: operationService.GetOperationRequest,
    CancelOperationRequest: operationService.CancelOperationRequest,
    SymmetricKey: symmetricKey.SymmetricKey,
    SymmetricKeyVersion: symmetricKey.SymmetricKeyVersion,
    CreateSymmetricKeyMetadata: k.CreateSymmetricKeyMetadata,
    UpdateSymmetricKeyMetadata: k.UpdateSymmetricKeyMetadata,
    DeleteSymmetricKeyMetadata: k.DeleteSymmetricKeyMetadata,
    SetPrimarySymmetricKeyVersionMetadata: k.SetPrimarySymmetricKeyVersionMetadata,
    ScheduleSymmetricKeyVersionDestructionMetadata: k.ScheduleSymmetricKeyVersionDestructionMetadata,
    CancelSymmetricKeyVersionDestructionMetadata: k.CancelSymmetricKeyVersionDestructionMetadata,
    RotateSymmetricKeyMetadata: k.RotateSymmetricKeyMetadata,
  },
  enums: {
    algorithm: symmetricKey.SymmetricAlgorithm,
    keyStatus: symmetricKey.SymmetricKey_Status,
    versionStatus: symmetricKey.SymmetricKeyVersion_Status,
    accessBindingAction: AccessBindingAction,
  },
});
