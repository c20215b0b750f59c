import { create, createRegistry, type DescMessage, type DescMethod, type DescService, type MessageShape, type Registry } from '@bufbuild/protobuf';
import { file_google_protobuf_empty } from '@bufbuild/protobuf/wkt';
import {
  file_yandex_cloud_kms_v1_symmetric_crypto_service,
  GenerateDataKeyResponseSchema,
  SymmetricCryptoService,
  SymmetricDecryptResponseSchema,
  SymmetricEncryptResponseSchema,
  SymmetricReEncryptResponseSchema,
} from '../../gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import {
  file_yandex_cloud_kms_v1_symmetric_key_service,
  ListSymmetricKeyOperationsResponseSchema,
  ListSymmetricKeysResponseSchema,
  ListSymmetricKeyVersionsResponseSchema,
  SymmetricKeyService,
} from '../../gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { file_yandex_cloud_operation_operation_service, OperationService } from '../../gen/yandex/cloud/operation/operation_service_pb.js';
import { file_yandex_cloud_operation_operation } from '../../gen/yandex/cloud/operation/operation_pb.js';
import { file_yandex_cloud_kms_v1_symmetric_key } from '../../gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import { file_google_rpc_status } from '../../gen/google/rpc/status_pb.js';
import type { CallContext } from '../../services/context.js';
import type { CryptoService } from '../../services/crypto/crypto-service.js';
import type { KeyService } from '../../services/keys/key-service.js';
import type { OperationService as OperationsService } from '../../services/operations/operation-service.js';
import {
  algorithmFromPb,
  durationToMs,
  keyStatusFromPb,
  keyToPb,
  operationToPb,
  pageSize,
  updateFieldsFromMask,
  versionToPb,
} from './kms-messages.js';
import { validateRequest } from './validation.js';
import type { AccessService } from '../../services/access/access-service.js';
import { actionFromPb, bindingFromPb, bindingToPb } from './access-messages.js';
import { file_yandex_cloud_access_access, ListAccessBindingsResponseSchema } from '../../gen/yandex/cloud/access/access_pb.js';

// Every RPC of the API, as one table from method descriptor to a handler over the service layer.
// REST and gRPC both dispatch through it, after decoding their wire format into the same request
// message, so the two transports cannot differ in behaviour. Validation of the proto field rules
// happens here, once, before any handler runs.

export interface ApiMethod {
  readonly method: DescMethod;
  /** `yandex.cloud.kms.v1.SymmetricCryptoService/Encrypt` */
  readonly fullName: string;
  /** The audit event (SPEC.md §10). */
  readonly auditEvent: string;
  /** Validates, then calls the service. */
  readonly invoke: (ctx: CallContext, request: MessageShape<DescMessage>) => Promise<MessageShape<DescMessage>>;
}

export interface ApiServices {
  readonly access: AccessService;
  readonly keys: KeyService;
  readonly crypto: CryptoService;
  readonly operations: OperationsService;
}

type Handler<M extends DescMethod> = (ctx: CallContext, req: MessageShape<M['input']>) => Promise<MessageShape<M['output']>>;
type Handlers<S extends DescService> = { [K in keyof S['method']]: S['method'][K] extends DescMethod ? Handler<S['method'][K]> : never };

/** The services and message types kmsd serves, for reflection and for packing Any in JSON. */
export const API_FILES = [
  file_yandex_cloud_kms_v1_symmetric_key_service,
  file_yandex_cloud_kms_v1_symmetric_crypto_service,
  file_yandex_cloud_operation_operation_service,
] as const;
export const API_SERVICES: readonly DescService[] = [SymmetricKeyService, SymmetricCryptoService, OperationService];
// createRegistry takes each file's own types only, so the files of the packed types are listed too.
export const apiRegistry: Registry = createRegistry(
  ...API_FILES,
  file_yandex_cloud_kms_v1_symmetric_key,
  file_yandex_cloud_operation_operation,
  file_yandex_cloud_access_access,
  file_google_rpc_status,
  file_google_protobuf_empty,
);


function keyHandlers(s: ApiServices): Handlers<typeof SymmetricKeyService> {
  return {
    create: async (ctx, r) =>
      operationToPb(
        await s.keys.create(ctx, {
          folderId: r.folderId,
          name: r.name,
          description: r.description,
          labels: r.labels,
          // required by validation, so never undefined here
          defaultAlgorithm: algorithmFromPb(r.defaultAlgorithm)!,
          rotationPeriodMs: durationToMs(r.rotationPeriod, 'rotation_period'),
          deletionProtection: r.deletionProtection,
        }),
      ),
    get: async (ctx, r) => keyToPb(await s.keys.get(ctx, r.keyId)),
    list: async (ctx, r) => {
      const page = await s.keys.list(ctx, r.folderId, pageSize(r.pageSize), r.pageToken);
      return create(ListSymmetricKeysResponseSchema, { keys: page.items.map(keyToPb), nextPageToken: page.nextPageToken });
    },
    listVersions: async (ctx, r) => {
      const page = await s.keys.listVersions(ctx, r.keyId, pageSize(r.pageSize), r.pageToken);
      return create(ListSymmetricKeyVersionsResponseSchema, {
        keyVersions: page.items.map((v) => versionToPb(v.version, v.primary)),
        nextPageToken: page.nextPageToken,
      });
    },
    update: async (ctx, r) =>
      operationToPb(
        await s.keys.update(ctx, {
          keyId: r.keyId,
          fields: updateFieldsFromMask(r.updateMask?.paths ?? []),
          name: r.name,
          description: r.description,
          status: keyStatusFromPb(r.status),
          labels: r.labels,
          defaultAlgorithm: algorithmFromPb(r.defaultAlgorithm),
          rotationPeriodMs: durationToMs(r.rotationPeriod, 'rotation_period'),
          deletionProtection: r.deletionProtection,
        }),
      ),
    delete: async (ctx, r) => operationToPb(await s.keys.delete(ctx, r.keyId)),
    setPrimaryVersion: async (ctx, r) => operationToPb(await s.keys.setPrimaryVersion(ctx, r.keyId, r.versionId)),
    scheduleVersionDestruction: async (ctx, r) =>
      operationToPb(await s.keys.scheduleVersionDestruction(ctx, r.keyId, r.versionId, durationToMs(r.pendingPeriod, 'pending_period'))),
    cancelVersionDestruction: async (ctx, r) => operationToPb(await s.keys.cancelVersionDestruction(ctx, r.keyId, r.versionId)),
    rotate: async (ctx, r) => operationToPb(await s.keys.rotate(ctx, r.keyId)),
    listOperations: async (ctx, r) => {
      const page = await s.keys.listOperations(ctx, r.keyId, pageSize(r.pageSize), r.pageToken);
      return create(ListSymmetricKeyOperationsResponseSchema, { operations: page.items.map(operationToPb), nextPageToken: page.nextPageToken });
    },
    listAccessBindings: async (ctx, r) => {
      const page = await s.access.listKeyBindings(ctx, r.resourceId, pageSize(r.pageSize), r.pageToken);
      return create(ListAccessBindingsResponseSchema, { accessBindings: page.items.map(bindingToPb), nextPageToken: page.nextPageToken });
    },
    setAccessBindings: async (ctx, r) => operationToPb(await s.access.setKeyBindings(ctx, r.resourceId, r.accessBindings.map(bindingFromPb))),
    updateAccessBindings: async (ctx, r) =>
      operationToPb(
        await s.access.updateKeyBindings(
          ctx,
          r.resourceId,
          r.accessBindingDeltas.map((delta) => ({ action: actionFromPb(delta.action), binding: bindingFromPb(delta.accessBinding) })),
        ),
      ),
  };
}

function cryptoHandlers(s: ApiServices): Handlers<typeof SymmetricCryptoService> {
  const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    encrypt: async (ctx, r) =>
      create(
        SymmetricEncryptResponseSchema,
        await s.crypto.encrypt(ctx, { keyId: r.keyId, versionId: r.versionId, aadContext: buf(r.aadContext), plaintext: buf(r.plaintext) }),
      ),
    decrypt: async (ctx, r) =>
      create(SymmetricDecryptResponseSchema, await s.crypto.decrypt(ctx, { keyId: r.keyId, aadContext: buf(r.aadContext), ciphertext: buf(r.ciphertext) })),
    reEncrypt: async (ctx, r) =>
      create(
        SymmetricReEncryptResponseSchema,
        await s.crypto.reEncrypt(ctx, {
          keyId: r.keyId,
          versionId: r.versionId,
          aadContext: buf(r.aadContext),
          sourceKeyId: r.sourceKeyId,
          sourceAadContext: buf(r.sourceAadContext),
          ciphertext: buf(r.ciphertext),
        }),
      ),
    generateDataKey: async (ctx, r) =>
      create(
        GenerateDataKeyResponseSchema,
        await s.crypto.generateDataKey(ctx, {
          keyId: r.keyId,
          versionId: r.versionId,
          aadContext: buf(r.aadContext),
          dataKeySpec: algorithmFromPb(r.dataKeySpec),
          skipPlaintext: r.skipPlaintext,
        }),
      ),
  };
}

function operationHandlers(s: ApiServices): Handlers<typeof OperationService> {
  return {
    get: async (ctx, r) => operationToPb(await s.operations.get(ctx, r.operationId)),
    cancel: async (ctx, r) => operationToPb(await s.operations.cancel(ctx, r.operationId)),
  };
}

/**
 * Audit event names (SPEC.md §10: `yandex.cloud.audit.kms.<Event>`). The published list covers
 * mutations and crypto calls; reads get names of the same pattern.
 */
const AUDIT_EVENTS: Readonly<Record<string, string>> = {
  'SymmetricKeyService.Create': 'CreateSymmetricKey',
  'SymmetricKeyService.Get': 'GetSymmetricKey',
  'SymmetricKeyService.List': 'ListSymmetricKeys',
  'SymmetricKeyService.ListVersions': 'ListSymmetricKeyVersions',
  'SymmetricKeyService.Update': 'UpdateSymmetricKey',
  'SymmetricKeyService.Delete': 'DeleteSymmetricKey',
  'SymmetricKeyService.SetPrimaryVersion': 'SetPrimarySymmetricKeyVersion',
  'SymmetricKeyService.ScheduleVersionDestruction': 'ScheduleSymmetricKeyVersionDestruction',
  'SymmetricKeyService.CancelVersionDestruction': 'CancelSymmetricKeyVersionDestruction',
  'SymmetricKeyService.Rotate': 'RotateSymmetricKey',
  'SymmetricKeyService.ListOperations': 'ListSymmetricKeyOperations',
  'SymmetricKeyService.ListAccessBindings': 'ListSymmetricKeyAccessBindings',
  'SymmetricKeyService.SetAccessBindings': 'SetSymmetricKeyAccessBindings',
  'SymmetricKeyService.UpdateAccessBindings': 'UpdateSymmetricKeyAccessBindings',
  'SymmetricCryptoService.Encrypt': 'Encrypt',
  'SymmetricCryptoService.Decrypt': 'Decrypt',
  'SymmetricCryptoService.ReEncrypt': 'ReEncrypt',
  'SymmetricCryptoService.GenerateDataKey': 'GenerateDataKey',
  'OperationService.Get': 'GetOperation',
  'OperationService.Cancel': 'CancelOperation',
};

function bind<S extends DescService>(service: S, handlers: Handlers<S>): ApiMethod[] {
  return service.methods.map((method) => {
    const handler = (handlers as Record<string, Handler<DescMethod>>)[method.localName];
    if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
    const event = AUDIT_EVENTS[`${service.name}.${method.name}`];
    if (!event) throw new Error(`no audit event for ${service.typeName}.${method.name}`);
    return {
      method,
      fullName: `${service.typeName}/${method.name}`,
      auditEvent: `yandex.cloud.audit.kms.${event}`,
      invoke: async (ctx, request) => {
        validateRequest(method.input, request);
        return handler(ctx, request);
      },
    };
  });
}

export function apiMethods(s: ApiServices): ApiMethod[] {
  return [
    ...bind(SymmetricKeyService, keyHandlers(s)),
    ...bind(SymmetricCryptoService, cryptoHandlers(s)),
    ...bind(OperationService, operationHandlers(s)),
  ];
}
