import type { HsmKeyVersions } from '../../ports/hsm.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { cryptoRandom } from '../../adapters/random.js';
import { softwareRootKey } from '../../adapters/rootkey/software-root-key.js';
import { openSqliteStore } from '../../adapters/store-sqlite/sqlite-store.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { DAY_MS, DELETION_GRACE_MS, type KeyVersion } from '../../domain/key.js';
import type { Operation } from '../../domain/operation.js';
import type { Caller, Principal } from '../../domain/principal.js';
import { GLOBAL_SCOPE } from '../../domain/access.js';
import { Code, isKmsError, KmsError } from '../../errors/kms-error.js';
import type { Clock } from '../../ports/clock.js';
import type { KeyChange, Store } from '../../ports/store.js';
import { bindingAuthorizer } from '../access/authorizer.js';
import type { CallContext } from '../context.js';
import { KeyCache } from './key-cache.js';
import { keyService, SCHEDULER_SUBJECT, type CreateKeyInput, type KeyService, type UpdateKeyInput } from './key-service.js';

// SymmetricKeyService over a real SQLite store (in memory), a software root key and a clock the
// test moves: concurrency, idempotency, background work and authorization as a client sees them.

const T0 = Date.UTC(2026, 0, 1);
const FOLDER = 'b1gfolder';

const admin: Principal = { id: 'ajeadmin', type: 'userAccount', name: 'admin', createdAt: T0 };
const user: Principal = { id: 'ajeuser', type: 'userAccount', name: 'user', createdAt: T0 };
const asAdmin: CallContext = { caller: { kind: 'principal', principal: admin }, requestId: 'req-admin' };
const asUser: CallContext = { caller: { kind: 'principal', principal: user }, requestId: 'req-user' };
const withIdempotencyKey = (key: string, principal = admin): CallContext => ({ caller: { kind: 'principal', principal } as Caller, requestId: `req-${key}`, idempotencyKey: key });

const keyInput = (fields: Partial<CreateKeyInput> = {}): CreateKeyInput => ({
  folderId: FOLDER,
  name: 'app',
  description: '',
  labels: {},
  defaultAlgorithm: 'AES_256',
  deletionProtection: false,
  ...fields,
});

class TestClock implements Clock {
  t = T0;
  now(): number {
    return this.t;
  }
}

type Hooks = { -readonly [K in keyof Store]?: Store[K] };

/** The store with per-test overrides of any method; `commits` records every commit attempt and its outcome. */
function instrumented(store: Store, hooks: Hooks, commits: { change: KeyChange; error?: unknown }[]): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'commitKeyChange') {
        return async (change: KeyChange) => {
          const entry: { change: KeyChange; error?: unknown } = { change };
          commits.push(entry);
          try {
            await (hooks.commitKeyChange ?? target.commitKeyChange.bind(target))(change);
          } catch (e) {
            entry.error = e;
            throw e;
          }
        };
      }
      const hook = hooks[prop as keyof Store];
      if (hook) return hook;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

let raw: Store;
let store: Store;
let hooks: Hooks;
let commits: { change: KeyChange; error?: unknown }[];
let clock: TestClock;
let invalidated: string[];
let keys: KeyService;
let hsmKeys: KeyService;
/** Stands for "an HSM is configured" where no version is created in it (the real one is tested in test/integration/hsm.test.ts). */
const unusedHsm: HsmKeyVersions = {
  generate: () => Promise.reject(new Error('not used here')),
  open: () => Promise.reject(new Error('not used here')),
  destroy: () => Promise.reject(new Error('not used here')),
};

beforeEach(async () => {
  raw = openSqliteStore(':memory:');
  await raw.changeBindings({ scope: GLOBAL_SCOPE, deltas: [{ action: 'ADD', binding: { roleId: 'kms.admin', subject: { type: 'userAccount', id: admin.id } } }] });
  hooks = {};
  commits = [];
  store = instrumented(raw, hooks, commits);
  clock = new TestClock();
  invalidated = [];
  const rootKey = softwareRootKey(new SecretBytes(randomBytes(32)), cryptoRandom);
  const realCache = new KeyCache(store, rootKey, { maxKeys: 100, ttlMs: 60_000 });
  const cache = {
    invalidate: (id: string) => {
      invalidated.push(id);
      realCache.invalidate(id);
    },
  };
  const deps = { store, rootKey, cache, authorizer: bindingAuthorizer(raw), clock, random: cryptoRandom };
  keys = keyService(deps);
  hsmKeys = keyService({ ...deps, hsm: unusedHsm });
});

afterEach(async () => {
  await raw.close();
});

async function createKey(fields: Partial<CreateKeyInput> = {}): Promise<{ keyId: string; v1: string }> {
  const op = await keys.create(asAdmin, keyInput(fields));
  assert.equal(op.metadata.type, 'CreateSymmetricKeyMetadata');
  return { keyId: op.metadata.keyId, v1: op.metadata.primaryVersionId };
}

async function versionsOf(keyId: string): Promise<KeyVersion[]> {
  return (await raw.listVersions(keyId, { pageSize: 1000, pageToken: '' })).items;
}

async function operationsOf(keyId: string): Promise<Operation[]> {
  return (await raw.listOperations(keyId, { pageSize: 1000, pageToken: '' })).items;
}

/** Everything a client could observe about a key, for "nothing was written" checks. */
async function snapshot(keyId: string): Promise<string> {
  const listed = await raw.listKeys(FOLDER, { pageSize: 1000, pageToken: '' });
  return JSON.stringify([await raw.getKey(keyId), await versionsOf(keyId), await operationsOf(keyId), listed.items.map((k) => k.id)]);
}

async function rejectsWith(promise: Promise<unknown>, code: Code, mentions?: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${Code[code]}, got ${Code[e.code]}: ${e.message}`);
    if (mentions) assert.match(e.message, mentions);
    return true;
  });
}

const rotatedTo = (op: Operation): string => {
  assert.equal(op.metadata.type, 'RotateSymmetricKeyMetadata');
  return op.metadata.newPrimaryVersionId;
};

describe('create and read', () => {
  it('creates an ACTIVE key with one primary version and a done operation', async () => {
    const op = await keys.create(asAdmin, keyInput({ labels: { env: 'dev' }, rotationPeriodMs: 30 * DAY_MS }));
    assert.equal(op.done, true);
    assert.equal(op.description, 'create symmetric key');
    assert.equal(op.createdBy, admin.id);
    assert.equal(op.response?.type, 'SymmetricKey');
    const { key, primaryVersion } = await keys.get(asAdmin, op.resourceId);
    assert.equal(key.status, 'ACTIVE');
    assert.deepEqual(key.labels, { env: 'dev' });
    assert.equal(key.rotationPeriodMs, 30 * DAY_MS);
    assert.equal(key.rotatedAt, undefined);
    assert.equal(primaryVersion.status, 'ACTIVE');
    assert.equal(primaryVersion.algorithm, 'AES_256');
    assert.equal((await operationsOf(key.id)).length, 1);
  });

  it('refuses AES_256_HSM without an HSM and GOST always, creating nothing', async () => {
    await rejectsWith(keys.create(asAdmin, keyInput({ defaultAlgorithm: 'AES_256_HSM' })), Code.FailedPrecondition);
    await rejectsWith(keys.create(asAdmin, keyInput({ defaultAlgorithm: 'GOST_R_3412_2015_K' })), Code.Unimplemented);
    assert.equal(commits.length, 0);
    assert.deepEqual((await raw.listKeys(FOLDER, { pageSize: 10, pageToken: '' })).items, []);
  });

  it('lists each key with its primary version, read for the whole page at once', async () => {
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await createKey()).keyId);
    const rotated = await keys.rotate(asAdmin, made[2]!);
    assert.equal(rotated.metadata.type, 'RotateSymmetricKeyMetadata');
    let versionReads = 0;
    hooks.getVersion = () => Promise.reject(new Error('List read a version on its own'));
    hooks.getVersions = (refs) => {
      versionReads++;
      return raw.getVersions(refs);
    };
    const page = await keys.list(asAdmin, FOLDER, 0, '');
    assert.equal(versionReads, 1);
    assert.deepEqual(page.items.map((v) => v.key.id), [...made].sort(), 'created at the same time: in id order');
    for (const { key, primaryVersion } of page.items) assert.deepEqual(primaryVersion, await raw.getVersion(key.id, key.primaryVersionId));
    assert.equal(page.items.find((v) => v.key.id === made[2])?.primaryVersion.id, rotated.metadata.newPrimaryVersionId);
  });
});

describe('optimistic concurrency', () => {
  it('two concurrent rotations both succeed with two new versions: the second re-plans', async () => {
    const { keyId, v1 } = await createKey();
    commits.length = 0;
    const [a, b] = await Promise.all([keys.rotate(asAdmin, keyId), keys.rotate(asAdmin, keyId)]);

    // The premise: both planned on the same revision, one commit was refused and re-planned.
    assert.equal(commits.length, 3, 'two commits and one retry');
    assert.equal(commits.filter((c) => c.error !== undefined).length, 1);
    const refused = commits.find((c) => c.error !== undefined)!;
    assert.ok(isKmsError(refused.error) && refused.error.code === Code.Aborted);

    const va = rotatedTo(a);
    const vb = rotatedTo(b);
    assert.notEqual(a.id, b.id);
    assert.notEqual(va, vb);
    const versions = (await versionsOf(keyId)).map((v) => v.id);
    assert.deepEqual(new Set(versions), new Set([v1, va, vb]), 'no lost update: both new versions exist');
    const key = (await raw.getKey(keyId))!;
    assert.equal(key.revision, 3);
    assert.ok(key.primaryVersionId === va || key.primaryVersionId === vb);
    assert.equal((await operationsOf(keyId)).length, 3);
  });

  it('a rotation racing an update keeps both changes', async () => {
    const { keyId } = await createKey();
    const update: UpdateKeyInput = {
      keyId,
      fields: new Set(['name']),
      name: 'renamed',
      description: '',
      status: 'STATUS_UNSPECIFIED',
      labels: {},
      defaultAlgorithm: undefined,
      deletionProtection: false,
    };
    const [rot] = await Promise.all([keys.rotate(asAdmin, keyId), keys.update(asAdmin, update)]);
    const key = (await raw.getKey(keyId))!;
    assert.equal(key.name, 'renamed');
    assert.equal(key.primaryVersionId, rotatedTo(rot));
  });

  it('gives up with ABORTED after repeated conflicts, writing nothing', async () => {
    const { keyId } = await createKey();
    const before = await snapshot(keyId);
    hooks.commitKeyChange = async () => {
      throw new KmsError(Code.Aborted, 'changed concurrently');
    };
    await rejectsWith(keys.rotate(asAdmin, keyId), Code.Aborted);
    assert.equal(commits.length, 1 + 5);
    delete hooks.commitKeyChange;
    assert.equal(await snapshot(keyId), before);
  });
});

describe('Idempotency-Key', () => {
  it('a replayed rotation returns the same operation and rotates once', async () => {
    const { keyId } = await createKey();
    const first = await keys.rotate(withIdempotencyKey('rotate-1'), keyId);
    const again = await keys.rotate(withIdempotencyKey('rotate-1'), keyId);
    assert.deepEqual(again, first);
    assert.equal((await versionsOf(keyId)).length, 2);
    assert.equal((await operationsOf(keyId)).length, 2);
  });

  it('a replayed create returns the same operation and creates one key', async () => {
    const first = await keys.create(withIdempotencyKey('create-1'), keyInput());
    const again = await keys.create(withIdempotencyKey('create-1'), keyInput());
    assert.deepEqual(again, first);
    assert.equal((await raw.listKeys(FOLDER, { pageSize: 10, pageToken: '' })).items.length, 1);
  });

  it('two concurrent requests with the same key create once and both get that operation', async () => {
    const [a, b] = await Promise.all([keys.create(withIdempotencyKey('c'), keyInput()), keys.create(withIdempotencyKey('c'), keyInput())]);
    assert.equal(a.id, b.id);
    assert.equal((await raw.listKeys(FOLDER, { pageSize: 10, pageToken: '' })).items.length, 1);

    const [r1, r2] = await Promise.all([keys.rotate(withIdempotencyKey('r'), a.resourceId), keys.rotate(withIdempotencyKey('r'), a.resourceId)]);
    assert.equal(r1.id, r2.id);
    assert.equal((await versionsOf(a.resourceId)).length, 2, 'rotated once');
  });

  it('is scoped per principal and per key string', async () => {
    const { keyId } = await createKey();
    const other: Principal = { ...admin, id: 'ajeadmin2' };
    await raw.changeBindings({ scope: GLOBAL_SCOPE, deltas: [{ action: 'ADD', binding: { roleId: 'kms.admin', subject: { type: 'userAccount', id: other.id } } }] });
    const a = await keys.rotate(withIdempotencyKey('same'), keyId);
    const b = await keys.rotate(withIdempotencyKey('same', other), keyId);
    const c = await keys.rotate(withIdempotencyKey('different'), keyId);
    assert.equal(new Set([a.id, b.id, c.id]).size, 3);
    assert.equal((await versionsOf(keyId)).length, 4);
  });

  it('reusing a key for another method or another key is refused, and nothing is done', async () => {
    const { keyId } = await createKey();
    const { keyId: otherKey } = await createKey();
    await keys.rotate(withIdempotencyKey('once'), keyId);
    await assert.rejects(keys.delete(withIdempotencyKey('once'), keyId), { code: Code.InvalidArgument, message: /Idempotency-Key/ });
    await assert.rejects(keys.rotate(withIdempotencyKey('once'), otherKey), { code: Code.InvalidArgument, message: /Idempotency-Key/ });
    await assert.rejects(keys.create(withIdempotencyKey('once'), keyInput()), { code: Code.InvalidArgument, message: /Idempotency-Key/ });
    assert.equal((await versionsOf(otherKey)).length, 1, 'the other key was not rotated');
    assert.equal((await raw.listKeys(FOLDER, { pageSize: 10, pageToken: '' })).items.length, 2, 'no key created or deleted');
  });

  it('without a key, every call acts', async () => {
    const { keyId } = await createKey();
    await keys.rotate(asAdmin, keyId);
    await keys.rotate(asAdmin, keyId);
    assert.equal((await versionsOf(keyId)).length, 3);
  });
});

describe('runDueWork', () => {
  it('rotates a key whose rotation is due, once, as the scheduler', async () => {
    const { keyId, v1 } = await createKey({ rotationPeriodMs: DAY_MS });
    clock.t = T0 + DAY_MS - 1;
    assert.equal((await keys.runDueWork()).rotated, 0);
    clock.t = T0 + DAY_MS;
    const r = await keys.runDueWork();
    assert.deepEqual({ ...r, errors: r.errors.length }, { rotated: 1, destroyed: 0, purged: 0, errors: 0 });
    assert.equal((await keys.runDueWork()).rotated, 0, 'not again at the same time');

    const key = (await raw.getKey(keyId))!;
    assert.equal(key.rotatedAt, T0 + DAY_MS);
    assert.notEqual(key.primaryVersionId, v1);
    assert.equal((await versionsOf(keyId)).length, 2);
    const [latest] = await operationsOf(keyId);
    assert.equal(latest?.createdBy, SCHEDULER_SUBJECT);
    assert.equal(latest?.description, 'rotate key');
    assert.ok(invalidated.includes(keyId), 'the cache learns of the rotation');

    clock.t = T0 + 2 * DAY_MS;
    assert.equal((await keys.runDueWork()).rotated, 1, 'due again one period after the last rotation');
    assert.equal((await versionsOf(keyId)).length, 3);
  });

  it('skips a key that was rotated manually before its period elapsed', async () => {
    const { keyId } = await createKey({ rotationPeriodMs: DAY_MS });
    clock.t = T0 + DAY_MS - 60_000;
    await keys.rotate(asAdmin, keyId);
    clock.t = T0 + DAY_MS;
    assert.equal((await keys.runDueWork()).rotated, 0);
    assert.equal((await versionsOf(keyId)).length, 2);
  });

  it('skips a key rotated manually between finding it due and rotating it', async () => {
    const { keyId } = await createKey({ rotationPeriodMs: DAY_MS });
    clock.t = T0 + DAY_MS;
    hooks.findKeysDueForRotation = async (now, limit) => {
      const due = await raw.findKeysDueForRotation(now, limit);
      await keys.rotate(asAdmin, keyId); // a client rotates right after the sweep looked
      return due;
    };
    const r = await keys.runDueWork();
    assert.equal(r.rotated, 0);
    assert.deepEqual(r.errors, []);
    assert.equal((await versionsOf(keyId)).length, 2, 'one rotation, not two');
  });

  it('never rotates a key without a period or a deleted key', async () => {
    await createKey();
    const { keyId } = await createKey({ rotationPeriodMs: DAY_MS });
    await keys.delete(asAdmin, keyId);
    clock.t = T0 + 10 * DAY_MS;
    assert.equal((await keys.runDueWork()).rotated, 0);
  });

  it('destroys versions whose destroyAt has come, erasing their material', async () => {
    const { keyId, v1 } = await createKey();
    await keys.rotate(asAdmin, keyId);
    await keys.scheduleVersionDestruction(asAdmin, keyId, v1, DAY_MS);
    assert.ok(await raw.getWrappedMaterial(keyId, v1), 'material kept while scheduled');

    clock.t = T0 + DAY_MS - 1;
    assert.equal((await keys.runDueWork()).destroyed, 0);
    assert.equal((await raw.getVersion(keyId, v1))?.status, 'SCHEDULED_FOR_DESTRUCTION');

    clock.t = T0 + DAY_MS;
    invalidated.length = 0;
    const r = await keys.runDueWork();
    assert.equal(r.destroyed, 1);
    assert.deepEqual(r.errors, []);
    const v = (await raw.getVersion(keyId, v1))!;
    assert.equal(v.status, 'DESTROYED');
    assert.equal(v.destroyAt, undefined);
    assert.equal(await raw.getWrappedMaterial(keyId, v1), undefined, 'material gone');
    assert.deepEqual(invalidated, [keyId]);
    assert.equal((await keys.runDueWork()).destroyed, 0);
  });

  it('does not destroy a version whose destruction was cancelled', async () => {
    const { keyId, v1 } = await createKey();
    await keys.rotate(asAdmin, keyId);
    await keys.scheduleVersionDestruction(asAdmin, keyId, v1, DAY_MS);
    clock.t = T0 + DAY_MS - 1;
    await keys.cancelVersionDestruction(asAdmin, keyId, v1);
    clock.t = T0 + 2 * DAY_MS;
    assert.equal((await keys.runDueWork()).destroyed, 0);
    assert.ok(await raw.getWrappedMaterial(keyId, v1));
  });

  it('purges a deleted key once 72 hours have passed', async () => {
    const { keyId, v1 } = await createKey();
    await keys.delete(asAdmin, keyId);
    assert.equal(DELETION_GRACE_MS, 72 * 3_600_000);
    await rejectsWith(keys.get(asAdmin, keyId), Code.NotFound);
    assert.ok(await raw.getWrappedMaterial(keyId, v1), 'material kept during the grace period');

    clock.t = T0 + DELETION_GRACE_MS - 1;
    assert.equal((await keys.runDueWork()).purged, 0);
    assert.ok(await raw.getKey(keyId));

    clock.t = T0 + DELETION_GRACE_MS + 1;
    assert.equal((await keys.runDueWork()).purged, 1);
    assert.equal(await raw.getKey(keyId), undefined);
    assert.equal(await raw.getVersion(keyId, v1), undefined);
    assert.equal(await raw.getWrappedMaterial(keyId, v1), undefined);
    assert.equal((await operationsOf(keyId)).length, 2, 'the operations stay');
  });

  it('carries on after an item fails, and reports the failure', async () => {
    const a = await createKey({ rotationPeriodMs: DAY_MS });
    const b = await createKey({ rotationPeriodMs: DAY_MS });
    const c = await createKey();
    await keys.rotate(asAdmin, c.keyId);
    await keys.scheduleVersionDestruction(asAdmin, c.keyId, c.v1, DAY_MS);
    const d = await createKey();
    await keys.delete(asAdmin, d.keyId);

    clock.t = T0 + DELETION_GRACE_MS + 1;
    const failure = new Error('disk full');
    hooks.commitKeyChange = async (change) => {
      if (change.key.id === a.keyId) throw failure;
      return raw.commitKeyChange(change);
    };
    const r = await keys.runDueWork();
    assert.equal(r.rotated, 1);
    assert.equal(r.destroyed, 1);
    assert.equal(r.purged, 1);
    assert.deepEqual(r.errors, [failure]);
    assert.equal((await versionsOf(a.keyId)).length, 1);
    assert.equal((await versionsOf(b.keyId)).length, 2);

    delete hooks.commitKeyChange;
    assert.equal((await keys.runDueWork()).rotated, 1, 'the failed item is retried on the next pass');
  });
});

describe('authorization', () => {
  it('a non-admin principal gets PERMISSION_DENIED on every method, and nothing is written', async () => {
    const { keyId, v1 } = await createKey();
    await keys.rotate(asAdmin, keyId);
    const before = await snapshot(keyId);
    commits.length = 0;
    invalidated.length = 0;

    const update: UpdateKeyInput = {
      keyId,
      fields: new Set(['name', 'status']),
      name: 'stolen',
      description: '',
      status: 'INACTIVE',
      labels: {},
      defaultAlgorithm: undefined,
      deletionProtection: false,
    };
    const calls: [string, () => Promise<unknown>][] = [
      ['create', () => keys.create(asUser, keyInput())],
      ['get', () => keys.get(asUser, keyId)],
      ['list', () => keys.list(asUser, FOLDER, 0, '')],
      ['listVersions', () => keys.listVersions(asUser, keyId, 0, '')],
      ['listOperations', () => keys.listOperations(asUser, keyId, 0, '')],
      ['update', () => keys.update(asUser, update)],
      ['delete', () => keys.delete(asUser, keyId)],
      ['setPrimaryVersion', () => keys.setPrimaryVersion(asUser, keyId, v1)],
      ['scheduleVersionDestruction', () => keys.scheduleVersionDestruction(asUser, keyId, v1, undefined)],
      ['cancelVersionDestruction', () => keys.cancelVersionDestruction(asUser, keyId, v1)],
      ['rotate', () => keys.rotate(asUser, keyId)],
    ];
    for (const [name, call] of calls) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(isKmsError(e), `${name}: expected a KmsError, got ${String(e)}`);
        assert.equal(e.code, Code.PermissionDenied, `${name}: got ${Code[e.code]}: ${e.message}`);
        return true;
      });
    }
    // Replays are checked after authorization too: an idempotency key does not bypass it.
    await rejectsWith(keys.rotate(withIdempotencyKey('x', user), keyId), Code.PermissionDenied);

    assert.equal(commits.length, 0, 'no commit was attempted');
    assert.equal(await snapshot(keyId), before);
  });

  it('a non-admin cannot read another principal’s operation through an Idempotency-Key', async () => {
    // Idempotency keys are scoped per principal, so the user's replay lookup never finds the admin's.
    const { keyId } = await createKey();
    await keys.rotate(withIdempotencyKey('shared'), keyId);
    await rejectsWith(keys.rotate(withIdempotencyKey('shared', user), keyId), Code.PermissionDenied);
  });
});

describe('update', () => {
  const base = (keyId: string, fields: UpdateKeyInput['fields'], extra: Partial<UpdateKeyInput> = {}): UpdateKeyInput => ({
    keyId,
    fields,
    name: '',
    description: '',
    status: 'STATUS_UNSPECIFIED',
    labels: {},
    defaultAlgorithm: undefined,
    deletionProtection: false,
    ...extra,
  });

  it('refuses default_algorithm AES_256_HSM without an HSM with FAILED_PRECONDITION, writing nothing', async () => {
    const { keyId } = await createKey();
    const before = await snapshot(keyId);
    await rejectsWith(
      keys.update(asAdmin, base(keyId, new Set(['default_algorithm']), { defaultAlgorithm: 'AES_256_HSM' })),
      Code.FailedPrecondition,
      /HSM/,
    );
    assert.equal(await snapshot(keyId), before);
  });

  it('accepts default_algorithm AES_256_HSM when an HSM is configured', async () => {
    const { keyId } = await createKey();
    const op = await hsmKeys.update(asAdmin, base(keyId, new Set(['default_algorithm']), { defaultAlgorithm: 'AES_256_HSM' }));
    assert.equal(op.metadata.type, 'UpdateSymmetricKeyMetadata');
    assert.equal((await raw.getKey(keyId))?.defaultAlgorithm, 'AES_256_HSM');
  });

  it('changes only the fields in the mask; a listed absent rotation period switches rotation off', async () => {
    const { keyId } = await createKey({ name: 'keep', description: 'keep', rotationPeriodMs: DAY_MS, labels: { a: 'b' } });
    await keys.update(asAdmin, base(keyId, new Set(['rotation_period', 'status']), { status: 'INACTIVE', name: 'ignored' }));
    const key = (await raw.getKey(keyId))!;
    assert.equal(key.rotationPeriodMs, undefined);
    assert.equal(key.status, 'INACTIVE');
    assert.equal(key.name, 'keep');
    assert.equal(key.description, 'keep');
    assert.deepEqual(key.labels, { a: 'b' });
  });

  it('refuses an empty mask and a status clients may not set (as a rejected promise, not a synchronous throw)', async () => {
    const { keyId } = await createKey();
    await rejectsWith(keys.update(asAdmin, base(keyId, new Set())), Code.InvalidArgument, /update_mask/);
    await rejectsWith(keys.update(asAdmin, base(keyId, new Set(['status']), { status: 'CREATING' })), Code.InvalidArgument, /status/);
    await rejectsWith(keys.scheduleVersionDestruction(asAdmin, keyId, 'abjv', 1000), Code.InvalidArgument, /pending_period/);
  });
});

describe('version lifecycle through the service', () => {
  it('refuses to destroy the primary version and to make a scheduled version primary', async () => {
    const { keyId, v1 } = await createKey();
    await rejectsWith(keys.scheduleVersionDestruction(asAdmin, keyId, v1, undefined), Code.FailedPrecondition, /primary/);
    const v2 = rotatedTo(await keys.rotate(asAdmin, keyId));
    const op = await keys.scheduleVersionDestruction(asAdmin, keyId, v1, undefined);
    assert.equal(op.metadata.type === 'ScheduleSymmetricKeyVersionDestructionMetadata' && op.metadata.destroyAt, T0 + 7 * DAY_MS);
    await rejectsWith(keys.setPrimaryVersion(asAdmin, keyId, v1), Code.FailedPrecondition);
    assert.equal((await raw.getKey(keyId))?.primaryVersionId, v2);
  });

  it('refuses to delete a protected key', async () => {
    const { keyId } = await createKey({ deletionProtection: true });
    await rejectsWith(keys.delete(asAdmin, keyId), Code.FailedPrecondition, /deletion protection/);
    assert.ok(await keys.get(asAdmin, keyId));
  });

  it('refuses a 101st live version', async () => {
    const { keyId } = await createKey();
    for (let i = 0; i < 99; i++) await keys.rotate(asAdmin, keyId);
    assert.equal(await raw.countLiveVersions(keyId), 100);
    await rejectsWith(keys.rotate(asAdmin, keyId), Code.FailedPrecondition, /100/);
  });
});
