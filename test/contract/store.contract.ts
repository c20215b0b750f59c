import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { cancelDestruction, DAY_MS, destroy, scheduleDestruction } from '../../src/domain/key.js';
import type { KeyVersion, SymmetricKey } from '../../src/domain/key.js';
import type { Operation } from '../../src/domain/operation.js';
import { effectivePageSize, encodeCursor, MAX_PAGE_TOKEN_LENGTH } from '../../src/domain/paging.js';
import type { Page, PageRequest } from '../../src/domain/paging.js';
import type { Principal, TokenRecord } from '../../src/domain/principal.js';
import { Code, isKmsError } from '../../src/errors/kms-error.js';
import type { AuditAppend, KeyChange, SnapshotRecord, Store } from '../../src/ports/store.js';
import type { FeedEvent } from '../../src/ports/change-feed.js';
import type { AuditEvent, AuditFilter } from '../../src/domain/audit.js';
import { ChainVerifier, sealBatch, type ChainProblem, type SealedBatch } from '../../src/crypto/audit-chain.js';
import { SecretBytes } from '../../src/crypto/secret-bytes.js';

// The behaviour every Store adapter must have. It talks to the store only through the port, so
// the SQLite and PostgreSQL adapters (and any fake) run the same suite:
//   storeContract('sqlite', async () => openSqliteStore(tempFile()));
// Each test gets a fresh, empty store from `open` and closes it afterwards.

// ---------------------------------------------------------------------------------------------
// Fixtures, exported for adapter-specific tests.

export const T0 = Date.UTC(2026, 0, 1);
const FOLDER = 'b1gfolder';
const OTHER_FOLDER = 'b1gother';

let counter = 0;
/** A fresh id shaped like kmsd's (prefix + 17 characters of 0-9a-v); later ids sort after earlier ones. */
export function testId(prefix = 'abj'): string {
  counter += 1;
  return prefix + counter.toString(32).padStart(17, '0');
}

/** Distinct, recognisable bytes standing in for wrapped material. */
export function material(seed: string): Buffer {
  return createHash('sha256').update(seed).digest();
}

/** A key with every required field and no optional one. */
export function makeKey(fields: Partial<SymmetricKey> = {}): SymmetricKey {
  return {
    id: testId(),
    folderId: FOLDER,
    name: 'key',
    description: '',
    labels: {},
    status: 'ACTIVE',
    primaryVersionId: testId(),
    defaultAlgorithm: 'AES_256',
    createdAt: T0,
    deletionProtection: false,
    revision: 1,
    ...fields,
  };
}

export function makeVersion(keyId: string, fields: Partial<KeyVersion> = {}): KeyVersion {
  return { id: testId(), keyId, status: 'ACTIVE', algorithm: 'AES_256', createdAt: T0, hostedByHsm: false, ...fields };
}

export function makeOperation(resourceId: string, fields: Partial<Operation> = {}): Operation {
  return {
    id: testId(),
    description: 'Update symmetric key',
    createdAt: T0,
    createdBy: 'ajeuser',
    modifiedAt: T0,
    done: true,
    metadata: { type: 'UpdateSymmetricKeyMetadata', keyId: resourceId },
    resourceId,
    ...fields,
  };
}

const withMaterial = (version: KeyVersion) => ({ version, wrappedMaterial: material(version.id) });

/** Inserts a key with its primary version (and whatever else `extra` adds), as CreateSymmetricKey does. */
export async function createKey(
  store: Store,
  fields: Partial<SymmetricKey> = {},
  extra: Omit<KeyChange, 'key' | 'expectRevision'> = {},
): Promise<{ key: SymmetricKey; primary: KeyVersion }> {
  const key = makeKey(fields);
  const primary = makeVersion(key.id, { id: key.primaryVersionId, createdAt: key.createdAt });
  await store.commitKeyChange({ ...extra, key, insertVersions: [withMaterial(primary), ...(extra.insertVersions ?? [])] });
  return { key, primary };
}

/** Commits `next` over `key` at the key's current revision, as every service mutation does. */
export async function updateKey(
  store: Store,
  key: SymmetricKey,
  next: Omit<SymmetricKey, 'revision'>,
  extra: Omit<KeyChange, 'key' | 'expectRevision'> = {},
): Promise<SymmetricKey> {
  const updated = { ...next, revision: key.revision + 1 };
  await store.commitKeyChange({ ...extra, key: updated, expectRevision: key.revision });
  return updated;
}

export function makePrincipal(fields: Partial<Principal> = {}): Principal {
  return { id: testId('aje'), type: 'userAccount', name: 'someone', createdAt: T0, ...fields };
}

export function makeToken(principalId: string, fields: Partial<TokenRecord> = {}): TokenRecord {
  return { id: testId('tok'), principalId, secretHash: material(`secret-${principalId}`), createdAt: T0, ...fields };
}

/** The chain key of the audit fixtures (the service holds it wrapped by the root key). */
export const AUDIT_KEY = new SecretBytes(Buffer.alloc(32, 9));
export const auditSeal: AuditAppend['seal'] = (head, events) => sealBatch(AUDIT_KEY, head, events);

/**
 * The i-th audit event: subject ajeeven/ajeodd by parity, key abjthree when i is a multiple of 3
 * (abjother otherwise), PERMISSION_DENIED when a multiple of 4, requestId `r<i>`, time T0 + i s.
 */
export function auditEvent(i: number, fields: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: T0 + i * 1000,
    event: 'yandex.cloud.audit.kms.Encrypt',
    method: 'm',
    subject: { type: 'serviceAccount', id: i % 2 === 0 ? 'ajeeven' : 'ajeodd' },
    keyId: i % 3 === 0 ? 'abjthree' : 'abjother',
    code: i % 4 === 0 ? Code.PermissionDenied : 0,
    requestId: `r${i}`,
    peer: '127.0.0.1',
    transport: 'rest',
    ...fields,
  };
}

/** What ChainVerifier finds wrong with the store's whole audit log and head; [] for a sound chain. */
export async function auditChainProblems(store: Store): Promise<ChainProblem[]> {
  const v = new ChainVerifier(AUDIT_KEY);
  for (const r of await store.scanAudit(0, 100_000)) v.add(r, `seq ${r.seq}`);
  v.finish(await store.getAuditHead());
  return v.problems;
}

// ---------------------------------------------------------------------------------------------
// Assertions.

async function rejectsWithCode(promise: Promise<unknown>, code: Code, mentions?: string): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${Code[code]}, got ${Code[e.code]}: ${e.message}`);
    if (mentions !== undefined) assert.match(e.message, new RegExp(mentions));
    return true;
  });
}

const ids = (items: readonly { id: string }[]): string[] => items.map((i) => i.id);

/** Walks every page, checking the shape of each, and returns all items in the order served. */
async function allPages<T>(list: (req: PageRequest) => Promise<Page<T>>, pageSize: number): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await list({ pageSize, pageToken });
    pages += 1;
    assert.ok(page.nextPageToken.length <= MAX_PAGE_TOKEN_LENGTH, `token longer than ${MAX_PAGE_TOKEN_LENGTH}`);
    const full = effectivePageSize(pageSize);
    if (page.nextPageToken !== '') assert.equal(page.items.length, full, 'a page before the last is full');
    else assert.ok(page.items.length <= full);
    items.push(...page.items);
    pageToken = page.nextPageToken;
  } while (pageToken !== '' && pages <= 1000);
  return { items, pages };
}

const firstPage = { pageSize: 0, pageToken: '' };

const MALFORMED_TOKENS = [
  'not a token!',
  'Zm9v', // base64url of "foo": no position inside
  Buffer.from('1.UPPER', 'utf8').toString('base64url'),
  Buffer.from('zzzzzzzzzzzzz.abj', 'utf8').toString('base64url'), // position too long
  `${encodeCursor({ at: T0, id: 'abj' })}=`,
];

/** Polls `check` until it returns true, failing with `what` after `timeoutMs`. */
async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Subscribes to the store's change feed and waits until it is live (a PostgreSQL listener connects first). */
async function listen(store: Store): Promise<{ events: FeedEvent[]; changed: () => string[]; stop: () => void }> {
  const events: FeedEvent[] = [];
  const stop = store.changes.subscribe((e) => events.push(e));
  await eventually('the change feed to be live', () => store.changes.live);
  return { events, changed: () => events.flatMap((e) => (e.kind === 'changed' ? [`${e.change.topic}:${e.change.id}`] : [])), stop };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function* replay<T>(items: readonly T[], thenThrow?: Error): AsyncIterable<T> {
  for (const item of items) yield item;
  if (thenThrow) throw thenThrow;
}

// ---------------------------------------------------------------------------------------------

export function storeContract(name: string, open: () => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('answers undefined for anything that does not exist', async () => {
      assert.equal(await store.getKey('abjnothere'), undefined);
      assert.equal(await store.getVersion('abjnothere', 'abjnoversion'), undefined);
      assert.equal(await store.getWrappedMaterial('abjnothere', 'abjnoversion'), undefined);
      assert.equal(await store.countLiveVersions('abjnothere'), 0);
      assert.equal(await store.getOperation('abjnoop'), undefined);
      assert.equal(await store.findOperationByIdempotencyKey('ajeuser', 'nokey'), undefined);
      assert.equal(await store.getPrincipal('ajenobody'), undefined);
      assert.equal(await store.getToken('notoken'), undefined);
      assert.equal(await store.getMeta('nothing'), undefined);
      assert.deepEqual(await store.listKeys(FOLDER, firstPage), { items: [], nextPageToken: '' });
      assert.deepEqual(await store.listVersions('abjnothere', firstPage), { items: [], nextPageToken: '' });
      assert.deepEqual(await store.listOperations('abjnothere', firstPage), { items: [], nextPageToken: '' });
    });

    describe('keys and versions', () => {
      it('round-trips a key without any optional field', async () => {
        const { key, primary } = await createKey(store);
        assert.deepEqual(await store.getKey(key.id), key);
        assert.deepEqual(await store.getVersion(key.id, primary.id), primary);
        assert.deepEqual(await store.getWrappedMaterial(key.id, primary.id), material(primary.id));
      });

      it('round-trips a key with every optional field and stores the revision it is given', async () => {
        const { key } = await createKey(store, {
          name: 'full',
          description: 'every field set',
          labels: { env: 'prod', team: 'kms', empty: '' },
          status: 'INACTIVE',
          defaultAlgorithm: 'AES_128',
          createdAt: T0 + 1,
          rotatedAt: T0 + 2,
          rotationPeriodMs: 7 * DAY_MS,
          deletionProtection: true,
          deletedAt: T0 + 3,
          revision: 7,
        });
        assert.deepEqual(await store.getKey(key.id), key);
      });

      it('round-trips versions with and without destroyAt, in software and in an HSM', async () => {
        const scheduled = (keyId: string) =>
          makeVersion(keyId, { status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + DAY_MS, algorithm: 'AES_192' });
        const key = makeKey();
        const hsm = makeVersion(key.id, { algorithm: 'AES_256_HSM', hostedByHsm: true });
        const later = scheduled(key.id);
        await createKey(store, key, { insertVersions: [withMaterial(hsm), withMaterial(later)] });
        for (const v of [hsm, later]) {
          assert.deepEqual(await store.getVersion(key.id, v.id), v);
          assert.deepEqual(await store.getWrappedMaterial(key.id, v.id), material(v.id));
        }
      });

      it('finds a version only under its own key', async () => {
        const a = await createKey(store);
        const b = await createKey(store);
        assert.equal(await store.getVersion(b.key.id, a.primary.id), undefined);
        assert.equal(await store.getWrappedMaterial(b.key.id, a.primary.id), undefined);
      });

      it('reads a key with every version in creation order, and the material of the ACTIVE ones only', async () => {
        const key = makeKey({ createdAt: T0 });
        const hsm = makeVersion(key.id, { algorithm: 'AES_256_HSM', hostedByHsm: true, createdAt: T0 + 3 });
        const scheduled = makeVersion(key.id, { status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + DAY_MS, createdAt: T0 + 1 });
        let doomed = makeVersion(key.id, { createdAt: T0 + 2 });
        const { primary } = await createKey(store, key, { insertVersions: [withMaterial(hsm), withMaterial(scheduled), withMaterial(doomed)] });
        await createKey(store); // another key's versions stay out
        doomed = destroy(scheduleDestruction(key, doomed, T0, DAY_MS));
        const current = await updateKey(store, key, { ...key, deletedAt: T0 + 9 }, { updateVersions: [doomed] });

        assert.deepEqual(await store.getKeyWithVersions(key.id), {
          key: current,
          versions: [
            { version: primary, wrappedMaterial: material(primary.id) },
            { version: scheduled },
            { version: doomed },
            { version: hsm, wrappedMaterial: material(hsm.id) },
          ],
        });
        assert.equal(await store.getKeyWithVersions('abjnothere'), undefined);
      });

      it('reads many versions in one call, each only under its own key', async () => {
        const a = await createKey(store);
        const b = await createKey(store);
        const a2 = makeVersion(a.key.id);
        await updateKey(store, a.key, a.key, { insertVersions: [withMaterial(a2)] });
        const found = await store.getVersions([
          { keyId: a.key.id, versionId: a.primary.id },
          { keyId: b.key.id, versionId: b.primary.id },
          { keyId: a.key.id, versionId: a2.id },
          { keyId: b.key.id, versionId: a2.id }, // another key's version
          { keyId: a.key.id, versionId: 'abjnoversion' },
        ]);
        const byId = (vs: KeyVersion[]) => [...vs].sort((x, y) => x.id.localeCompare(y.id));
        assert.deepEqual(byId(found), byId([a.primary, b.primary, a2]));
        assert.deepEqual(await store.getVersions([]), []);
      });

      it('updates a key at the expected revision, removing optional fields that are gone', async () => {
        const { key } = await createKey(store, { rotationPeriodMs: DAY_MS, labels: { a: '1' } });
        const { rotationPeriodMs: _dropped, ...rest } = key;
        const updated = await updateKey(store, key, { ...rest, name: 'renamed', labels: { b: '2' }, rotatedAt: T0 + 5 });
        const stored = await store.getKey(key.id);
        assert.deepEqual(stored, updated);
        assert.equal(stored?.revision, key.revision + 1);
        assert.ok(!('rotationPeriodMs' in (stored ?? {})));
      });

      it('keeps material apart from the buffers passed in and handed out', async () => {
        const { key, primary } = await createKey(store);
        const v2 = makeVersion(key.id);
        const passed = material(v2.id);
        await updateKey(store, key, key, { insertVersions: [{ version: v2, wrappedMaterial: passed }] });
        passed.fill(0);
        const read = await store.getWrappedMaterial(key.id, v2.id);
        assert.deepEqual(read, material(v2.id));
        read?.fill(0);
        assert.deepEqual(await store.getWrappedMaterial(key.id, v2.id), material(v2.id));
        assert.deepEqual(await store.getWrappedMaterial(key.id, primary.id), material(primary.id));
      });

      it('erases the material of a version that becomes DESTROYED', async () => {
        const created = await createKey(store);
        let k = created.key;
        let v2 = makeVersion(k.id);
        k = await updateKey(store, k, k, { insertVersions: [withMaterial(v2)] });
        assert.equal(await store.countLiveVersions(k.id), 2);

        v2 = scheduleDestruction(k, v2, T0, DAY_MS);
        k = await updateKey(store, k, k, { updateVersions: [v2] });
        assert.deepEqual(await store.getVersion(k.id, v2.id), v2);
        assert.deepEqual(await store.getWrappedMaterial(k.id, v2.id), material(v2.id), 'scheduled keeps material');
        assert.equal(await store.countLiveVersions(k.id), 2, 'scheduled still counts');

        v2 = cancelDestruction(v2, T0 + 1);
        k = await updateKey(store, k, k, { updateVersions: [v2] });
        const cancelled = await store.getVersion(k.id, v2.id);
        assert.deepEqual(cancelled, v2);
        assert.ok(!('destroyAt' in (cancelled ?? {})), 'cancelling clears destroyAt');

        v2 = destroy(scheduleDestruction(k, v2, T0 + 2, DAY_MS));
        k = await updateKey(store, k, k, { updateVersions: [v2] });
        assert.deepEqual(await store.getVersion(k.id, v2.id), v2);
        assert.equal(await store.getWrappedMaterial(k.id, v2.id), undefined);
        assert.equal(await store.countLiveVersions(k.id), 1);
        assert.deepEqual(await store.getWrappedMaterial(k.id, created.primary.id), material(created.primary.id));
      });
    });

    describe('commitKeyChange is all or nothing', () => {
      /** A key with a second version, and a change that would touch every part of the store. */
      async function setUp() {
        const key = makeKey();
        const extra = makeVersion(key.id);
        const { primary } = await createKey(store, key, { insertVersions: [withMaterial(extra)] });
        const fresh = makeVersion(key.id);
        const op = makeOperation(key.id, { idempotencyKey: 'idem-1' });
        const change = {
          key: { ...key, name: 'changed', revision: key.revision + 1 },
          expectRevision: key.revision,
          insertVersions: [withMaterial(fresh)],
          updateVersions: [scheduleDestruction(key, extra, T0, DAY_MS)],
          operation: op,
        } satisfies KeyChange;
        return { key, primary, extra, fresh, op, change };
      }

      async function assertUntouched(s: Awaited<ReturnType<typeof setUp>>): Promise<void> {
        assert.deepEqual(await store.getKey(s.key.id), s.key);
        assert.deepEqual(await store.getVersion(s.key.id, s.extra.id), s.extra);
        assert.deepEqual(await store.getWrappedMaterial(s.key.id, s.extra.id), material(s.extra.id));
        assert.equal(await store.getVersion(s.key.id, s.fresh.id), undefined);
        assert.equal(await store.getWrappedMaterial(s.key.id, s.fresh.id), undefined);
        assert.equal(await store.getOperation(s.op.id), undefined);
        assert.equal(await store.findOperationByIdempotencyKey(s.op.createdBy, 'idem-1'), undefined);
        assert.deepEqual(ids((await store.listVersions(s.key.id, firstPage)).items), [s.primary.id, s.extra.id]);
        assert.deepEqual(await store.listOperations(s.key.id, firstPage), { items: [], nextPageToken: '' });
      }

      it('applies the whole change when the revision matches', async () => {
        const s = await setUp();
        await store.commitKeyChange(s.change);
        assert.deepEqual(await store.getKey(s.key.id), s.change.key);
        assert.deepEqual(await store.getVersion(s.key.id, s.fresh.id), s.fresh);
        assert.deepEqual(await store.getVersion(s.key.id, s.extra.id), s.change.updateVersions[0]);
        assert.deepEqual(await store.getOperation(s.op.id), s.op);
      });

      it('aborts a change made at a stale revision and writes nothing of it', async () => {
        const s = await setUp();
        await rejectsWithCode(store.commitKeyChange({ ...s.change, expectRevision: s.key.revision + 1 }), Code.Aborted, s.key.id);
        await assertUntouched(s);
      });

      it('aborts the second of two changes made from the same revision', async () => {
        const s = await setUp();
        const winner = await updateKey(store, s.key, { ...s.key, description: 'first writer' });
        await rejectsWithCode(store.commitKeyChange(s.change), Code.Aborted);
        assert.deepEqual(await store.getKey(s.key.id), winner);
        assert.equal(await store.getVersion(s.key.id, s.fresh.id), undefined);
        assert.equal(await store.getOperation(s.op.id), undefined);
      });

      it('aborts an update of a key that does not exist', async () => {
        const key = makeKey();
        await rejectsWithCode(store.commitKeyChange({ key: { ...key, revision: 2 }, expectRevision: 1 }), Code.Aborted);
        assert.equal(await store.getKey(key.id), undefined);
      });

      it('refuses to insert a key id that exists, and writes nothing of that change', async () => {
        const s = await setUp();
        const { expectRevision: _insert, ...asInsert } = s.change;
        await rejectsWithCode(store.commitKeyChange(asInsert), Code.AlreadyExists, s.key.id);
        await assertUntouched(s);
      });

      it('refuses to insert a version id that exists, undoing the versions inserted before it', async () => {
        const s = await setUp();
        const duplicate = withMaterial({ ...makeVersion(s.key.id), id: s.primary.id });
        const change = { ...s.change, insertVersions: [...s.change.insertVersions, duplicate] };
        await rejectsWithCode(store.commitKeyChange(change), Code.AlreadyExists, s.primary.id);
        await assertUntouched(s);
      });

      it('refuses a version id used by another key', async () => {
        const s = await setUp();
        const other = await createKey(store);
        const stolen = withMaterial({ ...makeVersion(s.key.id), id: other.primary.id });
        await rejectsWithCode(store.commitKeyChange({ ...s.change, insertVersions: [stolen] }), Code.AlreadyExists);
        await assertUntouched(s);
        assert.deepEqual(await store.getVersion(other.key.id, other.primary.id), other.primary);
      });

      it('refuses an operation id that exists, undoing the key and versions', async () => {
        const s = await setUp();
        const earlier = makeOperation('abjelsewhere');
        await createKey(store, {}, { operation: earlier });
        const reused = { ...s.op, id: earlier.id };
        await rejectsWithCode(store.commitKeyChange({ ...s.change, operation: reused }), Code.AlreadyExists, reused.id);
        await assertUntouched(s);
      });

      it('aborts an update of a version that does not exist, undoing the rest', async () => {
        const s = await setUp();
        const ghost = makeVersion(s.key.id, { status: 'DESTROYED' });
        await rejectsWithCode(
          store.commitKeyChange({ ...s.change, updateVersions: [...s.change.updateVersions, ghost] }),
          Code.Aborted,
          ghost.id,
        );
        await assertUntouched(s);
      });

      it('refuses versions that belong to another key, writing nothing', async () => {
        const s = await setUp();
        const other = await createKey(store);
        // Written under s.key's revision check, these would change another key behind its back.
        const foreignUpdate = { ...other.primary, status: 'DESTROYED' } as const;
        const foreignInsert = withMaterial(makeVersion(other.key.id));
        await assert.rejects(store.commitKeyChange({ ...s.change, updateVersions: [foreignUpdate] }));
        await assert.rejects(store.commitKeyChange({ ...s.change, insertVersions: [foreignInsert] }));
        await assertUntouched(s);
        assert.equal(await store.getVersion(other.key.id, foreignInsert.version.id), undefined);
        assert.deepEqual(await store.getVersion(other.key.id, other.primary.id), other.primary);
        assert.deepEqual(await store.getWrappedMaterial(other.key.id, other.primary.id), material(other.primary.id));
      });
    });

    describe('pagination', () => {
      async function keysCreatedAt(times: number[], fields: Partial<SymmetricKey> = {}): Promise<SymmetricKey[]> {
        const keys: SymmetricKey[] = [];
        for (const t of times) keys.push((await createKey(store, { createdAt: t, ...fields })).key);
        return keys;
      }
      const byCreation = (items: SymmetricKey[]) => [...items].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));

      for (const pageSize of [1, 2, 0]) {
        it(`listKeys serves every key once in creation order, ${pageSize || 'default'} per page`, async () => {
          const keys = await keysCreatedAt([T0 + 30, T0 + 10, T0 + 50, T0 + 20, T0 + 40]);
          const { items, pages } = await allPages((p) => store.listKeys(FOLDER, p), pageSize);
          assert.deepEqual(items, byCreation(keys));
          assert.equal(pages, Math.ceil(keys.length / effectivePageSize(pageSize)));
        });
      }

      it('orders keys created at the same time by id', async () => {
        const keys = await keysCreatedAt([T0, T0, T0]);
        const expected = ids(keys).sort();
        assert.deepEqual(ids((await allPages((p) => store.listKeys(FOLDER, p), 1)).items), expected);
        assert.deepEqual(ids((await store.listKeys(FOLDER, firstPage)).items), expected);
      });

      it('gives no next token when a page ends at the last row', async () => {
        await keysCreatedAt([T0, T0 + 1]);
        const page = await store.listKeys(FOLDER, { pageSize: 2, pageToken: '' });
        assert.equal(page.items.length, 2);
        assert.equal(page.nextPageToken, '');
      });

      it('lists only the folder’s keys that are not deleted; getKey still finds deleted ones', async () => {
        const [live] = await keysCreatedAt([T0]);
        const [deleted] = await keysCreatedAt([T0 + 1], { deletedAt: T0 + 2 });
        await keysCreatedAt([T0 + 3], { folderId: OTHER_FOLDER });
        assert.deepEqual(ids((await store.listKeys(FOLDER, firstPage)).items), [live?.id]);
        assert.deepEqual(await store.getKey(deleted?.id ?? ''), deleted);

        // A key deleted by an update leaves the listing too.
        const removed = await updateKey(store, live!, { ...live!, deletedAt: T0 + 5 });
        assert.deepEqual((await store.listKeys(FOLDER, firstPage)).items, []);
        assert.deepEqual(await store.getKey(removed.id), removed);
      });

      it('keeps a listKeys token valid while keys are inserted and deleted', async () => {
        const [k1, k2, k3, k4] = await keysCreatedAt([T0 + 1, T0 + 2, T0 + 3, T0 + 4]);
        const page1 = await store.listKeys(FOLDER, { pageSize: 2, pageToken: '' });
        assert.deepEqual(ids(page1.items), [k1?.id, k2?.id]);

        const [late] = await keysCreatedAt([T0 + 10]);
        const [early] = await keysCreatedAt([T0]);
        await updateKey(store, k2!, { ...k2!, deletedAt: T0 + 20 }); // the row the token points at
        const page2 = await store.listKeys(FOLDER, { pageSize: 2, pageToken: page1.nextPageToken });
        assert.deepEqual(ids(page2.items), [k3?.id, k4?.id]);
        const page3 = await store.listKeys(FOLDER, { pageSize: 2, pageToken: page2.nextPageToken });
        assert.deepEqual(ids(page3.items), [late?.id], 'a key created later appears on a later page');
        assert.equal(page3.nextPageToken, '');
        assert.ok(![...page2.items, ...page3.items].some((k) => k.id === early?.id), 'an earlier key is not served behind the cursor');
      });

      it('lists a key’s versions in creation order, without other keys’ versions', async () => {
        const key = makeKey({ createdAt: T0 });
        const versions = [T0 + 3, T0 + 1, T0 + 2].map((t) => makeVersion(key.id, { createdAt: t }));
        const { primary } = await createKey(store, key, { insertVersions: versions.map(withMaterial) });
        await createKey(store);
        const expected = [primary, ...[...versions].sort((a, b) => a.createdAt - b.createdAt)];
        for (const pageSize of [1, 2, 0]) {
          const { items } = await allPages((p) => store.listVersions(key.id, p), pageSize);
          assert.deepEqual(items, expected);
        }
      });

      it('serves 100 items per page when no page size is asked for', async () => {
        const key = makeKey();
        const versions = Array.from({ length: 100 }, (_, i) => makeVersion(key.id, { createdAt: T0 + 1 + i }));
        await createKey(store, key, { insertVersions: versions.map(withMaterial) });
        const page1 = await store.listVersions(key.id, firstPage);
        assert.equal(page1.items.length, 100);
        assert.notEqual(page1.nextPageToken, '');
        const page2 = await store.listVersions(key.id, { pageSize: 0, pageToken: page1.nextPageToken });
        assert.deepEqual(ids(page2.items), [versions[99]?.id]);
        assert.equal(page2.nextPageToken, '');
      });

      async function operationsAt(resourceId: string, times: number[]): Promise<Operation[]> {
        const { key } = await createKey(store);
        let k = key;
        const ops: Operation[] = [];
        for (const t of times) {
          const op = makeOperation(resourceId, { createdAt: t, modifiedAt: t });
          k = await updateKey(store, k, k, { operation: op });
          ops.push(op);
        }
        return ops;
      }

      for (const pageSize of [1, 2, 0]) {
        it(`listOperations serves a resource’s operations newest first, ${pageSize || 'default'} per page`, async () => {
          const ops = await operationsAt('abjresource', [T0 + 2, T0 + 5, T0 + 1, T0 + 4, T0 + 3]);
          await operationsAt('abjother', [T0 + 3]);
          const { items, pages } = await allPages((p) => store.listOperations('abjresource', p), pageSize);
          assert.deepEqual(items, [...ops].sort((a, b) => b.createdAt - a.createdAt));
          assert.equal(pages, Math.ceil(ops.length / effectivePageSize(pageSize)));
        });
      }

      it('orders operations created at the same time by id, descending', async () => {
        const ops = await operationsAt('abjresource', [T0, T0, T0]);
        const expected = ids(ops).sort().reverse();
        assert.deepEqual(ids((await allPages((p) => store.listOperations('abjresource', p), 1)).items), expected);
      });

      it('keeps a listOperations token valid while operations are inserted', async () => {
        const [o1, o2, o3, o4] = await operationsAt('abjresource', [T0 + 1, T0 + 2, T0 + 3, T0 + 4]);
        const page1 = await store.listOperations('abjresource', { pageSize: 2, pageToken: '' });
        assert.deepEqual(ids(page1.items), [o4?.id, o3?.id]);

        const [newer] = await operationsAt('abjresource', [T0 + 10]);
        const [older] = await operationsAt('abjresource', [T0]);
        const page2 = await store.listOperations('abjresource', { pageSize: 2, pageToken: page1.nextPageToken });
        assert.deepEqual(ids(page2.items), [o2?.id, o1?.id]);
        const page3 = await store.listOperations('abjresource', { pageSize: 2, pageToken: page2.nextPageToken });
        assert.deepEqual(ids(page3.items), [older?.id], 'an older operation appears on a later page');
        assert.equal(page3.nextPageToken, '');
        assert.ok(![...page2.items, ...page3.items].some((o) => o.id === newer?.id), 'a newer operation is not served behind the cursor');
      });

      it('rejects a malformed page token with INVALID_ARGUMENT', async () => {
        const { key } = await createKey(store);
        for (const pageToken of MALFORMED_TOKENS) {
          const page = { pageSize: 10, pageToken };
          await rejectsWithCode(store.listKeys(FOLDER, page), Code.InvalidArgument, 'page_token');
          await rejectsWithCode(store.listVersions(key.id, page), Code.InvalidArgument, 'page_token');
          await rejectsWithCode(store.listOperations(key.id, page), Code.InvalidArgument, 'page_token');
        }
      });
    });

    describe('background queries', () => {
      it('finds keys due for rotation from the due time on, earliest first, up to the limit', async () => {
        const { key: a } = await createKey(store, { rotationPeriodMs: DAY_MS }); // due T0 + 1d
        const { key: b } = await createKey(store, { rotationPeriodMs: DAY_MS, rotatedAt: T0 + DAY_MS / 2 }); // due T0 + 1.5d
        await createKey(store); // never rotates
        await createKey(store, { rotationPeriodMs: DAY_MS, deletedAt: T0 + 1 }); // deleted

        assert.deepEqual(await store.findKeysDueForRotation(T0 + DAY_MS - 1, 10), []);
        assert.deepEqual(await store.findKeysDueForRotation(T0 + DAY_MS, 10), [a]);
        assert.deepEqual(await store.findKeysDueForRotation(T0 + 2 * DAY_MS, 10), [a, b]);
        assert.deepEqual(await store.findKeysDueForRotation(T0 + 2 * DAY_MS, 1), [a]);

        // Every write moves the due time: rotating a puts it behind b; deleting b removes it.
        const rotated = await updateKey(store, a, { ...a, rotatedAt: T0 + DAY_MS });
        assert.deepEqual(await store.findKeysDueForRotation(T0 + DAY_MS, 10), []);
        assert.deepEqual(await store.findKeysDueForRotation(T0 + 2 * DAY_MS, 10), [b, rotated]);
        await updateKey(store, b, { ...b, deletedAt: T0 + DAY_MS });
        assert.deepEqual(await store.findKeysDueForRotation(T0 + 2 * DAY_MS, 10), [rotated]);
      });

      it('finds versions due for destruction from destroyAt on, of keys not deleted, earliest first', async () => {
        const key = makeKey();
        const scheduled = (destroyAt: number) => makeVersion(key.id, { status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt });
        const [first, second] = [scheduled(T0 + DAY_MS), scheduled(T0 + 2 * DAY_MS)];
        const active = makeVersion(key.id);
        const destroyed = makeVersion(key.id, { status: 'DESTROYED' });
        await createKey(store, key, { insertVersions: [second, first, active, destroyed].map(withMaterial) });
        const gone = makeKey({ deletedAt: T0 });
        const orphan = makeVersion(gone.id, { status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 });
        await createKey(store, gone, { insertVersions: [withMaterial(orphan)] });

        assert.deepEqual(await store.findVersionsDueForDestruction(T0 + DAY_MS - 1, 10), []);
        assert.deepEqual(await store.findVersionsDueForDestruction(T0 + DAY_MS, 10), [first]);
        assert.deepEqual(await store.findVersionsDueForDestruction(T0 + 3 * DAY_MS, 10), [first, second]);
        assert.deepEqual(await store.findVersionsDueForDestruction(T0 + 3 * DAY_MS, 1), [first]);
        assert.equal(await store.getWrappedMaterial(key.id, destroyed.id), undefined, 'inserted DESTROYED holds nothing');
      });

      it('finds keys deleted strictly before the given time, earliest first', async () => {
        const { key: a } = await createKey(store, { deletedAt: T0 });
        const { key: b } = await createKey(store, { deletedAt: T0 + DAY_MS });
        await createKey(store);
        assert.deepEqual(await store.findDeletedKeys(T0, 10), []);
        assert.deepEqual(await store.findDeletedKeys(T0 + 1, 10), [a]);
        assert.deepEqual(await store.findDeletedKeys(T0 + DAY_MS + 1, 10), [a, b]);
        assert.deepEqual(await store.findDeletedKeys(T0 + DAY_MS + 1, 1), [a]);
      });
    });

    describe('purgeKey', () => {
      it('removes a deleted key with its versions and material, and keeps its operations', async () => {
        const key = makeKey();
        const v2 = makeVersion(key.id);
        const created = makeOperation(key.id, { createdAt: T0 });
        const { primary } = await createKey(store, key, { insertVersions: [withMaterial(v2)], operation: created });
        const deletedOp = makeOperation(key.id, { createdAt: T0 + 1, metadata: { type: 'DeleteSymmetricKeyMetadata', keyId: key.id } });
        const deleted = await updateKey(store, key, { ...key, deletedAt: T0 + 1 }, { operation: deletedOp });
        const bystander = await createKey(store);

        await store.purgeKey(key.id);
        assert.equal(await store.getKey(key.id), undefined);
        for (const v of [primary, v2]) {
          assert.equal(await store.getVersion(key.id, v.id), undefined);
          assert.equal(await store.getWrappedMaterial(key.id, v.id), undefined);
        }
        assert.deepEqual(await store.listVersions(key.id, firstPage), { items: [], nextPageToken: '' });
        assert.equal(await store.countLiveVersions(key.id), 0);
        assert.deepEqual(await store.findDeletedKeys(T0 + DAY_MS, 10), []);
        assert.deepEqual(await store.getOperation(created.id), created);
        assert.deepEqual((await store.listOperations(key.id, firstPage)).items, [deletedOp, created]);
        assert.deepEqual(await store.getKey(bystander.key.id), bystander.key);

        // A writer that read the key before the purge cannot bring it back.
        await rejectsWithCode(store.commitKeyChange({ key: { ...deleted, revision: 3 }, expectRevision: deleted.revision }), Code.Aborted);
        assert.equal(await store.getKey(key.id), undefined);
      });

      it('does nothing for a key that is already gone', async () => {
        await store.purgeKey('abjnothere');
      });

      it('refuses to purge a key that is not deleted', async () => {
        const { key, primary } = await createKey(store);
        await rejectsWithCode(store.purgeKey(key.id), Code.FailedPrecondition, key.id);
        assert.deepEqual(await store.getKey(key.id), key);
        assert.deepEqual(await store.getWrappedMaterial(key.id, primary.id), material(primary.id));
      });
    });

    describe('operations', () => {
      it('round-trips operations with every optional field present and absent', async () => {
        const { key, primary } = await createKey(store);
        const fullKey: SymmetricKey = { ...key, labels: { a: 'b' }, rotatedAt: T0 + 1, rotationPeriodMs: DAY_MS, deletedAt: T0 + 2 };
        const scheduledVersion: KeyVersion = { ...primary, status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + DAY_MS };
        const ops: Operation[] = [
          makeOperation(key.id, {
            description: 'Create symmetric key',
            createdAt: T0 + 4,
            modifiedAt: T0 + 5,
            metadata: { type: 'CreateSymmetricKeyMetadata', keyId: key.id, primaryVersionId: primary.id },
            response: { type: 'SymmetricKey', view: { key, primaryVersion: primary } },
            idempotencyKey: 'idem-create',
          }),
          makeOperation(key.id, {
            createdAt: T0 + 3,
            metadata: { type: 'ScheduleSymmetricKeyVersionDestructionMetadata', keyId: key.id, versionId: primary.id, destroyAt: T0 + DAY_MS },
            response: { type: 'SymmetricKeyVersion', version: scheduledVersion, primary: false },
          }),
          makeOperation(key.id, {
            createdAt: T0 + 2,
            metadata: { type: 'RotateSymmetricKeyMetadata', keyId: key.id, newPrimaryVersionId: primary.id },
            response: { type: 'SymmetricKey', view: { key: fullKey, primaryVersion: primary } },
          }),
          makeOperation(key.id, {
            createdAt: T0 + 1,
            done: false,
            metadata: { type: 'DeleteSymmetricKeyMetadata', keyId: key.id },
            error: { code: Code.FailedPrecondition, message: 'key is protected' },
          }),
          makeOperation(key.id, { createdAt: T0 }),
        ];
        let k = key;
        for (const op of ops) k = await updateKey(store, k, k, { operation: op });
        for (const op of ops) assert.deepEqual(await store.getOperation(op.id), op);
        assert.deepEqual((await store.listOperations(key.id, firstPage)).items, ops);
        assert.deepEqual(await store.findOperationByIdempotencyKey('ajeuser', 'idem-create'), ops[0]);
      });

      it('scopes idempotency keys to the caller who created the operation', async () => {
        const { key } = await createKey(store);
        const alice = makeOperation(key.id, { createdBy: 'ajealice', idempotencyKey: 'same' });
        const bob = makeOperation(key.id, { createdBy: 'ajebob', idempotencyKey: 'same' });
        const k = await updateKey(store, key, key, { operation: alice });
        assert.equal(await store.findOperationByIdempotencyKey('ajebob', 'same'), undefined);
        await updateKey(store, k, k, { operation: bob });
        assert.deepEqual(await store.findOperationByIdempotencyKey('ajealice', 'same'), alice);
        assert.deepEqual(await store.findOperationByIdempotencyKey('ajebob', 'same'), bob);
        assert.equal(await store.findOperationByIdempotencyKey('ajealice', 'other'), undefined);
      });

      it('refuses an idempotency key the same caller already used, writing nothing of that change', async () => {
        const { key } = await createKey(store);
        const first = makeOperation(key.id, { idempotencyKey: 'once' });
        const k = await updateKey(store, key, key, { operation: first });
        const v = makeVersion(key.id);
        const again = makeOperation(key.id, { idempotencyKey: 'once' });
        await rejectsWithCode(
          store.commitKeyChange({ key: { ...k, name: 'x', revision: k.revision + 1 }, expectRevision: k.revision, insertVersions: [withMaterial(v)], operation: again }),
          Code.AlreadyExists,
        );
        assert.deepEqual(await store.getKey(key.id), k);
        assert.equal(await store.getVersion(key.id, v.id), undefined);
        assert.equal(await store.getOperation(again.id), undefined);
        assert.deepEqual(await store.findOperationByIdempotencyKey(first.createdBy, 'once'), first);
      });
    });

    describe('principals and tokens', () => {
      const principal = makePrincipal;
      const token = makeToken;

      it('round-trips principals of every kind', async () => {
        const all = [principal(), principal({ type: 'serviceAccount', name: 'ci', description: 'the CI robot' }), principal({ name: 'kmsd', createdAt: T0 + 9 })];
        for (const p of all) await store.createPrincipal(p);
        for (const p of all) assert.deepEqual(await store.getPrincipal(p.id), p);
      });

      it('refuses a principal id that exists', async () => {
        const p = principal({ name: 'first' });
        await store.createPrincipal(p);
        await rejectsWithCode(store.createPrincipal({ ...p, name: 'second' }), Code.AlreadyExists, p.id);
        assert.deepEqual(await store.getPrincipal(p.id), p);
      });

      it('round-trips tokens with and without expiry and revocation', async () => {
        const p = principal();
        await store.createPrincipal(p);
        const all = [token(p.id), token(p.id, { expiresAt: T0 + DAY_MS, description: 'nightly job' }), token(p.id, { expiresAt: T0 + DAY_MS, revokedAt: T0 + 1 })];
        for (const t of all) await store.createToken(t);
        for (const t of all) assert.deepEqual(await store.getToken(t.id), t);
      });

      it('refuses a token id that exists and a token of an unknown principal', async () => {
        const p = principal();
        await store.createPrincipal(p);
        const t = token(p.id);
        await store.createToken(t);
        await rejectsWithCode(store.createToken({ ...t, secretHash: material('other') }), Code.AlreadyExists, t.id);
        assert.deepEqual(await store.getToken(t.id), t);
        const orphan = token('ajenobody');
        await rejectsWithCode(store.createToken(orphan), Code.NotFound, 'ajenobody');
        assert.equal(await store.getToken(orphan.id), undefined);
      });

      it('lists principals in creation order, paged', async () => {
        const made = [principal({ createdAt: T0 + 3 }), principal({ createdAt: T0 + 1 }), principal({ createdAt: T0 + 2 })];
        for (const p of made) await store.createPrincipal(p);
        const { items, pages } = await allPages((req) => store.listPrincipals(req), 2);
        assert.equal(pages, 2);
        assert.deepEqual(items, [...made].sort((a, b) => a.createdAt - b.createdAt));
      });

      it('orders principals created at the same time by id', async () => {
        const made = [principal(), principal(), principal()];
        for (const p of [...made].reverse()) await store.createPrincipal(p);
        assert.deepEqual(ids((await allPages((req) => store.listPrincipals(req), 1)).items), ids(made));
      });

      it('lists tokens of a principal and revokes one once (the first revocation time stays)', async () => {
        const p = principal();
        await store.createPrincipal(p);
        const a = token(p.id, { createdAt: T0 + 1 });
        const b = token(p.id, { createdAt: T0 + 2 });
        await store.createToken(b);
        await store.createToken(a);
        assert.deepEqual(await store.listTokens(p.id), [a, b]);
        assert.equal(await store.revokeToken(a.id, T0 + 10), true);
        assert.equal(await store.revokeToken(a.id, T0 + 20), true);
        assert.equal((await store.getToken(a.id))?.revokedAt, T0 + 10);
        assert.equal(await store.revokeToken('toknosuchtoken', T0), false);
        assert.deepEqual(await store.listTokens('ajenobody'), []);
      });

      it('deletes a principal with its tokens and every binding naming it, and reports the tokens', async () => {
        const p = principal({ type: 'serviceAccount' });
        const other = principal({ type: 'serviceAccount' });
        await store.createPrincipal(p);
        await store.createPrincipal(other);
        const t1 = token(p.id);
        const t2 = token(p.id);
        const kept = token(other.id);
        for (const t of [t1, t2, kept]) await store.createToken(t);
        const mine = { roleId: 'kms.admin', subject: { type: 'serviceAccount' as const, id: p.id } };
        const theirs = { roleId: 'kms.viewer', subject: { type: 'serviceAccount' as const, id: other.id } };
        await store.changeBindings({ scope: { type: 'folder', id: FOLDER }, replace: [mine, theirs] });
        await store.changeBindings({ scope: { type: 'global', id: '' }, replace: [mine] });

        assert.deepEqual((await store.deletePrincipal(p.id))?.sort(), [t1.id, t2.id].sort());
        assert.equal(await store.getPrincipal(p.id), undefined);
        assert.equal(await store.getToken(t1.id), undefined);
        assert.deepEqual(await store.getToken(kept.id), kept);
        assert.deepEqual(await store.listBindings({ type: 'folder', id: FOLDER }), [theirs]);
        assert.deepEqual(await store.listBindings({ type: 'global', id: '' }), []);
        assert.equal(await store.deletePrincipal(p.id), undefined, 'a second delete finds nothing');
      });

      it('deletes a principal without tokens, answering no token ids, and leaves a same-id subject of another type bound', async () => {
        const p = principal({ type: 'userAccount' });
        await store.createPrincipal(p);
        const asUser = { roleId: 'kms.viewer', subject: { type: 'userAccount' as const, id: p.id } };
        const asRobot = { roleId: 'kms.viewer', subject: { type: 'serviceAccount' as const, id: p.id } };
        await store.changeBindings({ scope: { type: 'folder', id: FOLDER }, replace: [asUser, asRobot] });
        assert.deepEqual(await store.deletePrincipal(p.id), []);
        assert.deepEqual(await store.listBindings({ type: 'folder', id: FOLDER }), [asRobot]);
        assert.deepEqual(ids((await store.listPrincipals(firstPage)).items), []);
      });
    });

    describe('access bindings', () => {
      const sa = (id: string) => ({ type: 'serviceAccount' as const, id });
      const folder = { type: 'folder' as const, id: FOLDER };

      it('replaces a scope\'s bindings and answers the effective deltas; other scopes are untouched', async () => {
        const a = { roleId: 'kms.viewer', subject: sa('ajea') };
        const b = { roleId: 'kms.admin', subject: sa('ajeb') };
        const c = { roleId: 'kms.editor', subject: { type: 'system' as const, id: 'allAuthenticatedUsers' } };
        assert.deepEqual(await store.changeBindings({ scope: folder, replace: [a, b, a] }), [
          { action: 'ADD', binding: a },
          { action: 'ADD', binding: b },
        ]);
        await store.changeBindings({ scope: { type: 'folder', id: OTHER_FOLDER }, replace: [a] });
        assert.deepEqual(await store.changeBindings({ scope: folder, replace: [b, c] }), [
          { action: 'REMOVE', binding: a },
          { action: 'ADD', binding: c },
        ]);
        assert.deepEqual(await store.listBindings(folder), [b, c]);
        assert.deepEqual(await store.listBindings({ type: 'folder', id: OTHER_FOLDER }), [a]);
        assert.deepEqual(await store.changeBindings({ scope: folder, replace: [] }), [
          { action: 'REMOVE', binding: b },
          { action: 'REMOVE', binding: c },
        ]);
        assert.deepEqual(await store.listBindings(folder), []);
      });

      it('applies deltas in order; adding a present or removing an absent binding is not effective', async () => {
        const a = { roleId: 'kms.viewer', subject: sa('ajea') };
        const b = { roleId: 'kms.admin', subject: sa('ajeb') };
        await store.changeBindings({ scope: folder, replace: [a] });
        const effective = await store.changeBindings({
          scope: folder,
          deltas: [
            { action: 'ADD', binding: a },
            { action: 'ADD', binding: b },
            { action: 'REMOVE', binding: { roleId: 'kms.editor', subject: sa('ajec') } },
            { action: 'REMOVE', binding: a },
          ],
        });
        assert.deepEqual(effective, [
          { action: 'ADD', binding: b },
          { action: 'REMOVE', binding: a },
        ]);
        assert.deepEqual(await store.listBindings(folder), [b]);
      });

      it('finds every binding of given subjects across scopes', async () => {
        const me = sa('ajeme');
        await store.changeBindings({ scope: { type: 'global', id: '' }, replace: [{ roleId: 'kms.auditor', subject: me }] });
        await store.changeBindings({ scope: folder, replace: [{ roleId: 'kms.editor', subject: me }, { roleId: 'kms.admin', subject: sa('ajeelse') }] });
        await store.changeBindings({ scope: { type: 'key', id: 'abjkey' }, replace: [{ roleId: 'kms.keys.encrypter', subject: { type: 'system', id: 'allUsers' } }] });
        const found = await store.bindingsOfSubjects([me, { type: 'system', id: 'allUsers' }]);
        const shown = found.map((f) => `${f.scope.type}/${f.scope.id}/${f.binding.roleId}/${f.binding.subject.id}`).sort();
        assert.deepEqual(shown, ['folder/b1gfolder/kms.editor/ajeme', 'global//kms.auditor/ajeme', 'key/abjkey/kms.keys.encrypter/allUsers']);
      });

      it('finds bindings by subject type and id together, and nothing for no subjects', async () => {
        await store.changeBindings({ scope: folder, replace: [{ roleId: 'kms.viewer', subject: { type: 'userAccount', id: 'ajesame' } }] });
        assert.deepEqual(await store.bindingsOfSubjects([sa('ajesame')]), []);
        assert.deepEqual(await store.bindingsOfSubjects([]), []);
        assert.deepEqual(await store.bindingsOfSubjects([{ type: 'userAccount', id: 'ajesame' }]), [
          { scope: folder, binding: { roleId: 'kms.viewer', subject: { type: 'userAccount', id: 'ajesame' } } },
        ]);
      });

      it('serialises concurrent changes of one scope: each sees the bindings the one before left', async () => {
        const x = { roleId: 'kms.viewer', subject: sa('ajex') };
        const adds = await Promise.all(Array.from({ length: 10 }, () => store.changeBindings({ scope: folder, deltas: [{ action: 'ADD', binding: x }] })));
        assert.deepEqual(
          adds.filter((d) => d.length > 0),
          [[{ action: 'ADD', binding: x }]],
          'exactly one of the additions of the same binding is effective',
        );
        await store.changeBindings({ scope: folder, replace: [] });
        const each = Array.from({ length: 10 }, (_, i) => ({ roleId: 'kms.viewer', subject: sa(`ajeeach${i}`) }));
        const replaced = await Promise.all(each.map((b) => store.changeBindings({ scope: folder, replace: [b] })));
        assert.equal((await store.listBindings(folder)).length, 1, 'the last replacement wins whole');
        const count = (action: string) => replaced.flat().filter((d) => d.action === action).length;
        assert.equal(count('ADD'), 10);
        assert.equal(count('REMOVE'), 9, 'every replacement but the first removed the binding of the one before');
      });

      it('stores a change\'s operation with it, and a failing operation insert leaves the bindings as they were', async () => {
        const a = { roleId: 'kms.viewer', subject: sa('ajea') };
        const op = makeOperation('abjkey', { metadata: { type: 'SetAccessBindingsMetadata', resourceId: 'abjkey' }, response: { type: 'Empty' } });
        await store.changeBindings({ scope: { type: 'key', id: 'abjkey' }, replace: [a], operation: op });
        assert.deepEqual(await store.getOperation(op.id), op);
        await rejectsWithCode(store.changeBindings({ scope: { type: 'key', id: 'abjkey' }, replace: [], operation: op }), Code.AlreadyExists, op.id);
        assert.deepEqual(await store.listBindings({ type: 'key', id: 'abjkey' }), [a]);
      });

      it('purging a key drops its bindings', async () => {
        const { key } = await createKey(store);
        await store.changeBindings({ scope: { type: 'key', id: key.id }, replace: [{ roleId: 'kms.viewer', subject: sa('ajea') }] });
        await store.commitKeyChange({ key: { ...key, deletedAt: T0, revision: 2 }, expectRevision: 1 });
        await store.purgeKey(key.id);
        assert.deepEqual(await store.listBindings({ type: 'key', id: key.id }), []);
      });

      it('lists only the given keys of a folder when asked', async () => {
        const { key: a } = await createKey(store, { createdAt: T0 + 1 });
        await createKey(store, { createdAt: T0 + 2 });
        const { key: c } = await createKey(store, { createdAt: T0 + 3 });
        const page = await store.listKeys(FOLDER, { pageSize: 10, pageToken: '' }, new Set([a.id, c.id, 'abjnotakey']));
        assert.deepEqual(page.items.map((k) => k.id), [a.id, c.id]);
        assert.deepEqual((await store.listKeys(FOLDER, { pageSize: 10, pageToken: '' }, new Set())).items, []);
      });

      it('pages through only the given keys, leaving out deleted keys and keys of other folders', async () => {
        const wanted = [];
        for (let i = 1; i <= 5; i++) wanted.push((await createKey(store, { createdAt: T0 + i })).key);
        const { key: deleted } = await createKey(store, { createdAt: T0 + 6, deletedAt: T0 + 7 });
        const { key: elsewhere } = await createKey(store, { createdAt: T0 + 8, folderId: OTHER_FOLDER });
        await createKey(store, { createdAt: T0 + 9 });
        const only = new Set([...wanted.map((k) => k.id), deleted.id, elsewhere.id]);
        const { items, pages } = await allPages((req) => store.listKeys(FOLDER, req, only), 2);
        assert.equal(pages, 3);
        assert.deepEqual(ids(items), ids(wanted));
      });
    });

    describe('audit log', () => {
      const key = AUDIT_KEY;
      const seal = auditSeal;
      const ev = auditEvent;
      const verify = () => auditChainProblems(store);
      const append = (...events: AuditEvent[]): AuditAppend => ({ events, seal });
      const requestIds = async () => (await store.scanAudit(0, 1000)).map((r) => (JSON.parse(r.body) as { requestId: string }).requestId);

      it('numbers records across appends, keeps them byte for byte, and seals the head', async () => {
        assert.equal(await store.getAuditHead(), undefined);
        await store.appendAudit({ events: [ev(1), ev(2)], seal });
        await store.appendAudit({ events: [ev(3)], seal });
        const records = await store.scanAudit(0, 100);
        assert.deepEqual(records.map((r) => r.seq), [1, 2, 3]);
        assert.equal(records[2]!.body, sealBatch(key, { seq: 2, hash: records[1]!.hash }, [ev(3)]).records[0]!.body);
        assert.equal((await store.getAuditHead())?.seq, 3);
        assert.deepEqual(await verify(), []);
        assert.deepEqual((await store.scanAudit(1, 1)).map((r) => r.seq), [2]);
      });

      it('stores exactly the records and head that seal made, and reads them in seq order', async () => {
        const sealed: SealedBatch[] = [];
        const capture: AuditAppend['seal'] = (head, events) => {
          const batch = seal(head, events);
          sealed.push(batch);
          return batch;
        };
        await store.appendAudit({ events: [ev(1, { folderId: FOLDER, versionId: 'abjv', resourceId: 'opid' })], seal: capture });
        await store.appendAudit({ events: [ev(2, { subject: { type: 'userAccount', id: 'ajé "quoted" \\ ✓' } }), ev(3, { transport: 'grpc' })], seal: capture });
        assert.deepEqual(await store.scanAudit(0, 100), sealed.flatMap((b) => b.records));
        assert.deepEqual(await store.getAuditHead(), sealed.at(-1)?.head);
        assert.deepEqual(await store.scanAudit(3, 100), [], 'nothing after the last record');
        assert.deepEqual((await store.scanAudit(0, 2)).map((r) => r.seq), [1, 2], 'at most limit records');
      });

      it('an append of no events writes nothing', async () => {
        await store.appendAudit({ events: [], seal });
        assert.equal(await store.getAuditHead(), undefined);
        assert.deepEqual(await store.scanAudit(0, 10), []);
      });

      it('commits the records of every write that takes them with that write', async () => {
        const p = makePrincipal({ type: 'serviceAccount' });
        const t = makeToken(p.id);
        const scope = { type: 'folder' as const, id: FOLDER };
        const binding = { roleId: 'kms.viewer', subject: { type: 'serviceAccount' as const, id: p.id } };
        await store.createPrincipal(p, append(ev(1)));
        await store.createToken(t, append(ev(2)));
        assert.equal(await store.revokeToken(t.id, T0 + 5, append(ev(3))), true);
        assert.deepEqual(await store.changeBindings({ scope, replace: [binding], audit: append(ev(4), ev(5)) }), [{ action: 'ADD', binding }]);
        const { key: k } = await createKey(store, {}, { audit: append(ev(6)) });
        await updateKey(store, k, { ...k, name: 'renamed' }, { audit: append(ev(7)) });
        assert.deepEqual(await store.deletePrincipal(p.id, append(ev(8))), [t.id]);
        assert.deepEqual(await requestIds(), ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8']);
        assert.equal((await store.getAuditHead())?.seq, 8);
        assert.deepEqual(await verify(), []);
        assert.equal((await store.getKey(k.id))?.name, 'renamed');
        assert.equal(await store.getPrincipal(p.id), undefined);
        assert.deepEqual(await store.listBindings(scope), []);
      });

      it('a write that finds nothing or fails appends no record', async () => {
        const p = makePrincipal();
        await store.createPrincipal(p);
        const { key: k } = await createKey(store);
        const scope = { type: 'key' as const, id: k.id };
        const kept = { roleId: 'kms.viewer', subject: { type: 'userAccount' as const, id: p.id } };
        const op = makeOperation(k.id, { metadata: { type: 'SetAccessBindingsMetadata', resourceId: k.id }, response: { type: 'Empty' } });
        await store.changeBindings({ scope, replace: [kept], operation: op });

        assert.equal(await store.deletePrincipal('ajenobody', append(ev(1))), undefined);
        assert.equal(await store.revokeToken('toknosuchtoken', T0, append(ev(2))), false);
        await rejectsWithCode(store.createToken(makeToken('ajenobody'), append(ev(3))), Code.NotFound);
        await rejectsWithCode(store.createPrincipal(p, append(ev(4))), Code.AlreadyExists);
        await rejectsWithCode(createKey(store, k, { audit: append(ev(5)) }), Code.AlreadyExists);
        const again = { ...op, description: 'again' };
        await rejectsWithCode(store.changeBindings({ scope, replace: [], operation: again, audit: append(ev(6)) }), Code.AlreadyExists, op.id);

        assert.deepEqual(await store.scanAudit(0, 10), []);
        assert.equal(await store.getAuditHead(), undefined);
        assert.deepEqual(await store.listBindings(scope), [kept], 'the failed change removed nothing');
        assert.deepEqual(await store.getOperation(op.id), op);
        await store.appendAudit(append(ev(7)));
        assert.deepEqual((await store.scanAudit(0, 10)).map((r) => r.seq), [1], 'numbering starts at 1 after the failed appends');
      });

      it('queries by time range, subject, key and outcome, in seq order, paged', async () => {
        await store.appendAudit({ events: Array.from({ length: 12 }, (_, i) => ev(i + 1)), seal });
        const seqs = async (filter: AuditFilter, pageSize = 100) => {
          const out: number[] = [];
          let pageToken = '';
          do {
            const page = await store.queryAudit(filter, { pageSize, pageToken });
            out.push(...page.items.map((r) => r.seq));
            pageToken = page.nextPageToken;
          } while (pageToken !== '');
          return out;
        };
        assert.deepEqual(await seqs({}, 5), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert.deepEqual(await seqs({ subjectId: 'ajeeven' }), [2, 4, 6, 8, 10, 12]);
        assert.deepEqual(await seqs({ keyId: 'abjthree' }, 2), [3, 6, 9, 12]);
        assert.deepEqual(await seqs({ outcome: 'error' }), [4, 8, 12]);
        assert.deepEqual(await seqs({ outcome: 'PERMISSION_DENIED', subjectId: 'ajeeven' }), [4, 8, 12]);
        assert.deepEqual(await seqs({ outcome: 'ok', keyId: 'abjthree' }), [3, 6, 9]);
        assert.deepEqual(await seqs({ from: T0 + 3000, to: T0 + 6000 }), [3, 4, 5]);
        await rejectsWithCode(store.queryAudit({ outcome: 'MAYBE' }, { pageSize: 1, pageToken: '' }), Code.InvalidArgument, 'outcome');
        await rejectsWithCode(store.queryAudit({}, { pageSize: 1, pageToken: '!!' }), Code.InvalidArgument, 'page_token');
      });

      it('takes an outcome by status name, OK included, and ends paging at the last record', async () => {
        await store.appendAudit({ events: Array.from({ length: 4 }, (_, i) => ev(i + 1)), seal });
        const seqs = async (filter: AuditFilter) => (await store.queryAudit(filter, { pageSize: 100, pageToken: '' })).items.map((r) => r.seq);
        assert.deepEqual(await seqs({ outcome: 'OK' }), [1, 2, 3]);
        assert.deepEqual(await seqs({ outcome: 'NOT_FOUND' }), []);
        assert.deepEqual(await seqs({ subjectId: 'ajenobody' }), []);
        const full = await store.queryAudit({}, { pageSize: 4, pageToken: '' });
        assert.deepEqual([full.items.length, full.nextPageToken], [4, ''], 'no token when the page ends at the last record');
        const first = await store.queryAudit({}, { pageSize: 3, pageToken: '' });
        const rest = await store.queryAudit({}, { pageSize: 3, pageToken: first.nextPageToken });
        assert.deepEqual([rest.items.map((r) => r.seq), rest.nextPageToken], [[4], '']);
      });

      it('commits a key change and its record together: a failed change leaves no record', async () => {
        const { key: k } = await createKey(store);
        await store.commitKeyChange({ key: { ...k, name: 'renamed', revision: 2 }, expectRevision: 1, audit: { events: [ev(1)], seal } });
        await rejectsWithCode(store.commitKeyChange({ key: { ...k, name: 'stale', revision: 2 }, expectRevision: 1, audit: { events: [ev(2)], seal } }), Code.Aborted);
        const p = { id: testId('aje'), type: 'userAccount' as const, name: 'x', createdAt: T0 };
        await store.createPrincipal(p, { events: [ev(3)], seal });
        await rejectsWithCode(store.createPrincipal(p, { events: [ev(4)], seal }), Code.AlreadyExists);
        assert.deepEqual((await store.scanAudit(0, 10)).map((r) => JSON.parse(r.body).requestId), ['r1', 'r3']);
        assert.deepEqual(await verify(), []);
      });

      it('a record that cannot be sealed fails the change with UNAVAILABLE and writes nothing', async () => {
        const { key: k } = await createKey(store);
        const broken: AuditAppend = {
          events: [ev(1)],
          seal: () => {
            throw new Error('no key');
          },
        };
        await rejectsWithCode(store.commitKeyChange({ key: { ...k, name: 'renamed', revision: 2 }, expectRevision: 1, audit: broken }), Code.Unavailable);
        assert.equal((await store.getKey(k.id))?.name, k.name);
        await rejectsWithCode(store.changeBindings({ scope: { type: 'key', id: k.id }, replace: [{ roleId: 'kms.viewer', subject: { type: 'system', id: 'allUsers' } }], audit: broken }), Code.Unavailable);
        assert.deepEqual(await store.listBindings({ type: 'key', id: k.id }), []);
        assert.deepEqual(await store.scanAudit(0, 10), []);
      });

      it('concurrent appends make one unbroken chain without gaps', async () => {
        await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendAudit({ events: [ev(i + 1), ev(i + 100)], seal })));
        const records = await store.scanAudit(0, 1000);
        assert.deepEqual(records.map((r) => r.seq), Array.from({ length: 40 }, (_, i) => i + 1));
        assert.deepEqual(await verify(), []);
      });
    });

    describe('change feed', () => {
      it('publishes every committed write once it commits, and nothing of a write that failed', async () => {
        const heard = await listen(store);
        try {
          const { key } = await createKey(store);
          const updated = await updateKey(store, key, { ...key, name: 'renamed' });
          // Fails whole (its version id is taken): neither key nor version exists afterwards.
          const failed = makeKey();
          await rejectsWithCode(
            store.commitKeyChange({ key: failed, insertVersions: [withMaterial(makeVersion(failed.id, { id: key.primaryVersionId }))] }),
            Code.AlreadyExists,
          );
          await rejectsWithCode(store.commitKeyChange({ key: { ...updated, revision: 9 }, expectRevision: 1 }), Code.Aborted);
          const p = makePrincipal();
          await store.createPrincipal(p);
          const t: TokenRecord = { id: testId('tok'), principalId: p.id, secretHash: material('t'), createdAt: T0 };
          await store.createToken(t);
          await store.revokeToken(t.id, T0 + 1);
          assert.equal(await store.revokeToken('tokmissing', T0 + 1), false); // nothing changed: nothing to tell
          const binding = { roleId: 'kms.viewer', subject: { type: 'serviceAccount' as const, id: p.id } };
          await store.changeBindings({ scope: { type: 'folder', id: 'b1gf' }, deltas: [{ action: 'ADD', binding }] });
          await store.changeBindings({ scope: { type: 'folder', id: 'b1gf' }, deltas: [{ action: 'ADD', binding }] }); // no-op
          const t2: TokenRecord = { id: testId('tok'), principalId: p.id, secretHash: material('t2'), createdAt: T0 };
          await store.createToken(t2);
          await store.deletePrincipal(p.id);
          const deleted = await updateKey(store, updated, { ...updated, deletedAt: T0 });
          await store.purgeKey(deleted.id);
          await store.purgeKey(deleted.id); // nothing left to purge: nothing to tell
          const last = await createKey(store);

          // Changes arrive in commit order, so once the last is heard every earlier one has been.
          await eventually('the last change', () => heard.changed().includes(`key:${last.key.id}`));
          assert.deepEqual(heard.changed(), [
            `key:${key.id}`,
            `key:${key.id}`,
            `principal:${p.id}`,
            `token:${t.id}`,
            `token:${t.id}`,
            'binding:folder:b1gf',
            `token:${t2.id}`,
            `principal:${p.id}`,
            `token:${t.id}`,
            `token:${t2.id}`,
            `key:${key.id}`,
            `key:${key.id}`,
            `binding:key:${key.id}`,
            `key:${last.key.id}`,
          ]);
          assert.ok(!heard.changed().includes(`key:${failed.id}`));
        } finally {
          heard.stop();
        }
      });

      it('stops telling a handler once it unsubscribes', async () => {
        const kept = await listen(store);
        const dropped = await listen(store);
        dropped.stop();
        try {
          const { key } = await createKey(store);
          await eventually('the change', () => kept.changed().includes(`key:${key.id}`));
          assert.deepEqual(dropped.changed(), []);
        } finally {
          kept.stop();
        }
      });
    });

    describe('background work lock', () => {
      it('runs one holder of a job at a time: the others skip, or wait for it', async () => {
        let release!: () => void;
        const held = new Promise<void>((r) => (release = r));
        let started!: () => void;
        const running = new Promise<void>((r) => (started = r));
        const order: string[] = [];
        const first = store.exclusively('job', { wait: false }, async () => {
          started();
          await held;
          order.push('first');
          return 1;
        });
        await running;
        assert.deepEqual(await store.exclusively('job', { wait: false }, async () => 2), { ran: false });
        assert.deepEqual(await store.exclusively('other job', { wait: false }, async () => 3), { ran: true, value: 3 }, 'jobs lock apart');
        const waiting = store.exclusively('job', { wait: true }, async () => {
          order.push('waited');
          return 4;
        });
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(order, [], 'the waiting one has not run yet');
        release();
        assert.deepEqual(await first, { ran: true, value: 1 });
        assert.deepEqual(await waiting, { ran: true, value: 4 });
        assert.deepEqual(order, ['first', 'waited']);
      });

      it('gives the lock back when the work fails', async () => {
        await assert.rejects(
          store.exclusively('job', { wait: false }, async () => {
            throw new Error('work failed');
          }),
          /work failed/,
        );
        assert.deepEqual(await store.exclusively('job', { wait: false }, async () => 'again'), { ran: true, value: 'again' });
      });
    });

    describe('snapshots', () => {
      /** A store with some of everything: every optional field, every version status, a deleted key. */
      async function populate(s: Store): Promise<void> {
        await s.initMeta('root_key_check', 'wrapped-check-value');
        await s.initMeta('bootstrap_admin_id', 'ajeadmin');
        const admin: Principal = { id: testId('aje'), type: 'userAccount', name: 'admin', createdAt: T0 };
        const svc: Principal = { id: testId('aje'), type: 'serviceAccount', name: 'svc', createdAt: T0 + 1 };
        for (const p of [admin, svc]) await s.createPrincipal(p);
        await s.createToken({ id: testId('tok'), principalId: admin.id, secretHash: material('a'), createdAt: T0 });
        await s.createToken({ id: testId('tok'), principalId: svc.id, secretHash: material('b'), createdAt: T0, expiresAt: T0 + DAY_MS, revokedAt: T0 + 5 });
        const { key } = await createKey(s, { labels: { env: 'prod' }, rotationPeriodMs: DAY_MS }, { operation: makeOperation('x', { idempotencyKey: 'idem' }) });
        const old = makeVersion(key.id, { createdAt: T0 + 1 });
        const gone = makeVersion(key.id, { createdAt: T0 + 2 });
        const k = await updateKey(s, key, { ...key, rotatedAt: T0 + 3 }, { insertVersions: [withMaterial(old), withMaterial(gone)] });
        await updateKey(s, k, k, {
          updateVersions: [scheduleDestruction(k, old, T0 + 4, DAY_MS), destroy(scheduleDestruction(k, gone, T0 + 4, DAY_MS))],
          operation: makeOperation(key.id, { error: { code: Code.Aborted, message: 'm' }, done: false }),
        });
        await createKey(s, { folderId: OTHER_FOLDER, deletedAt: T0 + 9, deletionProtection: true, description: 'gone soon' });
        await s.changeBindings({
          scope: { type: 'key', id: key.id },
          deltas: [{ action: 'ADD', binding: { roleId: 'kms.keys.encrypterDecrypter', subject: { type: 'serviceAccount', id: svc.id } } }],
          audit: { events: [auditEvent(1), auditEvent(2)], seal: auditSeal },
        });
      }

      const COUNTS = { meta: 2, principal: 2, token: 2, key: 2, version: 4, operation: 2, binding: 1, audit: 2, auditHead: 1 };

      it('exports everything, in the order an import needs, and an empty store imports it as it was', async () => {
        await populate(store);
        const records = await collect(store.exportSnapshot());
        const types = records.map((r) => r.type);
        const all = ['meta', 'principal', 'token', 'key', 'version', 'operation', 'binding', 'audit', 'auditHead'];
        assert.deepEqual([...new Set(types)], all);
        assert.deepEqual(Object.fromEntries(all.map((t) => [t, types.filter((x) => x === t).length])), COUNTS);
        for (const r of records) {
          if (r.type !== 'version') continue;
          if (r.version.status === 'DESTROYED') assert.equal(r.wrappedMaterial, undefined);
          else assert.deepEqual(r.wrappedMaterial, material(r.version.id), 'material exported exactly as stored (wrapped)');
        }

        const target = await open(); // PostgreSQL: the same schema, emptied
        try {
          const counts = await target.importSnapshot(replay(records));
          assert.deepEqual(counts, COUNTS);
          assert.deepEqual(await collect(target.exportSnapshot()), records);
          const key = records.find((r): r is Extract<SnapshotRecord, { type: 'key' }> => r.type === 'key' && r.key.deletedAt === undefined)!.key;
          assert.deepEqual(await target.getKey(key.id), key);
          assert.deepEqual(await target.findKeysDueForRotation(T0 + 10 * DAY_MS, 10), [key], 'derived columns are rebuilt');
          assert.deepEqual(await target.getWrappedMaterial(key.id, key.primaryVersionId), material(key.primaryVersionId));
          assert.equal((await target.findOperationByIdempotencyKey('ajeuser', 'idem'))?.resourceId, 'x');
          const bound = records.find((r): r is Extract<SnapshotRecord, { type: 'binding' }> => r.type === 'binding')!;
          assert.deepEqual(bound.scope, { type: 'key', id: key.id });
          assert.deepEqual(await target.listBindings(bound.scope), [bound.binding]);
          assert.deepEqual(await auditChainProblems(target), [], 'the audit chain is whole after the import');
          assert.equal((await target.getAuditHead())?.seq, 2);
        } finally {
          await target.close();
        }
      });

      it('exports one moment: a write made while the export is read is not in it', async () => {
        const before = await createKey(store);
        const records = store.exportSnapshot()[Symbol.asyncIterator]();
        const firstRecord = await records.next();
        const during = await createKey(store);
        const rest: SnapshotRecord[] = firstRecord.done ? [] : [firstRecord.value];
        for (let r = await records.next(); !r.done; r = await records.next()) rest.push(r.value);
        const keys = rest.flatMap((r) => (r.type === 'key' ? [r.key.id] : []));
        assert.deepEqual(keys, [before.key.id]);
        assert.ok(!keys.includes(during.key.id));
      });

      it('can stop reading an export half-way, and the store carries on', async () => {
        await populate(store);
        for await (const r of store.exportSnapshot()) {
          assert.equal(r.type, 'meta');
          break;
        }
        const { key } = await createKey(store);
        assert.deepEqual(await store.getKey(key.id), key);
        assert.equal((await collect(store.exportSnapshot())).length, 20, 'the 18 records of populate, a key and its version');
      });

      it('refuses to import into a store that holds anything, even only meta, and writes nothing', async () => {
        await store.initMeta('root_key_check', 'x');
        const p: Principal = { id: testId('aje'), type: 'userAccount', name: 'p', createdAt: T0 };
        await rejectsWithCode(store.importSnapshot(replay([{ type: 'principal', principal: p }])), Code.FailedPrecondition, 'not empty');
        assert.equal(await store.getPrincipal(p.id), undefined);
      });

      it('imports nothing when the records fail part-way', async () => {
        const source = await open();
        let records: SnapshotRecord[];
        try {
          await populate(source);
          records = await collect(source.exportSnapshot());
        } finally {
          await source.close();
        }
        const target = await open();
        try {
          await assert.rejects(target.importSnapshot(replay(records.slice(0, 8), new Error('the backup file is truncated'))), /truncated/);
          assert.deepEqual(await collect(target.exportSnapshot()), [], 'nothing was written');
          await target.importSnapshot(replay(records)); // and the store is still usable for a good one
        } finally {
          await target.close();
        }
      });

      it('refuses records out of order, a version whose material does not fit its status, and what the schema refuses', async () => {
        const key = makeKey();
        const version = makeVersion(key.id, { id: key.primaryVersionId });
        const older = makeVersion(key.id);
        const p: Principal = { id: testId('aje'), type: 'userAccount', name: 'p', createdAt: T0 };
        const bad: { records: SnapshotRecord[]; mentions: string }[] = [
          { records: [{ type: 'key', key }, { type: 'principal', principal: p }], mentions: 'record 2: a principal record after key records' },
          { records: [{ type: 'key', key }, { type: 'version', version }], mentions: 'record 2: version .* is ACTIVE but has no material' },
          {
            records: [{ type: 'key', key }, { type: 'version', version: destroy(scheduleDestruction(key, older, T0, DAY_MS)), wrappedMaterial: material('x') }],
            mentions: 'is DESTROYED but has material',
          },
          { records: [{ type: 'token', token: { id: testId('tok'), principalId: 'ajenobody', secretHash: material('s'), createdAt: T0 } }], mentions: 'record 1 \\(token\\)' },
          { records: [{ type: 'principal', principal: p }, { type: 'principal', principal: p }], mentions: 'record 2 \\(principal\\)' },
          { records: [{ type: 'version', version, wrappedMaterial: material('v') }], mentions: 'record 1 \\(version\\)' },
        ];
        for (const { records, mentions } of bad) {
          await rejectsWithCode(store.importSnapshot(replay(records)), Code.InvalidArgument, mentions);
          assert.deepEqual(await collect(store.exportSnapshot()), [], `nothing written for: ${mentions}`);
        }
      });
    });

    describe('meta', () => {
      it('sets a value only once and returns the value stored', async () => {
        assert.equal(await store.getMeta('root-key-check'), undefined);
        assert.equal(await store.initMeta('root-key-check', 'first'), 'first');
        assert.equal(await store.initMeta('root-key-check', 'second'), 'first');
        assert.equal(await store.getMeta('root-key-check'), 'first');
        assert.equal(await store.initMeta('admin-id', ''), '');
        assert.equal(await store.getMeta('admin-id'), '');
      });

      it('replaceMeta swaps a value only if it is still the expected one', async () => {
        await store.initMeta('rk-check', 'old');
        assert.equal(await store.replaceMeta('rk-check', 'stale', 'new'), false);
        assert.equal(await store.getMeta('rk-check'), 'old');
        assert.equal(await store.replaceMeta('rk-check', 'old', 'new'), true);
        assert.equal(await store.getMeta('rk-check'), 'new');
        assert.equal(await store.replaceMeta('missing', 'old', 'new'), false);
        assert.equal(await store.getMeta('missing'), undefined);
      });
    });

    describe('stored material for root-key rotation', () => {
      /** Every blob, page by page, as the rotation walks them. */
      async function walk(pageSize: number): Promise<{ keyId: string; versionId: string; material: Buffer }[]> {
        const all: { keyId: string; versionId: string; material: Buffer }[] = [];
        for (let after = ''; ; ) {
          const page = await store.listStoredMaterial(after, pageSize);
          all.push(...page);
          if (page.length < pageSize) return all;
          after = page[page.length - 1]!.versionId;
        }
      }

      it('walks every blob once in version id order, leaving out destroyed versions and purged keys', async () => {
        const a = await createKey(store);
        const extra = makeVersion(a.key.id);
        const doomed = makeVersion(a.key.id, { status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + DAY_MS });
        await updateKey(store, a.key, { ...a.key }, { insertVersions: [withMaterial(extra), withMaterial(doomed)] });
        const b = await createKey(store);
        const gone = await createKey(store);
        const deleted = await updateKey(store, gone.key, { ...gone.key, deletedAt: T0 });
        await store.purgeKey(deleted.id);
        const a2 = (await store.getKey(a.key.id))!;
        await updateKey(store, a2, { ...a2 }, { updateVersions: [destroy(doomed)] });

        const expected = [a.primary, extra, b.primary]
          .map((v) => ({ keyId: v.keyId, versionId: v.id, material: material(v.id) }))
          .sort((x, y) => (x.versionId < y.versionId ? -1 : 1));
        for (const pageSize of [1, 2, 100]) assert.deepEqual(await walk(pageSize), expected, `page size ${pageSize}`);
      });

      it('replaces a blob only if it is still the expected one', async () => {
        const { key, primary } = await createKey(store);
        const next = material('rewrapped');
        assert.equal(await store.replaceStoredMaterial(key.id, primary.id, material('not it'), next), false);
        assert.deepEqual(await store.getWrappedMaterial(key.id, primary.id), material(primary.id));
        assert.equal(await store.replaceStoredMaterial(key.id, primary.id, material(primary.id), next), true);
        assert.deepEqual(await store.getWrappedMaterial(key.id, primary.id), next);
        assert.equal(await store.replaceStoredMaterial(key.id, primary.id, material(primary.id), material('again')), false, 'a second swap from the old value loses');
        assert.equal(await store.replaceStoredMaterial('abjnokey', primary.id, next, material('x')), false, 'the key id must match too');
      });

      it('does not bring back the material of a version destroyed meanwhile', async () => {
        const key = makeKey();
        const old = makeVersion(key.id, { status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + DAY_MS });
        await createKey(store, key, { insertVersions: [withMaterial(old)] });
        const current = (await store.getKey(key.id))!;
        await updateKey(store, current, { ...current }, { updateVersions: [destroy(old)] });
        assert.equal(await store.replaceStoredMaterial(key.id, old.id, material(old.id), material('rewrapped')), false);
        assert.equal(await store.getWrappedMaterial(key.id, old.id), undefined);
      });
    });
  });
}
