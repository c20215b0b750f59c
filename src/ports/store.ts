import type { SecretBytes } from '../crypto/secret-bytes.js';
import type { KeyVersion, SymmetricKey } from '../domain/key.js';
import type { Operation } from '../domain/operation.js';
import type { Page, PageRequest } from '../domain/paging.js';
import type { Principal, TokenRecord } from '../domain/principal.js';
import type { AccessBinding, BindingDelta, Scope, Subject } from '../domain/access.js';
import type { AuditEvent, AuditFilter, AuditHead, StoredAuditRecord } from '../domain/audit.js';
import type { SealedBatch } from '../crypto/audit-chain.js';
import type { ChangeFeed } from './change-feed.js';

// The persistence port. Every mutation of a key is one atomic commitKeyChange, so a store never
// holds half a rotation; adapters implement it with one database transaction. Every adapter passes
// test/contract/store.contract.ts.

export interface NewVersion {
  readonly version: KeyVersion;
  /** The version's material wrapped by the root key; the store never sees it in plaintext. */
  readonly wrappedMaterial: Buffer;
}

export interface KeyChange {
  /** The key as it is after the change. */
  readonly key: SymmetricKey;
  /** Revision the stored key must still have; absent means the key is new and is inserted. */
  readonly expectRevision?: number;
  readonly insertVersions?: readonly NewVersion[];
  /** Status changes of existing versions; a version that becomes DESTROYED loses its material. */
  readonly updateVersions?: readonly KeyVersion[];
  readonly operation?: Operation;
  /** Audit records committed in the same transaction: the change and its record land together or not at all. */
  readonly audit?: AuditAppend;
}

/**
 * Audit events to append to the chain inside a store transaction. The store reads the current head
 * under a lock, lets `seal` number and hash the events after it, and writes records and new head.
 */
export interface AuditAppend {
  readonly events: readonly AuditEvent[];
  readonly seal: (head: AuditHead | undefined, events: readonly AuditEvent[]) => SealedBatch;
}

export interface VersionRef {
  readonly keyId: string;
  readonly versionId: string;
}

/** A version as the crypto path loads it: with its wrapped material (or HSM reference) when ACTIVE. */
export interface LoadedVersion {
  readonly version: KeyVersion;
  /** Present for ACTIVE versions only: the others never encrypt or decrypt, so their material is not read. */
  readonly wrappedMaterial?: Buffer;
}

/** A key and every one of its versions, as of one moment. */
export interface KeyWithVersions {
  readonly key: SymmetricKey;
  /** Ordered by creation time then id. */
  readonly versions: readonly LoadedVersion[];
}

export interface KeyStore {
  /** Includes deleted keys (deletedAt set) until they are purged; callers decide what to show. */
  getKey(id: string): Promise<SymmetricKey | undefined>;
  /**
   * The key (deleted or not, as getKey) with all its versions and the material of the ACTIVE ones,
   * in one read (one statement, so one consistent state): all a cold crypto call needs from the store.
   */
  getKeyWithVersions(id: string): Promise<KeyWithVersions | undefined>;
  getVersion(keyId: string, versionId: string): Promise<KeyVersion | undefined>;
  /** Many versions, each under its own key, in one read (List: a page's primary versions); a ref naming no version of its key is left out. */
  getVersions(refs: readonly VersionRef[]): Promise<KeyVersion[]>;
  /** Undefined when the version does not exist or is destroyed. */
  getWrappedMaterial(keyId: string, versionId: string): Promise<Buffer | undefined>;
  /** Keys of a folder, not deleted, ordered by creation time then id; with `only`, just those ids. */
  listKeys(folderId: string, page: PageRequest, only?: ReadonlySet<string>): Promise<Page<SymmetricKey>>;
  /** All versions of a key, ordered by creation time then id. */
  listVersions(keyId: string, page: PageRequest): Promise<Page<KeyVersion>>;
  /** Versions that are not DESTROYED. */
  countLiveVersions(keyId: string): Promise<number>;
  /**
   * Applies a change atomically: on any error nothing of it is written. Throws KmsError
   *  - ABORTED when expectRevision no longer matches, the key was purged, or updateVersions names a
   *    version that does not exist;
   *  - ALREADY_EXISTS when inserting a key, version or operation id that exists, or when the
   *    operation's (createdBy, idempotencyKey) was used before;
   *  - a plain Error (a bug in the caller) when a version's keyId is not change.key.id.
   */
  commitKeyChange(change: KeyChange): Promise<void>;
  /** Keys not deleted whose automatic rotation is due at `now`. */
  findKeysDueForRotation(now: number, limit: number): Promise<SymmetricKey[]>;
  /** SCHEDULED_FOR_DESTRUCTION versions of keys not deleted whose destroyAt has passed. */
  findVersionsDueForDestruction(now: number, limit: number): Promise<KeyVersion[]>;
  /** Deleted keys with deletedAt < deletedBefore (the caller passes now − grace period). */
  findDeletedKeys(deletedBefore: number, limit: number): Promise<SymmetricKey[]>;
  /**
   * Removes a deleted key with all its versions, their material and its access bindings; operations stay. A missing key
   * is a no-op (another node may have purged it); a key that is not deleted is FAILED_PRECONDITION.
   */
  purgeKey(keyId: string): Promise<void>;
}

export interface OperationStore {
  getOperation(id: string): Promise<Operation | undefined>;
  /** Operations of one resource, newest first. */
  listOperations(resourceId: string, page: PageRequest): Promise<Page<Operation>>;
  findOperationByIdempotencyKey(createdBy: string, idempotencyKey: string): Promise<Operation | undefined>;
}

export interface PrincipalStore {
  /** ALREADY_EXISTS when the id is taken. */
  createPrincipal(p: Principal, audit?: AuditAppend): Promise<void>;
  getPrincipal(id: string): Promise<Principal | undefined>;
  /** Ordered by creation time then id. */
  listPrincipals(page: PageRequest): Promise<Page<Principal>>;
  /**
   * Removes a principal with its tokens and every access binding naming it; returns the ids of the
   * tokens removed (for caches), or undefined when the principal does not exist (nothing written).
   */
  deletePrincipal(id: string, audit?: AuditAppend): Promise<string[] | undefined>;
  /** NOT_FOUND when the principal does not exist. */
  createToken(t: TokenRecord, audit?: AuditAppend): Promise<void>;
  getToken(id: string): Promise<TokenRecord | undefined>;
  /** Tokens of a principal, revoked ones included, oldest first. */
  listTokens(principalId: string): Promise<TokenRecord[]>;
  /** Sets revokedAt unless already revoked; false when the token does not exist (nothing written). */
  revokeToken(id: string, at: number, audit?: AuditAppend): Promise<boolean>;
}

export interface AccessBindingChange {
  readonly scope: Scope;
  /** Replaces the scope's bindings with these (SetAccessBindings), or … */
  readonly replace?: readonly AccessBinding[];
  /** … applies these deltas in order (UpdateAccessBindings). */
  readonly deltas?: readonly BindingDelta[];
  /** Stored when the change commits (key bindings are changed through operations). */
  readonly operation?: Operation;
  readonly audit?: AuditAppend;
}

export interface AccessStore {
  /** Bindings set directly on a scope, ordered by role then subject. */
  listBindings(scope: Scope): Promise<AccessBinding[]>;
  /** Every binding, on any scope, whose subject is one of `subjects`. */
  bindingsOfSubjects(subjects: readonly Subject[]): Promise<{ scope: Scope; binding: AccessBinding }[]>;
  /**
   * Applies a change atomically under a lock on the scope, so concurrent updates of one scope
   * serialise; returns the deltas that changed something.
   */
  changeBindings(change: AccessBindingChange): Promise<BindingDelta[]>;
}

export interface AuditStore {
  /** Appends events as one transaction (group commit of many calls). */
  appendAudit(append: AuditAppend): Promise<void>;
  /**
   * Optional: from now on appendAudit runs on a thread of its own (a serving process calls it), where
   * it seals with `macKey` — the key of the seal its callers pass — instead of calling their seal.
   */
  writeAuditOnThread?(macKey: SecretBytes): void;
  getAuditHead(): Promise<AuditHead | undefined>;
  /** Records in seq order after `afterSeq`, at most `limit` (verification, export). */
  scanAudit(afterSeq: number, limit: number): Promise<StoredAuditRecord[]>;
  /** Records matching the filter in seq order, paged (page token = last seq). */
  queryAudit(filter: AuditFilter, page: PageRequest): Promise<Page<StoredAuditRecord>>;
}

/** One stored blob of version material, as root-key rotation walks them. */
export interface StoredMaterial {
  readonly keyId: string;
  readonly versionId: string;
  /** Wrapped material, or an HSM reference for an HSM-hosted version; never NULL (destroyed versions are left out). */
  readonly material: Buffer;
}

/**
 * What `kmsd root-key rotate` needs: a walk over every stored blob and compare-and-set updates, so
 * a rewrap that races a destruction, a purge or another rewrap never overwrites what they did.
 */
export interface RewrapStore {
  /** Blobs of versions whose id sorts after `afterVersionId` ('' for the first page), in version id order. */
  listStoredMaterial(afterVersionId: string, limit: number): Promise<StoredMaterial[]>;
  /** Replaces the blob only if it is still `expected`; false when it changed or is gone. */
  replaceStoredMaterial(keyId: string, versionId: string, expected: Buffer, next: Buffer): Promise<boolean>;
  /** Replaces a meta value only if it is still `expected`; false otherwise. */
  replaceMeta(name: string, expected: string, next: string): Promise<boolean>;
}

/** Small named values kmsd keeps about itself (the root-key check value, the bootstrap admin id). */
export interface MetaStore {
  getMeta(name: string): Promise<string | undefined>;
  /** Sets the value only if the name is unset; returns the value now stored. */
  initMeta(name: string, value: string): Promise<string>;
}

/**
 * Background work (automatic rotation, destruction, purging) runs on every node that shares the
 * store; the store lets one of them do a pass at a time. Correctness does not rest on it: every
 * change a pass makes is a revision-checked commitKeyChange, so a pass that overlaps another (a
 * lock lost with its connection) only finds its changes ABORTED or no longer due.
 */
export interface BackgroundWorkLock {
  /**
   * Runs `work` while no other process sharing the store runs work under the name `job`. When one
   * does: with `wait`, waits for it to finish, then runs; without, answers { ran: false } at once.
   */
  exclusively<T>(job: string, options: { readonly wait: boolean }, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
}

/**
 * One thing in a store, as a backup holds it. Versions carry their material wrapped by the root
 * key, exactly as stored; tokens carry only the hash of their secret. New tables are new members
 * (with a line in every store's export and import).
 */
export type SnapshotRecord =
  | { readonly type: 'meta'; readonly name: string; readonly value: string }
  | { readonly type: 'principal'; readonly principal: Principal }
  | { readonly type: 'token'; readonly token: TokenRecord }
  | { readonly type: 'key'; readonly key: SymmetricKey }
  /** wrappedMaterial is absent for a DESTROYED version. */
  | { readonly type: 'version'; readonly version: KeyVersion; readonly wrappedMaterial?: Buffer }
  | { readonly type: 'operation'; readonly operation: Operation }
  | { readonly type: 'binding'; readonly scope: Scope; readonly binding: AccessBinding }
  /** The audit chain as stored: each record's canonical body and chain hash, and the sealed head. */
  | { readonly type: 'audit'; readonly record: StoredAuditRecord }
  | { readonly type: 'auditHead'; readonly head: AuditHead };

export type SnapshotRecordType = SnapshotRecord['type'];

export interface SnapshotStore {
  /**
   * Everything in the store as of one moment (one read transaction; writes made meanwhile are not
   * in it), ordered so that importSnapshot can insert each record when it arrives: meta,
   * principals, tokens, keys, versions, operations, bindings, audit records, audit head.
   */
  exportSnapshot(): AsyncIterable<SnapshotRecord>;
  /**
   * Writes `records` in one transaction, into a store that holds nothing yet (not even meta):
   * FAILED_PRECONDITION otherwise. If `records` throws, or a record is refused (INVALID_ARGUMENT,
   * naming it), nothing is written. Nothing else may write through this store object meanwhile.
   */
  importSnapshot(records: AsyncIterable<SnapshotRecord>): Promise<Readonly<Record<SnapshotRecordType, number>>>;
}

export interface Store extends KeyStore, OperationStore, PrincipalStore, AccessStore, AuditStore, MetaStore, RewrapStore, BackgroundWorkLock, SnapshotStore {
  /** Every committed write publishes what it changed here (see ports/change-feed.ts). */
  readonly changes: ChangeFeed;
  close(): Promise<void>;
}
