// Background work, driven by the test clock (DESIGN.md §2 --test-clock): automatic rotation
// (SPEC.md §1.5), destruction at destroyAt (§1.4) and the purge of deleted keys after 72 h
// (§1.6). One server for the whole file: its clock only moves forward, so every test asserts
// only on the keys it created.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  b64,
  createKey,
  decrypt,
  decryptCall,
  DAY_S,
  encrypt,
  fails,
  freshFolder,
  getKey,
  listVersions,
  ok,
  rotate,
  RFC3339_RE,
  sleep,
  TYPE_PREFIX,
  update,
  type KeyList,
  type Operation,
  type OperationList,
} from '../helpers/api.js';
import { expectStartFailure, KmsdProcess, tempDir } from '../helpers/kmsd-process.js';
import { purgedCount } from '../helpers/logs.js';

const HOUR_S = 3_600;

/** Moves the server's clock forward; the call returns after the background work that fell due. */
async function advance(kmsd: KmsdProcess, seconds: number): Promise<number> {
  const res = ok(await kmsd.call<{ now: string }>('POST', '/kmsd/v1/testing/clock:advance', { duration: `${seconds}s` }));
  assert.deepEqual(Object.keys(res), ['now']);
  assert.match(res.now, RFC3339_RE);
  return Date.parse(res.now);
}

describe('background work with --test-clock (--auth none)', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'none', testClock: true });
    assert.equal(kmsd.ready.auth, 'none');
  });
  after(async () => {
    await kmsd?.dispose();
  });

  it('the clock only moves forward and validates its input', async () => {
    const t0 = Date.now();
    const now = await advance(kmsd, 0);
    assert.ok(now >= t0 - 1000);
    const later = await advance(kmsd, 60);
    assert.ok(later - now >= 60_000, 'moved by at least 60 s');
    fails(await kmsd.call('POST', '/kmsd/v1/testing/clock:advance', { duration: '-1s' }), 400, 3, /duration/);
    fails(await kmsd.call('POST', '/kmsd/v1/testing/clock:advance', { duration: '1d' }), 400, 3, /duration/);
    fails(await kmsd.call('POST', '/kmsd/v1/testing/clock:advance', {}), 400, 3, /duration/);
    // Timestamps the API writes follow the moved clock.
    const key = await createKey(kmsd, { folderId: freshFolder() });
    assert.ok(Date.parse(key.createdAt) >= later);
  });

  it('rotates a key automatically once its rotationPeriod has passed, and not before', async () => {
    const folderId = freshFolder();
    const key = await createKey(kmsd, { folderId, rotationPeriod: '86400s' });
    const still = await createKey(kmsd, { folderId }); // no rotationPeriod: never rotates
    const cleared = await createKey(kmsd, { folderId, rotationPeriod: '86400s' });
    await update(kmsd, cleared.id, { updateMask: 'rotationPeriod' }); // cleared: never rotates
    const v1 = key.primaryVersion.id;
    const oldCt = await encrypt(kmsd, key.id, 'before rotation');

    // Less than a period: nothing happens.
    await advance(kmsd, 23 * HOUR_S);
    assert.deepEqual(await getKey(kmsd, key.id), key);

    const t1 = await advance(kmsd, HOUR_S + 1);
    const k1 = await getKey(kmsd, key.id);
    assert.notEqual(k1.primaryVersion.id, v1, 'a new primary version');
    assert.ok(k1.rotatedAt, 'rotatedAt is set');
    assert.ok(Date.parse(k1.rotatedAt) <= t1 && Date.parse(k1.rotatedAt) >= Date.parse(key.createdAt) + DAY_S * 1000);
    assert.equal(k1.primaryVersion.createdAt, k1.rotatedAt);
    assert.equal(k1.primaryVersion.algorithm, 'AES_256');
    assert.equal(k1.rotationPeriod, '86400s');
    const versions = await listVersions(kmsd, key.id);
    assert.equal(versions.length, 2);
    assert.equal(versions.find((v) => v.id === v1)?.status, 'ACTIVE', 'the old version stays ACTIVE');

    // The rotation left an Operation like a manual one, attributed to the scheduler.
    const ops = ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${key.id}/operations?pageSize=1`));
    const op = ops.operations?.[0] as Operation | undefined;
    assert.ok(op);
    assert.equal(op.description, 'rotate key');
    assert.equal(op.done, true);
    assert.deepEqual(op.metadata, { '@type': `${TYPE_PREFIX}RotateSymmetricKeyMetadata`, keyId: key.id, newPrimaryVersionId: k1.primaryVersion.id });
    assert.equal(op.createdBy, 'kmsd-scheduler');

    // Crypto follows at once: new encryptions use the new primary, old ciphertexts still decrypt.
    assert.equal((await encrypt(kmsd, key.id, 'after')).versionId, k1.primaryVersion.id);
    assert.deepEqual(await decrypt(kmsd, key.id, oldCt.ciphertext), { keyId: key.id, versionId: v1, plaintext: b64('before rotation') });

    // A second advance of less than a period does nothing.
    await advance(kmsd, 12 * HOUR_S);
    assert.deepEqual(await getKey(kmsd, key.id), k1);
    assert.equal((await listVersions(kmsd, key.id)).length, 2);

    // The next automatic rotation uses the defaultAlgorithm of that moment; the period counts from rotatedAt.
    await update(kmsd, key.id, { updateMask: 'defaultAlgorithm', defaultAlgorithm: 'AES_128' });
    await advance(kmsd, 12 * HOUR_S);
    const k2 = await getKey(kmsd, key.id);
    assert.notEqual(k2.primaryVersion.id, k1.primaryVersion.id);
    assert.equal(k2.primaryVersion.algorithm, 'AES_128');
    assert.ok(Date.parse(k2.rotatedAt!) >= Date.parse(k1.rotatedAt!) + DAY_S * 1000);
    assert.equal((await listVersions(kmsd, key.id)).length, 3);

    // Keys without a rotation period never rotated.
    assert.deepEqual(await getKey(kmsd, still.id), still);
    const c = await getKey(kmsd, cleared.id);
    assert.equal(c.primaryVersion.id, cleared.primaryVersion.id);
    assert.equal(c.rotatedAt, undefined);
    assert.equal((await listVersions(kmsd, cleared.id)).length, 1);
  });

  it('an INACTIVE key with a rotationPeriod is still rotated by the schedule', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder(), rotationPeriod: '86400s' });
    await update(kmsd, key.id, { updateMask: 'status', status: 'INACTIVE' });
    await advance(kmsd, DAY_S + 1);
    const k = await getKey(kmsd, key.id);
    assert.equal(k.status, 'INACTIVE');
    assert.notEqual(k.primaryVersion.id, key.primaryVersion.id);
  });

  it('destroys a scheduled version at destroyAt; its ciphertexts then fail with FAILED_PRECONDITION', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder() });
    const target = await createKey(kmsd, { folderId: freshFolder() });
    const v1 = key.primaryVersion.id;
    const ct = await encrypt(kmsd, key.id, 'doomed', { aadContext: b64('aad') });
    const v2 = (await rotate(kmsd, key.id)).primaryVersion.id;
    const ct2 = await encrypt(kmsd, key.id, 'survives');
    const scheduled = ok(
      await kmsd.call<Operation<{ destroyAt: string }>>('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1, pendingPeriod: '86400s' }),
    );
    const destroyAt = Date.parse(scheduled.response!.destroyAt);

    // Before destroyAt: still scheduled, unusable but restorable.
    const before = await advance(kmsd, DAY_S - 60);
    assert.ok(before < destroyAt);
    assert.equal((await listVersions(kmsd, key.id)).find((v) => v.id === v1)?.status, 'SCHEDULED_FOR_DESTRUCTION');
    fails(await decryptCall(kmsd, key.id, ct.ciphertext, { aadContext: b64('aad') }), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);

    // Past destroyAt: DESTROYED, destroyAt cleared, material gone for good.
    const past = await advance(kmsd, 61);
    assert.ok(past >= destroyAt);
    const v1After = (await listVersions(kmsd, key.id)).find((v) => v.id === v1);
    assert.deepEqual(v1After, {
      id: v1,
      keyId: key.id,
      status: 'DESTROYED',
      algorithm: 'AES_256',
      createdAt: key.primaryVersion.createdAt,
    });
    // SPEC.md §3.2 allows FAILED_PRECONDITION (or INVALID_ARGUMENT); kmsd answers FAILED_PRECONDITION naming the status.
    fails(await decryptCall(kmsd, key.id, ct.ciphertext, { aadContext: b64('aad') }), 400, 9, /DESTROYED/);
    fails(await decryptCall(kmsd, key.id, ct.ciphertext), 400, 9, /DESTROYED/);
    fails(
      await kmsd.call('POST', `/kms/v1/keys/${target.id}:reEncrypt`, { sourceKeyId: key.id, sourceAadContext: b64('aad'), ciphertext: ct.ciphertext }),
      400,
      9,
      /DESTROYED/,
    );
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x'), versionId: v1 }), 400, 9, /DESTROYED/);
    // Cancel after destroyAt fails; nothing brings the version back.
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: v1 }), 400, 9, /DESTROYED/);
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }), 400, 9, /DESTROYED/);
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: v1 }), 400, 9, /DESTROYED/);
    // The rest of the key is untouched.
    assert.deepEqual(await decrypt(kmsd, key.id, ct2.ciphertext), { keyId: key.id, versionId: v2, plaintext: b64('survives') });
    assert.equal((await getKey(kmsd, key.id)).primaryVersion.id, v2);
  });

  it('a cancelled destruction does not happen', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder() });
    const v1 = key.primaryVersion.id;
    const ct = await encrypt(kmsd, key.id, 'kept');
    await rotate(kmsd, key.id);
    ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1, pendingPeriod: '86400s' }));
    await advance(kmsd, 12 * HOUR_S);
    ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: v1 }));
    await advance(kmsd, DAY_S);
    assert.equal((await listVersions(kmsd, key.id)).find((v) => v.id === v1)?.status, 'ACTIVE');
    assert.equal((await decrypt(kmsd, key.id, ct.ciphertext)).plaintext, b64('kept'));
  });

  it('destroyed versions no longer count toward the 100-version limit', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder() });
    for (let i = 0; i < 99; i++) await rotate(kmsd, key.id);
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 400, 9, /100 versions/);
    ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: key.primaryVersion.id, pendingPeriod: '86400s' }));
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 400, 9, /100 versions/);
    await advance(kmsd, DAY_S + 1);
    await rotate(kmsd, key.id);
    const versions = await listVersions(kmsd, key.id);
    assert.equal(versions.length, 101, 'the destroyed version is still listed');
    assert.equal(versions.filter((v) => v.status === 'DESTROYED').length, 1);
  });

  it('purges a deleted key after 72 hours; before and after it is gone from the API', async () => {
    const folderId = freshFolder();
    const key = await createKey(kmsd, { folderId });
    const ct = await encrypt(kmsd, key.id, 'gone');
    const del = ok(await kmsd.call<Operation>('DELETE', `/kms/v1/keys/${key.id}`));
    const purgedBefore = purgedCount(kmsd.stderr);

    const assertGone = async () => {
      fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}`), 404, 5);
      fails(await decryptCall(kmsd, key.id, ct.ciphertext), 404, 5);
      fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}/versions`), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 404, 5);
      assert.deepEqual(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)), {});
    };
    await assertGone();

    await advance(kmsd, 72 * HOUR_S - 60);
    await sleep(200); // logs are written asynchronously
    assert.equal(purgedCount(kmsd.stderr), purgedBefore, 'not purged before 72 h');
    await assertGone();

    await advance(kmsd, 61);
    for (let i = 0; i < 50 && purgedCount(kmsd.stderr) === purgedBefore; i++) await sleep(50);
    assert.equal(purgedCount(kmsd.stderr), purgedBefore + 1, 'purged once 72 h have passed');
    await assertGone();
    // The delete operation stays readable after the purge.
    assert.deepEqual(ok(await kmsd.call('GET', `/operations/${del.id}`)), del);
  });
});

describe('--test-clock and --auth iam', () => {
  const dirs: string[] = [];
  let forced: KmsdProcess | undefined;
  after(async () => {
    try {
      await forced?.dispose();
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });

  it('--test-clock with --auth iam is refused at start, naming --test-clock', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const viaFlag = await expectStartFailure({ dataDir: join(dir, 'a'), auth: 'iam', testClock: true });
    assert.notEqual(viaFlag.code, 0);
    assert.equal(viaFlag.signal, null);
    assert.match(viaFlag.stderr, /--test-clock/);
    assert.match(viaFlag.stderr, /force/);
    assert.equal(viaFlag.stdout, '', 'no ready line');
    const viaEnv = await expectStartFailure({ dataDir: join(dir, 'b'), auth: 'iam', env: { KMSD_TEST_CLOCK: '1' } });
    assert.notEqual(viaEnv.code, 0);
    assert.match(viaEnv.stderr, /--test-clock/);
  });

  it('--test-clock=force with --auth iam starts; moving the clock then needs the admin token', async () => {
    forced = await KmsdProcess.start({ auth: 'iam', testClock: 'force' });
    assert.equal(forced.ready.auth, 'iam');
    fails(await forced.call('POST', '/kmsd/v1/testing/clock:advance', { duration: '60s' }, { authorization: '' }), 401, 16);
    const sent = Date.now();
    const res = ok(await forced.call<{ now: string }>('POST', '/kmsd/v1/testing/clock:advance', { duration: '60s' }));
    assert.ok(Date.parse(res.now) >= sent + 60_000, `${res.now} is at least 60 s ahead`);
    assert.match(forced.stderr, /test-clock/, 'announced at start');
  });
});
