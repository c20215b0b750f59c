import { Code, ERR, KmsError } from '../../errors/kms-error.js';
import {
  assertAlgorithmAvailable,
  assertCanBecomePrimary,
  assertRotationPeriod,
  assertRoomForVersion,
  cancelDestruction,
  destroy,
  isRotationDue,
  DELETION_GRACE_MS,
  MATERIAL_LENGTH,
  pendingPeriodOrDefault,
  scheduleDestruction,
  settableStatus,
  type KeyStatus,
  type KeyVersion,
  type SymmetricAlgorithm,
  type SymmetricKey,
} from '../../domain/key.js';
import { newId } from '../../domain/ids.js';
import type { KeyView, Operation, OperationMetadata, OperationResponse } from '../../domain/operation.js';
import { effectivePageSize, type Page } from '../../domain/paging.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { wrappedAad } from '../../crypto/wrapped-material.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { RootKeyProvider } from '../../ports/root-key.js';
import type { HsmKeyVersions } from '../../ports/hsm.js';
import type { Logger } from 'pino';
import type { KeyChange, NewVersion, Store } from '../../ports/store.js';
import { missingKey, type Authorizer, type Permission } from '../access/authorizer.js';
import { callerId } from '../../domain/principal.js';
import type { AuditLog } from '../audit/audit-log.js';
import { note } from '../audit/trail.js';
import type { CallContext } from '../context.js';
import type { KeyCache } from './key-cache.js';

// SymmetricKeyService (SPEC.md §4.1). Every mutation reads the key, computes the next state with
// the pure rules of domain/key.ts, and commits key, versions and Operation in one atomic store call
// guarded by the key's revision; a concurrent change makes the commit fail and the mutation re-run.

export interface CreateKeyInput {
  readonly folderId: string;
  readonly name: string;
  readonly description: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly defaultAlgorithm: SymmetricAlgorithm;
  readonly rotationPeriodMs?: number;
  readonly deletionProtection: boolean;
}

export const UPDATABLE_FIELDS = [
  'name',
  'description',
  'status',
  'labels',
  'default_algorithm',
  'rotation_period',
  'deletion_protection',
] as const;
export type UpdatableField = (typeof UPDATABLE_FIELDS)[number];

export interface UpdateKeyInput {
  readonly keyId: string;
  readonly fields: ReadonlySet<UpdatableField>;
  readonly name: string;
  readonly description: string;
  readonly status: KeyStatus | 'STATUS_UNSPECIFIED';
  readonly labels: Readonly<Record<string, string>>;
  readonly defaultAlgorithm: SymmetricAlgorithm | undefined;
  readonly rotationPeriodMs?: number;
  readonly deletionProtection: boolean;
}

/** A version to create with fixed id and, optionally, fixed material (the --seed file). */
export interface SeedVersion {
  readonly id?: string;
  readonly algorithm?: SymmetricAlgorithm;
  readonly material?: Buffer;
}

export interface KeyServiceDeps {
  readonly store: Store;
  readonly rootKey: RootKeyProvider;
  readonly cache: Pick<KeyCache, 'invalidate'>;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
  readonly random: Random;
  /** Hosts AES_256_HSM versions; without it they cannot be created (FAILED_PRECONDITION). */
  readonly hsm?: HsmKeyVersions;
  /** Reports HSM objects that could not be destroyed (they are then left in the token). */
  readonly logger?: Pick<Logger, 'warn'>;
  /** Records each mutation in the same transaction as its change; absent in unit tests of other concerns. */
  readonly audit?: Pick<AuditLog, 'forCommit' | 'committed' | 'systemCommit'>;
}

const MAX_COMMIT_ATTEMPTS = 5;

/** Thrown inside a scheduled rotation's plan when the key stopped being due. */
class NotDue extends Error {}
/** Who the operations of automatic rotation are attributed to. */
export const SCHEDULER_SUBJECT = 'kmsd-scheduler';
/** Who the operations of keys created by a --seed file are attributed to. */
export const SEED_SUBJECT = 'kmsd-seed';

interface Plan {
  readonly change: Omit<KeyChange, 'operation' | 'expectRevision'>;
  readonly description: string;
  readonly metadata: OperationMetadata;
  readonly response: OperationResponse;
  /** createdBy of the operation when no caller made it (background work, seeding). */
  readonly systemSubject?: string;
  /** The audit event of a change no caller made. */
  readonly auditEvent?: string;
}

export function keyService(d: KeyServiceDeps) {
  const bump = (key: SymmetricKey, patch: Partial<SymmetricKey>): SymmetricKey => ({ ...key, ...patch, revision: key.revision + 1 });

  async function liveKey(keyId: string): Promise<SymmetricKey> {
    const key = await d.store.getKey(keyId);
    if (!key || key.deletedAt !== undefined) throw ERR.keyNotFound(keyId);
    return key;
  }

  /** The key if it is live and the caller holds `permission` on it; a missing key does not show to callers without access. */
  async function visibleKey(ctx: CallContext, keyId: string, permission: Permission): Promise<SymmetricKey> {
    note(ctx, { keyId });
    const key = await d.store.getKey(keyId);
    if (!key || key.deletedAt !== undefined) return missingKey(d.authorizer, ctx.caller, permission, keyId, () => ERR.keyNotFound(keyId));
    note(ctx, { folderId: key.folderId });
    await d.authorizer.authorize(ctx.caller, permission, { folderId: key.folderId, keyId });
    return key;
  }

  async function versionOf(key: SymmetricKey, versionId: string): Promise<KeyVersion> {
    const v = await d.store.getVersion(key.id, versionId);
    if (!v) throw ERR.versionNotFound(key.id, versionId);
    return v;
  }

  async function view(key: SymmetricKey): Promise<KeyView> {
    return { key, primaryVersion: await versionOf(key, key.primaryVersionId) };
  }

  /** References of the key's HSM-hosted versions that still have one (destroyed versions have none). */
  async function hsmReferences(keyId: string): Promise<{ id: string; reference: Buffer }[]> {
    const found: { id: string; reference: Buffer }[] = [];
    let pageToken = '';
    do {
      const page = await d.store.listVersions(keyId, { pageSize: 1000, pageToken });
      for (const v of page.items) {
        if (!v.hostedByHsm) continue;
        const reference = await d.store.getWrappedMaterial(keyId, v.id);
        if (reference) found.push({ id: v.id, reference });
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return found;
  }

  /**
   * Destroys HSM key objects once the store no longer refers to them. A failure leaves an unused
   * object in the token (labelled with its key and version) and is logged; the destruction in the
   * store stands either way.
   */
  async function destroyInHsm(keyId: string, versions: readonly { id: string; reference: Buffer }[]): Promise<void> {
    for (const v of versions) {
      try {
        if (!d.hsm) throw new Error('no HSM is configured');
        await d.hsm.destroy(v.reference);
      } catch (e) {
        d.logger?.warn({ keyId, versionId: v.id, err: e }, 'could not destroy the HSM object of a destroyed key version; delete it from the token by hand');
      }
    }
  }

  async function newVersion(key: Pick<SymmetricKey, 'id'>, now: number, seed: SeedVersion = {}, algorithm?: SymmetricAlgorithm): Promise<NewVersion> {
    const alg = seed.algorithm ?? algorithm;
    if (alg === undefined) throw ERR.field('default_algorithm', 'required');
    assertAlgorithmAvailable(alg, d.hsm !== undefined);
    if (alg === 'AES_256_HSM' && d.hsm) {
      if (seed.material) throw ERR.invalidArgument('AES_256_HSM material is generated inside the HSM and cannot be given');
      const version: KeyVersion = { id: seed.id ?? newId(d.random), keyId: key.id, status: 'ACTIVE', algorithm: alg, createdAt: now, hostedByHsm: true };
      // The store keeps a reference to the HSM object in place of wrapped material. Should the
      // commit fail, the object stays in the token unused (it is labelled with its key and version).
      return { version, wrappedMaterial: await d.hsm.generate(key.id, version.id) };
    }
    const length = MATERIAL_LENGTH[alg];
    if (length === undefined) throw ERR.unimplemented(`${alg} versions cannot be created by this build`);
    if (seed.material && seed.material.length !== length) {
      throw ERR.invalidArgument(`material for ${alg} must be ${length} bytes, got ${seed.material.length}`);
    }
    const version: KeyVersion = {
      id: seed.id ?? newId(d.random),
      keyId: key.id,
      status: 'ACTIVE',
      algorithm: alg,
      createdAt: now,
      hostedByHsm: false,
    };
    const raw = seed.material ?? d.random.bytes(length);
    const material = new SecretBytes(raw);
    raw.fill(0);
    try {
      return { version, wrappedMaterial: await d.rootKey.wrap(material, wrappedAad(key.id, version.id)) };
    } finally {
      material.wipe();
    }
  }

  function operation(ctx: CallContext | undefined, resourceId: string, now: number, plan: Plan): Operation {
    const op: Operation = {
      id: newId(d.random),
      description: plan.description,
      createdAt: now,
      createdBy: ctx ? callerId(ctx.caller) : (plan.systemSubject ?? SCHEDULER_SUBJECT),
      modifiedAt: now,
      done: true,
      metadata: plan.metadata,
      response: plan.response,
      resourceId,
    };
    return ctx?.idempotencyKey === undefined ? op : { ...op, idempotencyKey: ctx.idempotencyKey };
  }

  /**
   * The operation an earlier request with the same Idempotency-Key made, if any. The key is scoped
   * to the caller; reusing it for a different method or key is the caller's error, not a replay.
   */
  async function replayed(ctx: CallContext | undefined, expect?: { type: OperationMetadata['type']; resourceId?: string }): Promise<Operation | undefined> {
    if (ctx?.idempotencyKey === undefined) return undefined;
    const op = await d.store.findOperationByIdempotencyKey(callerId(ctx.caller), ctx.idempotencyKey);
    if (op && expect && (op.metadata.type !== expect.type || (expect.resourceId !== undefined && op.resourceId !== expect.resourceId))) {
      throw ERR.invalidArgument('Idempotency-Key was already used for a different request');
    }
    return op;
  }

  /** Commits a planned change with its Operation, invalidates the cache, and returns the Operation. */
  async function commit(ctx: CallContext | undefined, resourceId: string, now: number, expectRevision: number | undefined, plan: Plan): Promise<Operation> {
    const op = operation(ctx, resourceId, now, plan);
    const audit = ctx ? d.audit?.forCommit(ctx) : d.audit?.systemCommit(plan.auditEvent ?? 'kmsd.background', { keyId: resourceId, folderId: plan.change.key.folderId });
    try {
      await d.store.commitKeyChange({ ...plan.change, ...(expectRevision === undefined ? {} : { expectRevision }), operation: op, ...(audit ? { audit } : {}) });
      d.audit?.committed(ctx);
    } catch (e) {
      // Two retries of one request with the same Idempotency-Key raced: the first one won.
      // A new key's id is fresh per request, so only mutations of existing keys compare it.
      const earlier = await replayed(ctx, { type: plan.metadata.type, ...(expectRevision === undefined ? {} : { resourceId }) });
      if (earlier) return earlier;
      throw e;
    } finally {
      d.cache.invalidate(resourceId);
    }
    return op;
  }

  /** Runs a mutation of an existing key, re-planning when another change commits first. */
  async function mutate(
    ctx: CallContext | undefined,
    keyId: string,
    type: OperationMetadata['type'],
    permission: Permission,
    plan: (key: SymmetricKey, now: number) => Promise<Plan>,
  ): Promise<Operation> {
    note(ctx, { keyId });
    const earlier = await replayed(ctx, { type, resourceId: keyId });
    if (earlier) return earlier;
    for (let attempt = 1; ; attempt++) {
      const key = ctx ? await visibleKey(ctx, keyId, permission) : await liveKey(keyId);
      const now = d.clock.now();
      try {
        return await commit(ctx, keyId, now, key.revision, await plan(key, now));
      } catch (e) {
        if (e instanceof KmsError && e.code === Code.Aborted && attempt < MAX_COMMIT_ATTEMPTS) continue;
        throw e;
      }
    }
  }

  async function rotatePlan(key: SymmetricKey, now: number): Promise<Plan> {
    assertRoomForVersion(await d.store.countLiveVersions(key.id), key.id);
    const created = await newVersion(key, now, {}, key.defaultAlgorithm);
    const next = bump(key, { primaryVersionId: created.version.id, rotatedAt: now });
    return {
      change: { key: next, insertVersions: [created] },
      description: 'rotate key',
      metadata: { type: 'RotateSymmetricKeyMetadata', keyId: key.id, newPrimaryVersionId: created.version.id },
      response: { type: 'SymmetricKey', view: { key: next, primaryVersion: created.version } },
    };
  }

  async function createKey(ctx: CallContext | undefined, input: CreateKeyInput, fixed: { id?: string; versions?: readonly SeedVersion[]; primaryVersionId?: string } = {}): Promise<Operation> {
    assertAlgorithmAvailable(input.defaultAlgorithm, d.hsm !== undefined);
    assertRotationPeriod(input.rotationPeriodMs);
    const now = d.clock.now();
    const keyId = fixed.id ?? newId(d.random);
    note(ctx, { keyId });
    const versions: NewVersion[] = [];
    for (const seed of fixed.versions ?? [{}]) versions.push(await newVersion({ id: keyId }, now, seed, input.defaultAlgorithm));
    const primary = versions.find((v) => v.version.id === fixed.primaryVersionId) ?? versions[0]!;
    const key: SymmetricKey = {
      id: keyId,
      folderId: input.folderId,
      name: input.name,
      description: input.description,
      labels: { ...input.labels },
      status: 'ACTIVE',
      primaryVersionId: primary.version.id,
      defaultAlgorithm: input.defaultAlgorithm,
      createdAt: now,
      ...(input.rotationPeriodMs === undefined ? {} : { rotationPeriodMs: input.rotationPeriodMs }),
      deletionProtection: input.deletionProtection,
      revision: 1,
    };
    return commit(ctx, keyId, now, undefined, {
      change: { key, insertVersions: versions },
      description: 'create symmetric key',
      metadata: { type: 'CreateSymmetricKeyMetadata', keyId, primaryVersionId: primary.version.id },
      response: { type: 'SymmetricKey', view: { key, primaryVersion: primary.version } },
      ...(ctx ? {} : { systemSubject: SEED_SUBJECT, auditEvent: 'kmsd.SeedSymmetricKey' }),
    });
  }

  return {
    async create(ctx: CallContext, input: CreateKeyInput): Promise<Operation> {
      note(ctx, { folderId: input.folderId });
      await d.authorizer.authorize(ctx.caller, 'kms.keys.create', { folderId: input.folderId });
      const earlier = await replayed(ctx, { type: 'CreateSymmetricKeyMetadata' });
      if (earlier) return earlier;
      return createKey(ctx, input);
    },

    async get(ctx: CallContext, keyId: string): Promise<KeyView> {
      return view(await visibleKey(ctx, keyId, 'kms.keys.get'));
    },

    async list(ctx: CallContext, folderId: string, pageSize: number, pageToken: string): Promise<Page<KeyView>> {
      note(ctx, { folderId });
      let only: ReadonlySet<string> | undefined;
      if (!(await d.authorizer.allows(ctx.caller, 'kms.keys.list', { folderId }))) {
        // Without a folder-wide grant a caller sees the keys it holds a role on, and nothing else.
        only = await d.authorizer.keysGranted(ctx.caller, 'kms.keys.get');
        if (only.size === 0) await d.authorizer.authorize(ctx.caller, 'kms.keys.list', { folderId });
      }
      const page = await d.store.listKeys(folderId, { pageSize: effectivePageSize(pageSize), pageToken }, only);
      // The page's primary versions in one read, not one per key (100 round trips on PostgreSQL).
      const primaries = new Map((await d.store.getVersions(page.items.map((k) => ({ keyId: k.id, versionId: k.primaryVersionId })))).map((v) => [v.id, v]));
      const items = page.items.map((key): KeyView => {
        const primaryVersion = primaries.get(key.primaryVersionId);
        if (!primaryVersion) throw ERR.versionNotFound(key.id, key.primaryVersionId);
        return { key, primaryVersion };
      });
      return { items, nextPageToken: page.nextPageToken };
    },

    async listVersions(ctx: CallContext, keyId: string, pageSize: number, pageToken: string): Promise<Page<{ version: KeyVersion; primary: boolean }>> {
      const key = await visibleKey(ctx, keyId, 'kms.keys.get');
      const page = await d.store.listVersions(keyId, { pageSize: effectivePageSize(pageSize), pageToken });
      return {
        items: page.items.map((version) => ({ version, primary: version.id === key.primaryVersionId })),
        nextPageToken: page.nextPageToken,
      };
    },

    async listOperations(ctx: CallContext, keyId: string, pageSize: number, pageToken: string): Promise<Page<Operation>> {
      await visibleKey(ctx, keyId, 'kms.keys.get');
      return d.store.listOperations(keyId, { pageSize: effectivePageSize(pageSize), pageToken });
    },

    async update(ctx: CallContext, input: UpdateKeyInput): Promise<Operation> {
      if (input.fields.size === 0) throw ERR.field('update_mask', 'required');
      return mutate(ctx, input.keyId, 'UpdateSymmetricKeyMetadata', 'kms.keys.update', async (key) => {
        const patch: { -readonly [K in keyof SymmetricKey]?: SymmetricKey[K] } = {};
        let rotationPeriodCleared = false;
        for (const field of input.fields) {
          switch (field) {
            case 'name':
              patch.name = input.name;
              break;
            case 'description':
              patch.description = input.description;
              break;
            case 'labels':
              patch.labels = { ...input.labels };
              break;
            case 'status':
              await d.authorizer.authorize(ctx.caller, 'kms.keys.updateStatus', { folderId: key.folderId, keyId: key.id });
              patch.status = settableStatus(input.status);
              break;
            case 'default_algorithm':
              if (input.defaultAlgorithm === undefined) throw ERR.field('default_algorithm', 'required when listed in update_mask');
              assertAlgorithmAvailable(input.defaultAlgorithm, d.hsm !== undefined);
              patch.defaultAlgorithm = input.defaultAlgorithm;
              break;
            case 'rotation_period':
              assertRotationPeriod(input.rotationPeriodMs);
              if (input.rotationPeriodMs === undefined) rotationPeriodCleared = true;
              else patch.rotationPeriodMs = input.rotationPeriodMs;
              break;
            case 'deletion_protection':
              patch.deletionProtection = input.deletionProtection;
              break;
          }
        }
        let next = bump(key, patch);
        if (rotationPeriodCleared) {
          const { rotationPeriodMs: _cleared, ...rest } = next;
          next = rest;
        }
        const primaryVersion = await versionOf(key, key.primaryVersionId);
        return {
          change: { key: next },
          description: 'update key',
          metadata: { type: 'UpdateSymmetricKeyMetadata', keyId: key.id },
          response: { type: 'SymmetricKey', view: { key: next, primaryVersion } },
        };
      });
    },

    delete(ctx: CallContext, keyId: string): Promise<Operation> {
      return mutate(ctx, keyId, 'DeleteSymmetricKeyMetadata', 'kms.keys.delete', async (key, now) => {
        if (key.deletionProtection) throw ERR.failedPrecondition(`key ${keyId} has deletion protection; clear it with Update first`);
        return {
          change: { key: bump(key, { deletedAt: now }) },
          description: 'delete key',
          metadata: { type: 'DeleteSymmetricKeyMetadata', keyId },
          response: { type: 'SymmetricKey', view: await view(key) },
        };
      });
    },

    setPrimaryVersion(ctx: CallContext, keyId: string, versionId: string): Promise<Operation> {
      note(ctx, { versionId });
      return mutate(ctx, keyId, 'SetPrimarySymmetricKeyVersionMetadata', 'kms.keys.setPrimaryVersion', async (key) => {
        const version = await versionOf(key, versionId);
        assertCanBecomePrimary(version);
        const next = bump(key, { primaryVersionId: versionId });
        return {
          change: { key: next },
          description: 'set primary version',
          metadata: { type: 'SetPrimarySymmetricKeyVersionMetadata', keyId, versionId },
          response: { type: 'SymmetricKey', view: { key: next, primaryVersion: version } },
        };
      });
    },

    async scheduleVersionDestruction(ctx: CallContext, keyId: string, versionId: string, pendingPeriodMs: number | undefined): Promise<Operation> {
      note(ctx, { versionId });
      const pending = pendingPeriodOrDefault(pendingPeriodMs);
      return mutate(ctx, keyId, 'ScheduleSymmetricKeyVersionDestructionMetadata', 'kms.keys.scheduleVersionDestruction', async (key, now) => {
        const scheduled = scheduleDestruction(key, await versionOf(key, versionId), now, pending);
        return {
          change: { key: bump(key, {}), updateVersions: [scheduled] },
          description: 'schedule version destruction',
          metadata: { type: 'ScheduleSymmetricKeyVersionDestructionMetadata', keyId, versionId, destroyAt: scheduled.destroyAt! },
          response: { type: 'SymmetricKeyVersion', version: scheduled, primary: false },
        };
      });
    },

    cancelVersionDestruction(ctx: CallContext, keyId: string, versionId: string): Promise<Operation> {
      note(ctx, { versionId });
      return mutate(ctx, keyId, 'CancelSymmetricKeyVersionDestructionMetadata', 'kms.keys.cancelVersionDestruction', async (key, now) => {
        const restored = cancelDestruction(await versionOf(key, versionId), now);
        return {
          change: { key: bump(key, {}), updateVersions: [restored] },
          description: 'cancel version destruction',
          metadata: { type: 'CancelSymmetricKeyVersionDestructionMetadata', keyId, versionId },
          response: { type: 'SymmetricKeyVersion', version: restored, primary: restored.id === key.primaryVersionId },
        };
      });
    },

    rotate(ctx: CallContext, keyId: string): Promise<Operation> {
      return mutate(ctx, keyId, 'RotateSymmetricKeyMetadata', 'kms.keys.rotate', async (key, now) => {
        return rotatePlan(key, now);
      });
    },

    /** Creates a key with a fixed id and optional fixed material, unless that id exists (--seed). */
    async seed(input: CreateKeyInput, fixed: { id: string; versions?: readonly SeedVersion[]; primaryVersionId?: string }): Promise<'created' | 'exists'> {
      if (await d.store.getKey(fixed.id)) return 'exists';
      await createKey(undefined, input, fixed);
      return 'created';
    },

    /** Background work (SPEC.md §1.5, §1.4, §1.6): one pass over whatever is due at the clock's now. */
    async runDueWork(limit = 100): Promise<{ rotated: number; destroyed: number; purged: number; errors: unknown[] }> {
      const now = d.clock.now();
      const errors: unknown[] = [];
      let rotated = 0;
      let destroyed = 0;
      let purged = 0;
      // Each item is independent: one failure is recorded and the sweep carries on.
      for (const due of await d.store.findKeysDueForRotation(now, limit)) {
        try {
          // Re-checked inside the plan: a manual rotation may have committed since the query.
          await mutate(undefined, due.id, 'RotateSymmetricKeyMetadata', 'kms.keys.rotate', async (key, at) => {
            if (!isRotationDue(key, at)) throw new NotDue();
            return { ...(await rotatePlan(key, at)), auditEvent: 'yandex.cloud.audit.kms.RotateSymmetricKey' };
          });
          rotated++;
        } catch (e) {
          if (!(e instanceof NotDue)) errors.push(e);
        }
      }
      for (const due of await d.store.findVersionsDueForDestruction(now, limit)) {
        try {
          const key = await liveKey(due.keyId);
          const current = await versionOf(key, due.id);
          if (current.status !== 'SCHEDULED_FOR_DESTRUCTION' || (current.destroyAt ?? Infinity) > now) continue;
          const audit = d.audit?.systemCommit('kmsd.DestroySymmetricKeyVersion', { keyId: key.id, folderId: key.folderId, versionId: current.id });
          const hsmReference = current.hostedByHsm ? await d.store.getWrappedMaterial(key.id, current.id) : undefined;
          // (the store drops the reference with the DESTROYED status; the object goes right after)
          await d.store.commitKeyChange({ key: bump(key, {}), expectRevision: key.revision, updateVersions: [destroy(current)], ...(audit ? { audit } : {}) });
          d.cache.invalidate(key.id);
          if (hsmReference) await destroyInHsm(key.id, [{ id: current.id, reference: hsmReference }]);
          destroyed++;
        } catch (e) {
          errors.push(e);
        }
      }
      for (const gone of await d.store.findDeletedKeys(now - DELETION_GRACE_MS, limit)) {
        try {
          const inHsm = await hsmReferences(gone.id);
          await d.store.purgeKey(gone.id);
          d.cache.invalidate(gone.id);
          await destroyInHsm(gone.id, inHsm);
          purged++;
        } catch (e) {
          errors.push(e);
        }
      }
      return { rotated, destroyed, purged, errors };
    },
  };
}

export type KeyService = ReturnType<typeof keyService>;
