import type { KeyVersion, SymmetricKey } from './key.js';

// Operations record every mutation (SPEC.md §3.1). kmsd applies changes inside the call, so an
// operation is stored already done, with the metadata and response the method declares.

export type OperationMetadata =
  | { readonly type: 'CreateSymmetricKeyMetadata'; readonly keyId: string; readonly primaryVersionId: string }
  | { readonly type: 'UpdateSymmetricKeyMetadata'; readonly keyId: string }
  | { readonly type: 'DeleteSymmetricKeyMetadata'; readonly keyId: string }
  | { readonly type: 'SetPrimarySymmetricKeyVersionMetadata'; readonly keyId: string; readonly versionId: string }
  | {
      readonly type: 'ScheduleSymmetricKeyVersionDestructionMetadata';
      readonly keyId: string;
      readonly versionId: string;
      readonly destroyAt: number;
    }
  | { readonly type: 'CancelSymmetricKeyVersionDestructionMetadata'; readonly keyId: string; readonly versionId: string }
  | { readonly type: 'RotateSymmetricKeyMetadata'; readonly keyId: string; readonly newPrimaryVersionId: string }
  | { readonly type: 'SetAccessBindingsMetadata'; readonly resourceId: string }
  | { readonly type: 'UpdateAccessBindingsMetadata'; readonly resourceId: string };

/** A key as the API shows it: the key plus its primary version, embedded. */
export interface KeyView {
  readonly key: SymmetricKey;
  readonly primaryVersion: KeyVersion;
}

export type OperationResponse =
  | { readonly type: 'SymmetricKey'; readonly view: KeyView }
  | { readonly type: 'SymmetricKeyVersion'; readonly version: KeyVersion; readonly primary: boolean }
  /** google.protobuf.Empty: the access-binding methods (SPEC.md §4.1.13–14). */
  | { readonly type: 'Empty' };

export interface Operation {
  readonly id: string;
  readonly description: string;
  readonly createdAt: number;
  readonly createdBy: string;
  readonly modifiedAt: number;
  readonly done: boolean;
  readonly metadata: OperationMetadata;
  readonly response?: OperationResponse;
  readonly error?: { readonly code: number; readonly message: string };
  /** The resource the operation acted on (a key id); ListOperations filters by it. */
  readonly resourceId: string;
  /** The client's Idempotency-Key, scoped to createdBy. */
  readonly idempotencyKey?: string;
}
