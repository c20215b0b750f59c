// SymmetricKeyService and OperationService over REST against a real kmsd (SPEC.md §1.3–1.6, §3,
// §4.1, §6): every method, the Operation envelope field by field, every status transition, and
// the errors of each refused transition.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertOperation,
  b64,
  collectPages,
  createKey,
  DAY_S,
  decryptCall,
  encrypt,
  fails,
  freshFolder,
  getKey,
  ID_RE,
  listVersions,
  ok,
  rotate,
  RFC3339_RE,
  sleep,
  TYPE_PREFIX,
  unpack,
  update,
  type KeyList,
  type KeyVersion,
  type Operation,
  type OperationList,
  type SymmetricKey,
  type VersionList,
} from '../helpers/api.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';

const ADMIN_ID = /^aje[0-9a-v]{17}$/;

describe('SymmetricKeyService over REST (--auth iam)', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
  });
  after(async () => {
    await kmsd?.dispose();
  });

  describe('Create and Get', () => {
    it('returns a done Operation shaped like SPEC.md §6 and the key it describes', async () => {
      const folderId = freshFolder();
      const before = Date.now();
      const res = await kmsd.call<Operation>('POST', '/kms/v1/keys', {
        folderId,
        name: 'app-key',
        description: 'the application key',
        labels: { env: 'prod', team: 'a-b_c' },
        defaultAlgorithm: 'AES_256',
        rotationPeriod: '2592000s',
        deletionProtection: false,
      });
      const op = ok(res);
      assertOperation(op, { description: 'create symmetric key', metadataType: 'CreateSymmetricKeyMetadata', responseType: 'SymmetricKey', createdBy: ADMIN_ID });
      assert.ok(Math.abs(Date.parse(op.createdAt) - before) < 60_000, 'createdAt is now');

      const key = op.response;
      assert.deepEqual(op.metadata, {
        '@type': `${TYPE_PREFIX}CreateSymmetricKeyMetadata`,
        keyId: key.id,
        primaryVersionId: key.primaryVersion.id,
      });
      assert.match(key.id, ID_RE);
      assert.match(key.primaryVersion.id, ID_RE);
      assert.notEqual(key.id, key.primaryVersion.id);
      assert.notEqual(op.id, key.id);
      assert.match(key.createdAt, RFC3339_RE);
      // Defaults are omitted (deletionProtection false, no rotatedAt at creation: see SPEC.md §12).
      assert.deepEqual(key, {
        '@type': `${TYPE_PREFIX}SymmetricKey`,
        id: key.id,
        folderId,
        createdAt: key.createdAt,
        name: 'app-key',
        description: 'the application key',
        labels: { env: 'prod', team: 'a-b_c' },
        status: 'ACTIVE',
        primaryVersion: {
          id: key.primaryVersion.id,
          keyId: key.id,
          status: 'ACTIVE',
          algorithm: 'AES_256',
          createdAt: key.createdAt,
          primary: true,
        },
        defaultAlgorithm: 'AES_256',
        rotationPeriod: '2592000s',
      });

      const got = await kmsd.call<SymmetricKey>('GET', `/kms/v1/keys/${key.id}`);
      assert.deepEqual(ok(got), unpack(key));
      assert.ok((got.headers.get('content-type') ?? '').startsWith('application/json'));
    });

    it('accepts a minimal body, duplicate names and deletionProtection', async () => {
      const folderId = freshFolder();
      const a = await createKey(kmsd, { folderId, name: 'same', defaultAlgorithm: 'AES_128', deletionProtection: true });
      const b = await createKey(kmsd, { folderId, name: 'same', defaultAlgorithm: 'AES_192' });
      assert.notEqual(a.id, b.id);
      assert.equal(a.deletionProtection, true);
      assert.equal(a.primaryVersion.algorithm, 'AES_128');
      assert.equal(b.primaryVersion.algorithm, 'AES_192');
      assert.equal(b.rotationPeriod, undefined);
      assert.equal(b.labels, undefined);
    });

    it('rejects invalid Create requests with INVALID_ARGUMENT', async () => {
      const folderId = freshFolder();
      const bad: [string, Record<string, unknown>, RegExp][] = [
        ['no folderId', { defaultAlgorithm: 'AES_256' }, /folder_id/],
        ['no defaultAlgorithm', { folderId }, /default_algorithm/],
        ['unknown algorithm', { folderId, defaultAlgorithm: 'AES_512' }, /default_algorithm|defaultAlgorithm/],
        ['label key pattern', { folderId, defaultAlgorithm: 'AES_256', labels: { Env: 'x' } }, /labels/],
        ['label value pattern', { folderId, defaultAlgorithm: 'AES_256', labels: { env: 'X Y' } }, /labels/],
        ['name too long', { folderId, defaultAlgorithm: 'AES_256', name: 'n'.repeat(101) }, /name/],
        ['description too long', { folderId, defaultAlgorithm: 'AES_256', description: 'd'.repeat(1025) }, /description/],
        ['folderId too long', { folderId: 'f'.repeat(51), defaultAlgorithm: 'AES_256' }, /folder_id/],
        ['unknown field', { folderId, defaultAlgorithm: 'AES_256', color: 'red' }, /color/],
        ['Go-style duration', { folderId, defaultAlgorithm: 'AES_256', rotationPeriod: '24h' }, /rotation_period|rotationPeriod/],
        ['rotation period below a day', { folderId, defaultAlgorithm: 'AES_256', rotationPeriod: '3600s' }, /rotation_period/],
      ];
      for (const [what, body, message] of bad) {
        const res = await kmsd.call('POST', '/kms/v1/keys', body);
        try {
          fails(res, 400, 3, message);
        } catch (e) {
          throw new Error(`case "${what}": ${(e as Error).message}`, { cause: e });
        }
      }
      const list = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`));
      assert.equal(list.keys, undefined, 'nothing was created');
    });

    it('Get: unknown id → 404 NOT_FOUND; id longer than 50 → 400', async () => {
      fails(await kmsd.call('GET', '/kms/v1/keys/abj00000000000000000'), 404, 5, /abj00000000000000000/);
      fails(await kmsd.call('GET', `/kms/v1/keys/${'a'.repeat(51)}`), 400, 3, /key_id/);
    });
  });

  describe('List', () => {
    it('filters by folder and pages with pageSize=2 and nextPageToken', async () => {
      const folderA = freshFolder();
      const folderB = freshFolder();
      const created: string[] = [];
      for (let i = 0; i < 5; i++) created.push((await createKey(kmsd, { folderId: folderA, name: `k${i}` })).id);
      const other = await createKey(kmsd, { folderId: folderB });

      const { items, pages } = await collectPages(async (pageToken) => {
        const q = new URLSearchParams({ folderId: folderA, pageSize: '2', ...(pageToken ? { pageToken } : {}) });
        const page = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?${q}`));
        return { items: page.keys ?? [], nextPageToken: page.nextPageToken ?? '' };
      }, 2);
      assert.equal(pages, 3);
      const ids = items.map((k) => k.id);
      assert.equal(new Set(ids).size, 5, 'no key is repeated across pages');
      assert.deepEqual([...ids].sort(), [...created].sort());
      for (const k of items) {
        assert.equal(k.folderId, folderA);
        assert.deepEqual(k, await getKey(kmsd, k.id), 'List shows the same key as Get');
      }

      // The default page size (100) returns all five; snake_case query names work too.
      const all = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folder_id=${folderA}`));
      assert.equal(all.keys?.length, 5);
      assert.equal(all.nextPageToken ?? '', '');
      const snake = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folder_id=${folderA}&page_size=4`));
      assert.equal(snake.keys?.length, 4);
      assert.ok(snake.nextPageToken);

      const b = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderB}`));
      assert.deepEqual(
        b.keys?.map((k) => k.id),
        [other.id],
      );
      const empty = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${freshFolder()}`));
      assert.deepEqual(empty, {});
    });

    it('rejects a missing folderId, a bad page size and a forged page token', async () => {
      fails(await kmsd.call('GET', '/kms/v1/keys'), 400, 3, /folder_id/);
      fails(await kmsd.call('GET', `/kms/v1/keys?folderId=${freshFolder()}&pageSize=-1`), 400, 3, /page_size/);
      fails(await kmsd.call('GET', `/kms/v1/keys?folderId=${freshFolder()}&pageSize=1001`), 400, 3, /page_size/);
      fails(await kmsd.call('GET', `/kms/v1/keys?folderId=${freshFolder()}&pageToken=not-a-token`), 400, 3, /page_token/);
    });
  });

  describe('ListVersions', () => {
    it('lists every version, exactly one primary, paginated', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      await rotate(kmsd, key.id);
      const last = await rotate(kmsd, key.id);
      const { items, pages } = await collectPages(async (pageToken) => {
        const page = ok(await kmsd.call<VersionList>('GET', `/kms/v1/keys/${key.id}/versions?pageSize=2${pageToken ? `&pageToken=${pageToken}` : ''}`));
        return { items: page.keyVersions ?? [], nextPageToken: page.nextPageToken ?? '' };
      }, 2);
      assert.equal(pages, 2);
      assert.equal(items.length, 3);
      assert.equal(new Set(items.map((v) => v.id)).size, 3);
      assert.ok(items.some((v) => v.id === key.primaryVersion.id));
      const primaries = items.filter((v) => v.primary === true);
      assert.deepEqual(
        primaries.map((v) => v.id),
        [last.primaryVersion.id],
      );
      for (const v of items) {
        assert.equal(v.keyId, key.id);
        assert.equal(v.status, 'ACTIVE');
        assert.equal(v.algorithm, 'AES_256');
        assert.match(v.createdAt, RFC3339_RE);
        assert.equal(v.destroyAt, undefined);
      }
      fails(await kmsd.call('GET', '/kms/v1/keys/abj00000000000000000/versions'), 404, 5);
    });
  });

  describe('Update', () => {
    it('returns an "update key" Operation with the key after the change', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder(), name: 'before' });
      const op = ok(await kmsd.call<Operation>('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'name', name: 'after' }));
      assertOperation(op, { description: 'update key', metadataType: 'UpdateSymmetricKeyMetadata', responseType: 'SymmetricKey', createdBy: ADMIN_ID });
      assert.deepEqual(op.metadata, { '@type': `${TYPE_PREFIX}UpdateSymmetricKeyMetadata`, keyId: key.id });
      assert.deepEqual(unpack(op.response), { ...key, name: 'after' });
      assert.deepEqual(await getKey(kmsd, key.id), { ...key, name: 'after' });
    });

    it('changes only the fields in the mask; a listed but absent field is reset', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder(), name: 'n', description: 'd', labels: { a: '1' } });
      // description is in the body but not in the mask: unchanged.
      let k = await update(kmsd, key.id, { updateMask: 'name', name: 'n2', description: 'ignored' });
      assert.equal(k.name, 'n2');
      assert.equal(k.description, 'd');
      k = await update(kmsd, key.id, { updateMask: 'description', description: 'd2' });
      assert.deepEqual(k, { ...key, name: 'n2', description: 'd2' });
      // name in the mask but absent: reset to "" (omitted in JSON).
      k = await update(kmsd, key.id, { updateMask: 'name' });
      assert.equal(k.name, undefined);
      assert.equal(k.description, 'd2');
    });

    it('labels in the mask replace the whole map; absent labels clear it', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder(), labels: { a: '1', b: '2' } });
      let k = await update(kmsd, key.id, { updateMask: 'labels', labels: { c: '3' } });
      assert.deepEqual(k.labels, { c: '3' });
      assert.deepEqual((await getKey(kmsd, key.id)).labels, { c: '3' });
      k = await update(kmsd, key.id, { updateMask: 'labels' });
      assert.equal(k.labels, undefined);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'labels', labels: { '9x': 'v' } }), 400, 3, /labels/);
    });

    it('status ACTIVE ↔ INACTIVE; CREATING and UNSPECIFIED are refused', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      assert.equal((await update(kmsd, key.id, { updateMask: 'status', status: 'INACTIVE' })).status, 'INACTIVE');
      assert.equal((await getKey(kmsd, key.id)).status, 'INACTIVE');
      assert.equal((await update(kmsd, key.id, { updateMask: 'status', status: 'ACTIVE' })).status, 'ACTIVE');
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'status', status: 'CREATING' }), 400, 3, /status/);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'status' }), 400, 3, /status/);
      assert.equal((await getKey(kmsd, key.id)).status, 'ACTIVE');
    });

    it('defaultAlgorithm affects only the next rotation', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_256' });
      const k = await update(kmsd, key.id, { updateMask: 'defaultAlgorithm', defaultAlgorithm: 'AES_128' });
      assert.equal(k.defaultAlgorithm, 'AES_128');
      assert.equal(k.primaryVersion.algorithm, 'AES_256', 'the existing primary version keeps its algorithm');
      assert.deepEqual(await listVersions(kmsd, key.id), [{ ...key.primaryVersion }]);
      const rotated = await rotate(kmsd, key.id);
      assert.equal(rotated.primaryVersion.algorithm, 'AES_128');
      const versions = await listVersions(kmsd, key.id);
      assert.deepEqual(versions.map((v) => [v.id, v.algorithm]).sort(), [
        [key.primaryVersion.id, 'AES_256'],
        [rotated.primaryVersion.id, 'AES_128'],
      ].sort());
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'defaultAlgorithm' }), 400, 3, /default_algorithm/);
    });

    it('rotationPeriod can be set and cleared (in the mask but absent)', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      assert.equal(key.rotationPeriod, undefined);
      let k = await update(kmsd, key.id, { updateMask: 'rotationPeriod', rotationPeriod: '86400s' });
      assert.equal(k.rotationPeriod, '86400s');
      assert.equal((await getKey(kmsd, key.id)).rotationPeriod, '86400s');
      k = await update(kmsd, key.id, { updateMask: 'status,rotationPeriod', status: 'ACTIVE' }); // SPEC.md §6's example
      assert.equal(k.rotationPeriod, undefined);
      assert.equal((await getKey(kmsd, key.id)).rotationPeriod, undefined);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'rotationPeriod', rotationPeriod: '60s' }), 400, 3, /rotation_period/);
    });

    it('deletionProtection blocks Delete (FAILED_PRECONDITION) until cleared', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      assert.equal((await update(kmsd, key.id, { updateMask: 'deletionProtection', deletionProtection: true })).deletionProtection, true);
      fails(await kmsd.call('DELETE', `/kms/v1/keys/${key.id}`), 400, 9, /deletion protection/);
      assert.equal((await getKey(kmsd, key.id)).id, key.id, 'the key survived');
      // listed and absent → false
      assert.equal((await update(kmsd, key.id, { updateMask: 'deletionProtection' })).deletionProtection, undefined);
      ok(await kmsd.call('DELETE', `/kms/v1/keys/${key.id}`));
    });

    it('accepts the mask in camelCase and snake_case, several paths at once', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const camel = await update(kmsd, key.id, {
        updateMask: 'defaultAlgorithm,deletionProtection,rotationPeriod',
        defaultAlgorithm: 'AES_192',
        deletionProtection: true,
        rotationPeriod: '172800s',
      });
      assert.equal(camel.defaultAlgorithm, 'AES_192');
      assert.equal(camel.deletionProtection, true);
      assert.equal(camel.rotationPeriod, '172800s');
      const snake = await update(kmsd, key.id, {
        updateMask: 'default_algorithm, deletion_protection,rotation_period,name',
        defaultAlgorithm: 'AES_128',
        name: 'snake',
      });
      assert.equal(snake.defaultAlgorithm, 'AES_128');
      assert.equal(snake.deletionProtection, undefined);
      assert.equal(snake.rotationPeriod, undefined);
      assert.equal(snake.name, 'snake');
      // snake_case body field names are accepted too (SPEC.md §2.4).
      const snakeBody = await update(kmsd, key.id, { update_mask: 'description', description: 'via snake body' });
      assert.equal(snakeBody.description, 'via snake body');
    });

    it('rejects a missing mask, unknown or immutable paths, and unknown keys', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { name: 'x' }), 400, 3, /update_mask/);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: '', name: 'x' }), 400, 3, /update_mask/);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'folderId', folderId: 'b1gother' }), 400, 3, /update_mask|folder/);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'color' }), 400, 3, /update_mask/);
      fails(await kmsd.call('PATCH', '/kms/v1/keys/abj00000000000000000', { updateMask: 'name', name: 'x' }), 404, 5);
      assert.deepEqual(await getKey(kmsd, key.id), key);
    });
  });

  describe('Delete', () => {
    it('returns a "delete key" Operation with the key as it was; the key disappears everywhere', async () => {
      const folderId = freshFolder();
      const key = await createKey(kmsd, { folderId, name: 'doomed' });
      const keep = await createKey(kmsd, { folderId });
      const ct = await encrypt(kmsd, key.id, 'secret');
      const op = ok(await kmsd.call<Operation>('DELETE', `/kms/v1/keys/${key.id}`));
      assertOperation(op, { description: 'delete key', metadataType: 'DeleteSymmetricKeyMetadata', responseType: 'SymmetricKey', createdBy: ADMIN_ID });
      assert.deepEqual(op.metadata, { '@type': `${TYPE_PREFIX}DeleteSymmetricKeyMetadata`, keyId: key.id });
      assert.deepEqual(unpack(op.response), key);

      fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}`), 404, 5);
      const list = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`));
      assert.deepEqual(
        list.keys?.map((k) => k.id),
        [keep.id],
      );
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }), 404, 5);
      fails(await decryptCall(kmsd, key.id, ct.ciphertext), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:generateDataKey`, {}), 404, 5);
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'name', name: 'x' }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 404, 5);
      fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}/versions`), 404, 5);
      fails(await kmsd.call('DELETE', `/kms/v1/keys/${key.id}`), 404, 5);
      // The operation itself stays readable.
      assert.deepEqual(ok(await kmsd.call('GET', `/operations/${op.id}`)), op);
    });

    it('unknown key → 404', async () => {
      fails(await kmsd.call('DELETE', '/kms/v1/keys/abj00000000000000000'), 404, 5);
    });
  });

  describe('SetPrimaryVersion', () => {
    it('makes an ACTIVE version primary; the old primary stays ACTIVE', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const v1 = key.primaryVersion.id;
      const v2 = (await rotate(kmsd, key.id)).primaryVersion.id;
      const op = ok(await kmsd.call<Operation>('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: v1 }));
      assertOperation(op, {
        description: 'set primary version',
        metadataType: 'SetPrimarySymmetricKeyVersionMetadata',
        responseType: 'SymmetricKey',
        createdBy: ADMIN_ID,
      });
      assert.deepEqual(op.metadata, { '@type': `${TYPE_PREFIX}SetPrimarySymmetricKeyVersionMetadata`, keyId: key.id, versionId: v1 });
      assert.equal(op.response.primaryVersion.id, v1);
      assert.equal(op.response.primaryVersion.primary, true);
      const got = await getKey(kmsd, key.id);
      assert.deepEqual(unpack(op.response), got);
      const versions = await listVersions(kmsd, key.id);
      assert.deepEqual(
        versions.filter((v) => v.primary).map((v) => v.id),
        [v1],
      );
      assert.equal(versions.find((v) => v.id === v2)?.status, 'ACTIVE');
      // Encrypt without versionId now uses v1.
      assert.equal((await encrypt(kmsd, key.id, 'x')).versionId, v1);
      // Setting the current primary again is harmless.
      assert.equal((unpack(ok(await kmsd.call<Operation>('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: v1 })).response!) as SymmetricKey).primaryVersion.id, v1);
    });

    it('refuses unknown versions, versions of another key, non-ACTIVE versions and a missing versionId', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const other = await createKey(kmsd, { folderId: freshFolder() });
      const v1 = key.primaryVersion.id;
      await rotate(kmsd, key.id);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: 'abj00000000000000000' }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: other.primaryVersion.id }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, {}), 400, 3, /version_id/);
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }));
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: v1 }), 400, 9, /ACTIVE/);
      fails(await kmsd.call('POST', '/kms/v1/keys/abj00000000000000000:setPrimaryVersion', { versionId: v1 }), 404, 5);
    });
  });

  describe('ScheduleVersionDestruction and CancelVersionDestruction', () => {
    it('schedules with the default pending period of 7 days', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const v1 = key.primaryVersion.id;
      await rotate(kmsd, key.id);
      const op = ok(await kmsd.call<Operation<KeyVersion>>('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }));
      assertOperation(op, {
        description: 'schedule version destruction',
        metadataType: 'ScheduleSymmetricKeyVersionDestructionMetadata',
        responseType: 'SymmetricKeyVersion',
        createdBy: ADMIN_ID,
      });
      const destroyAt = op.response.destroyAt;
      assert.ok(destroyAt);
      assert.match(destroyAt, RFC3339_RE);
      assert.equal(Date.parse(destroyAt) - Date.parse(op.createdAt), 7 * DAY_S * 1000, 'destroyAt = now + 7 days');
      assert.deepEqual(op.metadata, {
        '@type': `${TYPE_PREFIX}ScheduleSymmetricKeyVersionDestructionMetadata`,
        keyId: key.id,
        versionId: v1,
        destroyAt,
      });
      assert.deepEqual(unpack(op.response), {
        id: v1,
        keyId: key.id,
        status: 'SCHEDULED_FOR_DESTRUCTION',
        algorithm: 'AES_256',
        createdAt: key.primaryVersion.createdAt,
        destroyAt,
      });
      const listed = (await listVersions(kmsd, key.id)).find((v) => v.id === v1);
      assert.deepEqual(listed, unpack(op.response));
    });

    it('accepts pendingPeriod from 1 day to 365 days, refuses outside (INVALID_ARGUMENT)', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const [a, b] = [key.primaryVersion.id, (await rotate(kmsd, key.id)).primaryVersion.id];
      await rotate(kmsd, key.id);
      for (const pendingPeriod of ['86399s', '86399.999s', '31536001s', '0s', '-86400s', '1d']) {
        fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: a, pendingPeriod }), 400, 3, /pending_period|pendingPeriod/);
      }
      assert.ok((await listVersions(kmsd, key.id)).every((v) => v.status === 'ACTIVE'), 'nothing was scheduled');
      const min = ok(await kmsd.call<Operation<KeyVersion>>('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: a, pendingPeriod: '86400s' }));
      assert.equal(Date.parse(min.response!.destroyAt!) - Date.parse(min.createdAt), DAY_S * 1000);
      const max = ok(
        await kmsd.call<Operation<KeyVersion>>('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { version_id: b, pending_period: '31536000s' }),
      );
      assert.equal(Date.parse(max.response!.destroyAt!) - Date.parse(max.createdAt), 365 * DAY_S * 1000);
    });

    it('refuses the primary version, a scheduled version, unknown and foreign versions', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const other = await createKey(kmsd, { folderId: freshFolder() });
      const v1 = key.primaryVersion.id;
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }), 400, 9, /primary/);
      const v2 = (await rotate(kmsd, key.id)).primaryVersion.id;
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v2 }), 400, 9, /primary/);
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }));
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: 'abj00000000000000000' }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: other.primaryVersion.id }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, {}), 400, 3, /version_id/);
    });

    it('cancels a scheduled destruction; cancel on an ACTIVE version → FAILED_PRECONDITION', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const other = await createKey(kmsd, { folderId: freshFolder() });
      const v1 = key.primaryVersion.id;
      await rotate(kmsd, key.id);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: v1 }), 400, 9, /ACTIVE/);
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }));
      const op = ok(await kmsd.call<Operation<KeyVersion>>('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: v1 }));
      assertOperation(op, {
        description: 'cancel version destruction',
        metadataType: 'CancelSymmetricKeyVersionDestructionMetadata',
        responseType: 'SymmetricKeyVersion',
        createdBy: ADMIN_ID,
      });
      assert.deepEqual(op.metadata, { '@type': `${TYPE_PREFIX}CancelSymmetricKeyVersionDestructionMetadata`, keyId: key.id, versionId: v1 });
      assert.deepEqual(unpack(op.response), { id: v1, keyId: key.id, status: 'ACTIVE', algorithm: 'AES_256', createdAt: key.primaryVersion.createdAt });
      assert.deepEqual(
        (await listVersions(kmsd, key.id)).find((v) => v.id === v1),
        unpack(op.response),
      );
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: v1 }), 400, 9);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: other.primaryVersion.id }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: 'abj00000000000000000' }), 404, 5);
      // The restored version can become primary again.
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: v1 }));
    });
  });

  describe('Rotate', () => {
    it('creates a new primary version with the default algorithm and sets rotatedAt', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_192' });
      assert.equal(key.rotatedAt, undefined);
      const op = ok(await kmsd.call<Operation>('POST', `/kms/v1/keys/${key.id}:rotate`));
      assertOperation(op, { description: 'rotate key', metadataType: 'RotateSymmetricKeyMetadata', responseType: 'SymmetricKey', createdBy: ADMIN_ID });
      const k = op.response;
      assert.deepEqual(op.metadata, { '@type': `${TYPE_PREFIX}RotateSymmetricKeyMetadata`, keyId: key.id, newPrimaryVersionId: k.primaryVersion.id });
      assert.notEqual(k.primaryVersion.id, key.primaryVersion.id);
      assert.match(k.primaryVersion.id, ID_RE);
      assert.equal(k.primaryVersion.algorithm, 'AES_192');
      assert.equal(k.primaryVersion.primary, true);
      assert.ok(k.rotatedAt);
      assert.match(k.rotatedAt, RFC3339_RE);
      assert.equal(k.rotatedAt, k.primaryVersion.createdAt);
      assert.deepEqual(unpack(k), await getKey(kmsd, key.id));
      const versions = await listVersions(kmsd, key.id);
      assert.equal(versions.length, 2);
      assert.equal(versions.find((v) => v.id === key.primaryVersion.id)?.status, 'ACTIVE', 'the old version stays ACTIVE');
      fails(await kmsd.call('POST', '/kms/v1/keys/abj00000000000000000:rotate'), 404, 5);
    });
  });

  describe('ListOperations and OperationService', () => {
    it('lists the operations of one key, newest first, paginated; Get and Cancel return the same done operation', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const noise = await createKey(kmsd, { folderId: freshFolder() });
      await rotate(kmsd, noise.id);
      const ops: Operation<unknown>[] = [];
      const createOp = ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${key.id}/operations`)).operations![0]!;
      ops.push(createOp);
      // Operations in the same millisecond have no defined order, so space them out.
      const steps: [string, string, unknown?][] = [
        ['PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'name', name: 'x' }],
        ['POST', `/kms/v1/keys/${key.id}:rotate`],
        ['POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: key.primaryVersion.id }],
        ['POST', `/kms/v1/keys/${key.id}:rotate`],
        ['POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: key.primaryVersion.id }],
        ['POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: key.primaryVersion.id }],
      ];
      for (const [method, path, body] of steps) {
        await sleep(3);
        ops.push(ok(await kmsd.call<Operation<unknown>>(method, path, body)));
      }
      assert.equal(createOp.description, 'create symmetric key');

      const { items, pages } = await collectPages(async (pageToken) => {
        const page = ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${key.id}/operations?pageSize=2${pageToken ? `&pageToken=${pageToken}` : ''}`));
        return { items: page.operations ?? [], nextPageToken: page.nextPageToken ?? '' };
      }, 2);
      assert.equal(pages, 4);
      assert.deepEqual(
        items.map((o) => o.id),
        [...ops].reverse().map((o) => o.id),
        'newest first',
      );
      assert.deepEqual(items, [...ops].reverse(), 'ListOperations returns the operations as they were returned');
      for (let i = 1; i < items.length; i++) assert.ok(Date.parse(items[i - 1]!.createdAt) >= Date.parse(items[i]!.createdAt));
      assert.ok(items.every((o) => (o.metadata as { keyId: string }).keyId === key.id), 'only this key');

      for (const op of ops) {
        assert.deepEqual(ok(await kmsd.call('GET', `/operations/${op.id}`)), op);
        assert.deepEqual(ok(await kmsd.call('GET', `/operations/${op.id}:cancel`)), op);
        assert.deepEqual(ok(await kmsd.call('POST', `/operations/${op.id}:cancel`)), op);
        assert.deepEqual(ok(await kmsd.call('POST', `/operations/${op.id}%3Acancel`)), op);
      }
      fails(await kmsd.call('GET', '/operations/abj00000000000000000'), 404, 5);
      fails(await kmsd.call('GET', '/operations/abj00000000000000000:cancel'), 404, 5);
      fails(await kmsd.call('POST', '/operations/abj00000000000000000:cancel'), 404, 5);
      fails(await kmsd.call('GET', '/kms/v1/keys/abj00000000000000000/operations'), 404, 5);
    });
  });

  describe('Idempotency-Key', () => {
    it('the same key twice on Create returns the same operation and creates one key', async () => {
      const folderId = freshFolder();
      const headers = { 'idempotency-key': `create-${folderId}` };
      const body = { folderId, name: 'once', defaultAlgorithm: 'AES_256' };
      const first = ok(await kmsd.call<Operation>('POST', '/kms/v1/keys', body, headers));
      const second = ok(await kmsd.call<Operation>('POST', '/kms/v1/keys', body, headers));
      assert.deepEqual(second, first);
      const list = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`));
      assert.equal(list.keys?.length, 1);
      // Another Idempotency-Key is another request.
      const third = ok(await kmsd.call<Operation>('POST', '/kms/v1/keys', body, { 'idempotency-key': `other-${folderId}` }));
      assert.notEqual(third.id, first.id);
      assert.equal(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)).keys?.length, 2);
    });

    it('the same key twice on Rotate rotates once', async () => {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const headers = { 'idempotency-key': `rotate-${key.id}` };
      const first = ok(await kmsd.call<Operation>('POST', `/kms/v1/keys/${key.id}:rotate`, undefined, headers));
      const second = ok(await kmsd.call<Operation>('POST', `/kms/v1/keys/${key.id}:rotate`, undefined, headers));
      assert.deepEqual(second, first);
      assert.equal((await listVersions(kmsd, key.id)).length, 2);
    });

    it('concurrent retries with one key still create one key', async () => {
      const folderId = freshFolder();
      const headers = { 'idempotency-key': `race-${folderId}` };
      const results = await Promise.all(
        Array.from({ length: 8 }, () => kmsd.call<Operation>('POST', '/kms/v1/keys', { folderId, defaultAlgorithm: 'AES_256' }, headers)),
      );
      const ids = new Set(results.map((r) => ok(r).id));
      assert.equal(ids.size, 1);
      assert.equal(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)).keys?.length, 1);
    });

    it('a malformed Idempotency-Key is refused', async () => {
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: freshFolder(), defaultAlgorithm: 'AES_256' }, { 'idempotency-key': 'x'.repeat(65) }), 400, 3);
    });
  });

  describe('status transitions of the key (SPEC.md §1.3)', () => {
    it('an INACTIVE key refuses all crypto with FAILED_PRECONDITION but stays manageable', async () => {
      const folderId = freshFolder();
      const key = await createKey(kmsd, { folderId });
      const peer = await createKey(kmsd, { folderId });
      const ct = await encrypt(kmsd, key.id, 'before');
      const peerCt = await encrypt(kmsd, peer.id, 'peer');
      await update(kmsd, key.id, { updateMask: 'status', status: 'INACTIVE' });

      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }), 400, 9, /INACTIVE/);
      fails(await decryptCall(kmsd, key.id, ct.ciphertext), 400, 9, /INACTIVE/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { dataKeySpec: 'AES_256' }), 400, 9, /INACTIVE/);
      // ReEncrypt: INACTIVE as the target and as the source.
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:reEncrypt`, { sourceKeyId: peer.id, ciphertext: peerCt.ciphertext }), 400, 9, /INACTIVE/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${peer.id}:reEncrypt`, { sourceKeyId: key.id, ciphertext: ct.ciphertext }), 400, 9, /INACTIVE/);

      // Manageable: Get, List, Update, ListVersions, Rotate, ListOperations.
      assert.equal((await getKey(kmsd, key.id)).status, 'INACTIVE');
      assert.ok(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)).keys?.some((k) => k.id === key.id));
      assert.equal((await update(kmsd, key.id, { updateMask: 'name', name: 'still manageable' })).status, 'INACTIVE');
      const rotated = await rotate(kmsd, key.id);
      assert.equal(rotated.status, 'INACTIVE');
      ok(await kmsd.call('GET', `/kms/v1/keys/${key.id}/operations`));

      await update(kmsd, key.id, { updateMask: 'status', status: 'ACTIVE' });
      assert.equal(ok(await decryptCall(kmsd, key.id, ct.ciphertext)).plaintext, b64('before'));
      assert.equal((await encrypt(kmsd, key.id, 'after')).versionId, rotated.primaryVersion.id);
    });
  });
});

describe('the 100-version limit (--auth none)', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'none' });
  });
  after(async () => {
    await kmsd?.dispose();
  });

  it('allows 100 live versions; the next Rotate fails with FAILED_PRECONDITION and changes nothing', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder() });
    let last = key;
    for (let i = 0; i < 99; i++) last = await rotate(kmsd, key.id);
    const versions = await listVersions(kmsd, key.id);
    assert.equal(versions.length, 100);
    assert.equal(new Set(versions.map((v) => v.id)).size, 100);

    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 400, 9, /100 versions/);
    assert.equal((await getKey(kmsd, key.id)).primaryVersion.id, last.primaryVersion.id);
    assert.equal((await listVersions(kmsd, key.id)).length, 100);

    // A version scheduled for destruction still holds material and still counts.
    ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: key.primaryVersion.id }));
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 400, 9, /100 versions/);
    // The key is otherwise fully usable.
    const ct = await encrypt(kmsd, key.id, 'still works');
    assert.equal(ct.versionId, last.primaryVersion.id);
    // With --auth none operations are attributed to the dev-mode administrator.
    const ops = ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${key.id}/operations?pageSize=1`));
    assert.equal(ops.operations?.[0]?.createdBy, 'kmsd-dev-admin');
  });
});
