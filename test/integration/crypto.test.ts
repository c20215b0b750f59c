// SymmetricCryptoService over REST against a real kmsd (SPEC.md §4.2, §8): round trips per
// algorithm, the one indistinguishable error for every bad ciphertext, version selection,
// data keys, ReEncrypt, and the size limits.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  b64,
  createKey,
  decrypt,
  decryptCall,
  encrypt,
  fails,
  freshFolder,
  getKey,
  listVersions,
  ok,
  rotate,
  unb64,
  update,
  type Algorithm,
  type DataKeyResponse,
  type EncryptResponse,
  type ReEncryptResponse,
  type SymmetricKey,
} from '../helpers/api.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';

const MAX_PLAINTEXT = 32_768;
const MAX_AAD = 8_192;

describe('SymmetricCryptoService over REST (--auth iam)', () => {
  let kmsd: KmsdProcess;
  let folderId: string;
  const keys = new Map<Algorithm, SymmetricKey>();

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    folderId = freshFolder();
    for (const alg of ['AES_128', 'AES_192', 'AES_256'] as const) keys.set(alg, await createKey(kmsd, { folderId, defaultAlgorithm: alg }));
  });
  after(async () => {
    await kmsd?.dispose();
  });

  const keyOf = (alg: Algorithm): SymmetricKey => keys.get(alg)!;

  describe('Encrypt / Decrypt', () => {
    for (const alg of ['AES_128', 'AES_192', 'AES_256'] as const) {
      it(`round-trips with ${alg}, with and without aadContext`, async () => {
        const key = keyOf(alg);
        assert.equal(key.primaryVersion.algorithm, alg);
        for (const aad of [undefined, b64('user:42'), b64(randomBytes(MAX_AAD))]) {
          for (const plaintext of [Buffer.from('secret'), Buffer.of(0), randomBytes(1000)]) {
            const extra = aad === undefined ? {} : { aadContext: aad };
            const enc = await encrypt(kmsd, key.id, plaintext, extra);
            assert.deepEqual(Object.keys(enc).sort(), ['ciphertext', 'keyId', 'versionId']);
            assert.equal(enc.keyId, key.id);
            assert.equal(enc.versionId, key.primaryVersion.id);
            if (plaintext.length >= 6) assert.ok(!unb64(enc.ciphertext).includes(plaintext), 'the plaintext is not in the ciphertext');
            const dec = await decrypt(kmsd, key.id, enc.ciphertext, extra);
            assert.deepEqual(dec, { keyId: key.id, versionId: key.primaryVersion.id, plaintext: b64(plaintext) });
          }
        }
      });
    }

    it('never produces the same ciphertext twice (fresh nonce per call)', async () => {
      const key = keyOf('AES_256');
      const a = await encrypt(kmsd, key.id, 'same');
      const b = await encrypt(kmsd, key.id, 'same');
      assert.notEqual(a.ciphertext, b.ciphertext);
    });

    it('accepts URL-safe and unpadded base64 input (SPEC.md §2.4) and answers in standard base64', async () => {
      const key = keyOf('AES_256');
      const plaintext = Buffer.from([0xfb, 0xff, 0xbf, 0x01]); // "+/+/AQ==" in standard base64
      const enc = await encrypt(kmsd, key.id, plaintext, { plaintext: plaintext.toString('base64url') });
      const dec = await decrypt(kmsd, key.id, unb64(enc.ciphertext).toString('base64url'));
      assert.equal(dec.plaintext, plaintext.toString('base64'));
      assert.match(enc.ciphertext, /^[A-Za-z0-9+/]+={0,2}$/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: '!!not base64!!' }), 400, 3, /plaintext/);
      fails(await decryptCall(kmsd, key.id, '!!not base64!!'), 400, 3, /ciphertext/);
    });

    it('every bad ciphertext fails with the same INVALID_ARGUMENT and the identical message', async () => {
      const key = keyOf('AES_256');
      const other = keyOf('AES_128');
      const aad = b64('context');
      const good = unb64((await encrypt(kmsd, key.id, 'payload', { aadContext: aad })).ciphertext);
      const noAad = unb64((await encrypt(kmsd, key.id, 'payload')).ciphertext);
      const ofOther = unb64((await encrypt(kmsd, other.id, 'payload', { aadContext: aad })).ciphertext);
      const flip = (buf: Buffer, i: number): Buffer => {
        const copy = Buffer.from(buf);
        const at = i < 0 ? copy.length + i : i;
        copy[at] = copy[at]! ^ 0x01;
        return copy;
      };
      const versionIdAt = 3; // magic, format, length, then the version id (src/crypto/ciphertext-v1.ts)
      const cases: [string, Buffer, string | undefined][] = [
        ['wrong AAD', good, b64('other context')],
        ['missing AAD', good, undefined],
        ['AAD given but none was used', noAad, aad],
        ['last byte (tag) flipped', flip(good, -1), aad],
        ['first sealed byte flipped', flip(good, 3 + 20 + 12), aad],
        ['nonce byte flipped', flip(good, 3 + 20 + 1), aad],
        ['version id byte flipped', flip(good, versionIdAt + 5), aad],
        ['magic byte flipped', flip(good, 0), aad],
        ['format byte changed', flip(good, 1), aad],
        ['truncated by one byte', good.subarray(0, good.length - 1), aad],
        ['truncated to the header', good.subarray(0, 10), aad],
        ['one byte appended', Buffer.concat([good, Buffer.of(0)]), aad],
        ['ciphertext of another key', ofOther, aad],
        ['random bytes', randomBytes(good.length), aad],
        ['one byte', Buffer.of(0x4b), aad],
      ];
      const messages = new Set<string>();
      for (const [what, ct, aadContext] of cases) {
        const res = await decryptCall(kmsd, key.id, ct.toString('base64'), aadContext === undefined ? {} : { aadContext });
        try {
          messages.add(fails(res, 400, 3).message);
        } catch (e) {
          throw new Error(`case "${what}": ${(e as Error).message}`, { cause: e });
        }
      }
      assert.equal(messages.size, 1, `one message for all: ${[...messages].join(' | ')}`);
      // The good one still decrypts.
      assert.equal((await decrypt(kmsd, key.id, good.toString('base64'), { aadContext: aad })).plaintext, b64('payload'));
    });

    it('a version id swapped into the header from another version of the same key fails like tampering', async () => {
      const key = await createKey(kmsd, { folderId });
      const v1 = key.primaryVersion.id;
      const ct = unb64((await encrypt(kmsd, key.id, 'x')).ciphertext);
      const v2 = (await rotate(kmsd, key.id)).primaryVersion.id;
      assert.equal(v1.length, v2.length);
      assert.equal(ct.subarray(3, 3 + v1.length).toString('latin1'), v1, 'the header carries the version id');
      const swapped = Buffer.concat([ct.subarray(0, 3), Buffer.from(v2, 'latin1'), ct.subarray(3 + v1.length)]);
      const res = fails(await decryptCall(kmsd, key.id, swapped.toString('base64')), 400, 3);
      const tampered = fails(await decryptCall(kmsd, key.id, Buffer.concat([ct, Buffer.of(1)]).toString('base64')), 400, 3);
      assert.equal(res.message, tampered.message);
    });

    it('Decrypt after rotation uses the version named in the ciphertext', async () => {
      const key = await createKey(kmsd, { folderId });
      const v1 = key.primaryVersion.id;
      const old = await encrypt(kmsd, key.id, 'old data', { aadContext: b64('a') });
      assert.equal(old.versionId, v1);
      const v2 = (await rotate(kmsd, key.id)).primaryVersion.id;
      const v3 = (await rotate(kmsd, key.id)).primaryVersion.id;
      assert.deepEqual(await decrypt(kmsd, key.id, old.ciphertext, { aadContext: b64('a') }), { keyId: key.id, versionId: v1, plaintext: b64('old data') });
      const fresh = await encrypt(kmsd, key.id, 'new data');
      assert.equal(fresh.versionId, v3);
      assert.equal((await decrypt(kmsd, key.id, fresh.ciphertext)).versionId, v3);
      // Explicit versionId: a non-primary ACTIVE version may be named for encryption.
      const named = await encrypt(kmsd, key.id, 'to v2', { versionId: v2 });
      assert.equal(named.versionId, v2);
      assert.deepEqual(await decrypt(kmsd, key.id, named.ciphertext), { keyId: key.id, versionId: v2, plaintext: b64('to v2') });
      const namedV1 = await encrypt(kmsd, key.id, 'to v1', { version_id: v1 });
      assert.equal(namedV1.versionId, v1);
    });

    it('Encrypt with an unknown version, a version of another key, or an unknown key → NOT_FOUND', async () => {
      const key = keyOf('AES_256');
      const other = keyOf('AES_192');
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x'), versionId: 'abj00000000000000000' }), 404, 5);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x'), versionId: other.primaryVersion.id }), 404, 5);
      fails(await kmsd.call('POST', '/kms/v1/keys/abj00000000000000000:encrypt', { plaintext: b64('x') }), 404, 5);
      fails(await decryptCall(kmsd, 'abj00000000000000000', (await encrypt(kmsd, key.id, 'x')).ciphertext), 404, 5);
    });

    it('a version scheduled for destruction neither decrypts nor encrypts (FAILED_PRECONDITION) until the destruction is cancelled', async () => {
      const key = await createKey(kmsd, { folderId });
      const v1 = key.primaryVersion.id;
      const ct = await encrypt(kmsd, key.id, 'keep me', { aadContext: b64('ctx') });
      const target = await createKey(kmsd, { folderId });
      await rotate(kmsd, key.id);
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }));

      fails(await decryptCall(kmsd, key.id, ct.ciphertext, { aadContext: b64('ctx') }), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x'), versionId: v1 }), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { versionId: v1 }), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);
      fails(
        await kmsd.call('POST', `/kms/v1/keys/${target.id}:reEncrypt`, { sourceKeyId: key.id, sourceAadContext: b64('ctx'), ciphertext: ct.ciphertext }),
        400,
        9,
        /SCHEDULED_FOR_DESTRUCTION/,
      );
      // With a wrong AAD the answer is still about the version, not the AAD.
      fails(await decryptCall(kmsd, key.id, ct.ciphertext), 400, 9);

      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: v1 }));
      assert.deepEqual(await decrypt(kmsd, key.id, ct.ciphertext, { aadContext: b64('ctx') }), { keyId: key.id, versionId: v1, plaintext: b64('keep me') });
      assert.equal((await encrypt(kmsd, key.id, 'x', { versionId: v1 })).versionId, v1);
    });
  });

  describe('GenerateDataKey', () => {
    const specs: [string | undefined, number][] = [
      ['AES_128', 16],
      ['AES_192', 24],
      ['AES_256', 32],
      [undefined, 32],
      ['SYMMETRIC_ALGORITHM_UNSPECIFIED', 32],
      ['AES_256_HSM', 32],
    ];
    for (const [spec, length] of specs) {
      it(`dataKeySpec ${spec ?? '(absent)'} → ${length} bytes; dataKeyCiphertext decrypts to the data key`, async () => {
        const key = keyOf('AES_256');
        const aad = b64(`dek-${spec}`);
        const res = ok(
          await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { aadContext: aad, ...(spec === undefined ? {} : { dataKeySpec: spec }) }),
        );
        assert.deepEqual(Object.keys(res).sort(), ['dataKeyCiphertext', 'dataKeyPlaintext', 'keyId', 'versionId']);
        assert.equal(res.keyId, key.id);
        assert.equal(res.versionId, key.primaryVersion.id);
        const dataKey = unb64(res.dataKeyPlaintext!);
        assert.equal(dataKey.length, length);
        assert.ok(!dataKey.equals(Buffer.alloc(length)), 'not all zeros');
        const dec = await decrypt(kmsd, key.id, res.dataKeyCiphertext, { aadContext: aad });
        assert.deepEqual(dec, { keyId: key.id, versionId: key.primaryVersion.id, plaintext: res.dataKeyPlaintext });
        fails(await decryptCall(kmsd, key.id, res.dataKeyCiphertext), 400, 3); // the AAD is bound as with Encrypt
      });
    }

    it('skipPlaintext:true omits dataKeyPlaintext; the ciphertext still holds a fresh key', async () => {
      const key = keyOf('AES_128');
      const res = ok(await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { dataKeySpec: 'AES_192', skipPlaintext: true }));
      assert.deepEqual(Object.keys(res).sort(), ['dataKeyCiphertext', 'keyId', 'versionId']);
      const dec = await decrypt(kmsd, key.id, res.dataKeyCiphertext);
      assert.equal(unb64(dec.plaintext).length, 24);
      const again = ok(await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { dataKeySpec: 'AES_192', skip_plaintext: true }));
      assert.notEqual((await decrypt(kmsd, key.id, again.dataKeyCiphertext)).plaintext, dec.plaintext, 'each data key is fresh');
    });

    it('honours an explicit versionId and rejects a bad dataKeySpec', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_192' });
      const v1 = key.primaryVersion.id;
      await rotate(kmsd, key.id);
      const res = ok(await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { versionId: v1 }));
      assert.equal(res.versionId, v1);
      assert.equal((await decrypt(kmsd, key.id, res.dataKeyCiphertext)).versionId, v1);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { dataKeySpec: 'AES_1024' }), 400, 3, /data_key_spec/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { aadContext: b64(Buffer.alloc(MAX_AAD + 1)) }), 400, 3, /aad_context/);
    });
  });

  describe('ReEncrypt', () => {
    it('moves a ciphertext from key A to key B, with both AADs', async () => {
      const a = keyOf('AES_128');
      const b = keyOf('AES_256');
      const src = await encrypt(kmsd, a.id, 'moving', { aadContext: b64('src-aad') });
      const res = ok(
        await kmsd.call<ReEncryptResponse>('POST', `/kms/v1/keys/${b.id}:reEncrypt`, {
          sourceKeyId: a.id,
          sourceAadContext: b64('src-aad'),
          aadContext: b64('dst-aad'),
          ciphertext: src.ciphertext,
        }),
      );
      assert.deepEqual(Object.keys(res).sort(), ['ciphertext', 'keyId', 'sourceKeyId', 'sourceVersionId', 'versionId']);
      assert.equal(res.keyId, b.id);
      assert.equal(res.versionId, b.primaryVersion.id);
      assert.equal(res.sourceKeyId, a.id);
      assert.equal(res.sourceVersionId, a.primaryVersion.id);
      assert.deepEqual(await decrypt(kmsd, b.id, res.ciphertext, { aadContext: b64('dst-aad') }), { keyId: b.id, versionId: b.primaryVersion.id, plaintext: b64('moving') });
      fails(await decryptCall(kmsd, b.id, res.ciphertext, { aadContext: b64('src-aad') }), 400, 3);
      fails(await decryptCall(kmsd, b.id, res.ciphertext), 400, 3);
      fails(await decryptCall(kmsd, a.id, res.ciphertext, { aadContext: b64('dst-aad') }), 400, 3);
    });

    it('re-encrypts under the same key onto its new primary version', async () => {
      const key = await createKey(kmsd, { folderId });
      const v1 = key.primaryVersion.id;
      const src = await encrypt(kmsd, key.id, 'same key');
      const v2 = (await rotate(kmsd, key.id)).primaryVersion.id;
      const res = ok(await kmsd.call<ReEncryptResponse>('POST', `/kms/v1/keys/${key.id}:reEncrypt`, { source_key_id: key.id, ciphertext: src.ciphertext }));
      assert.deepEqual({ ...res, ciphertext: undefined }, { keyId: key.id, versionId: v2, sourceKeyId: key.id, sourceVersionId: v1, ciphertext: undefined });
      assert.deepEqual(await decrypt(kmsd, key.id, res.ciphertext), { keyId: key.id, versionId: v2, plaintext: b64('same key') });
      // Now v1 can be destroyed without losing the data.
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: v1 }));
      assert.equal((await decrypt(kmsd, key.id, res.ciphertext)).plaintext, b64('same key'));
      // An explicit target version.
      const back = ok(await kmsd.call<ReEncryptResponse>('POST', `/kms/v1/keys/${key.id}:reEncrypt`, { sourceKeyId: key.id, versionId: v2, ciphertext: res.ciphertext }));
      assert.equal(back.versionId, v2);
    });

    it('fails like Decrypt on a bad source AAD or the wrong source key, and validates its fields', async () => {
      const a = keyOf('AES_192');
      const b = keyOf('AES_256');
      const src = await encrypt(kmsd, a.id, 'x', { aadContext: b64('right') });
      const badCiphertext = fails(await decryptCall(kmsd, a.id, src.ciphertext), 400, 3).message;
      const wrongAad = fails(
        await kmsd.call('POST', `/kms/v1/keys/${b.id}:reEncrypt`, { sourceKeyId: a.id, sourceAadContext: b64('wrong'), ciphertext: src.ciphertext }),
        400,
        3,
      );
      assert.equal(wrongAad.message, badCiphertext);
      const wrongSource = fails(
        await kmsd.call('POST', `/kms/v1/keys/${a.id}:reEncrypt`, { sourceKeyId: b.id, sourceAadContext: b64('right'), ciphertext: src.ciphertext }),
        400,
        3,
      );
      assert.equal(wrongSource.message, badCiphertext);
      fails(await kmsd.call('POST', `/kms/v1/keys/${b.id}:reEncrypt`, { ciphertext: src.ciphertext }), 400, 3, /source_key_id/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${b.id}:reEncrypt`, { sourceKeyId: a.id }), 400, 3, /ciphertext/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${b.id}:reEncrypt`, { sourceKeyId: 'abj00000000000000000', ciphertext: src.ciphertext }), 404, 5);
      fails(
        await kmsd.call('POST', `/kms/v1/keys/${b.id}:reEncrypt`, {
          sourceKeyId: a.id,
          sourceAadContext: b64(Buffer.alloc(MAX_AAD + 1)),
          ciphertext: src.ciphertext,
        }),
        400,
        3,
        /source_aad_context/,
      );
      fails(
        await kmsd.call('POST', `/kms/v1/keys/${b.id}:reEncrypt`, {
          sourceKeyId: a.id,
          sourceAadContext: b64('right'),
          aadContext: b64(Buffer.alloc(MAX_AAD + 1)),
          ciphertext: src.ciphertext,
        }),
        400,
        3,
        /aad_context/,
      );
    });
  });

  describe('limits (SPEC.md §8)', () => {
    it('plaintext: 32768 bytes ok, 32769 → INVALID_ARGUMENT; empty or missing → INVALID_ARGUMENT', async () => {
      const key = keyOf('AES_256');
      const max = randomBytes(MAX_PLAINTEXT);
      const enc = await encrypt(kmsd, key.id, max);
      assert.equal((await decrypt(kmsd, key.id, enc.ciphertext)).plaintext, b64(max));
      // The largest ciphertext is accepted by ReEncrypt too, with maximal AADs.
      const big = await encrypt(kmsd, key.id, max, { aadContext: b64(Buffer.alloc(MAX_AAD, 1)) });
      ok(
        await kmsd.call('POST', `/kms/v1/keys/${key.id}:reEncrypt`, {
          sourceKeyId: key.id,
          sourceAadContext: b64(Buffer.alloc(MAX_AAD, 1)),
          aadContext: b64(Buffer.alloc(MAX_AAD, 2)),
          ciphertext: big.ciphertext,
        }),
      );
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(randomBytes(MAX_PLAINTEXT + 1)) }), 400, 3, /plaintext/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: '' }), 400, 3, /plaintext: required/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, {}), 400, 3, /plaintext: required/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:decrypt`, {}), 400, 3, /ciphertext: required/);
    });

    it('aadContext: 8192 bytes ok, 8193 → INVALID_ARGUMENT (Encrypt and Decrypt)', async () => {
      const key = keyOf('AES_192');
      const aad = randomBytes(MAX_AAD);
      const enc = await encrypt(kmsd, key.id, 'x', { aadContext: b64(aad) });
      assert.equal((await decrypt(kmsd, key.id, enc.ciphertext, { aadContext: b64(aad) })).plaintext, b64('x'));
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x'), aadContext: b64(randomBytes(MAX_AAD + 1)) }), 400, 3, /aad_context/);
      fails(await decryptCall(kmsd, key.id, enc.ciphertext, { aadContext: b64(randomBytes(MAX_AAD + 1)) }), 400, 3, /aad_context/);
    });

    it('a versionId or key id longer than 50 characters → INVALID_ARGUMENT', async () => {
      const key = keyOf('AES_256');
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x'), versionId: 'v'.repeat(51) }), 400, 3, /version_id/);
      fails(await kmsd.call('POST', `/kms/v1/keys/${'k'.repeat(51)}:encrypt`, { plaintext: b64('x') }), 400, 3, /key_id/);
    });
  });

  describe('algorithms this build does not serve', () => {
    it('AES_256_HSM without an HSM → FAILED_PRECONDITION mentioning HSM, on Create and Update', async () => {
      const res = await kmsd.call('POST', '/kms/v1/keys', { folderId, defaultAlgorithm: 'AES_256_HSM' });
      fails(res, 400, 9, /HSM/);
      const key = keyOf('AES_256');
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'defaultAlgorithm', defaultAlgorithm: 'AES_256_HSM' }), 400, 9, /HSM/);
      assert.equal((await getKey(kmsd, key.id)).defaultAlgorithm, 'AES_256');
    });

    it('GOST_R_3412_2015_K → 501 UNIMPLEMENTED, on Create and Update', async () => {
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId, defaultAlgorithm: 'GOST_R_3412_2015_K' }), 501, 12, /GOST/);
      const key = keyOf('AES_128');
      fails(await kmsd.call('PATCH', `/kms/v1/keys/${key.id}`, { updateMask: 'defaultAlgorithm', defaultAlgorithm: 'GOST_R_3412_2015_K' }), 501, 12, /GOST/);
    });

    it('Create without defaultAlgorithm → 400 INVALID_ARGUMENT', async () => {
      const refused = freshFolder();
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: refused, name: 'no algorithm' }), 400, 3, /default_algorithm/);
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: refused, defaultAlgorithm: 'SYMMETRIC_ALGORITHM_UNSPECIFIED' }), 400, 3, /default_algorithm/);
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: refused, defaultAlgorithm: 0 }), 400, 3, /default_algorithm/);
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: refused, defaultAlgorithm: 'AES_256_HSM' }), 400, 9);
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: refused, defaultAlgorithm: 'GOST_R_3412_2015_K' }), 501, 12);
      // None of the refused creates left a key behind.
      assert.deepEqual(ok(await kmsd.call('GET', `/kms/v1/keys?folderId=${refused}`)), {});
      // The enum also arrives as its number.
      const numeric = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 2 as unknown as Algorithm });
      assert.equal(numeric.defaultAlgorithm, 'AES_192');
      assert.equal((await listVersions(kmsd, numeric.id))[0]?.algorithm, 'AES_192');
    });
  });

  it('crypto calls answer 200 with exactly the documented fields (SPEC.md §6)', async () => {
    const key = keyOf('AES_256');
    const res = await kmsd.call<EncryptResponse>('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: 'c2VjcmV0', aadContext: 'dXNlcjo0Mg==' });
    const enc = ok(res);
    assert.equal(unb64(enc.ciphertext)[0], 0x4b, 'v1 magic byte');
    const dec = await decrypt(kmsd, key.id, enc.ciphertext, { aadContext: 'dXNlcjo0Mg==' });
    assert.deepEqual(dec, { keyId: key.id, versionId: enc.versionId, plaintext: 'c2VjcmV0' });
    // Crypto paths also accept a percent-encoded ':' before the verb (SPEC.md §2.4).
    const encoded = ok(await kmsd.call<EncryptResponse>('POST', `/kms/v1/keys/${key.id}%3Aencrypt`, { plaintext: 'c2VjcmV0' }));
    assert.equal(encoded.keyId, key.id);
  });

  it('a key deactivated, reactivated and rotated still decrypts everything it encrypted', async () => {
    const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_128' });
    const first = await encrypt(kmsd, key.id, 'first');
    await update(kmsd, key.id, { updateMask: 'defaultAlgorithm', defaultAlgorithm: 'AES_256' });
    await rotate(kmsd, key.id);
    await update(kmsd, key.id, { updateMask: 'status', status: 'INACTIVE' });
    await update(kmsd, key.id, { updateMask: 'status', status: 'ACTIVE' });
    const second = await encrypt(kmsd, key.id, 'second');
    const versions = await listVersions(kmsd, key.id);
    assert.equal(versions.find((v) => v.id === first.versionId)?.algorithm, 'AES_128');
    assert.equal(versions.find((v) => v.id === second.versionId)?.algorithm, 'AES_256');
    assert.equal((await decrypt(kmsd, key.id, first.ciphertext)).plaintext, b64('first'));
    assert.equal((await decrypt(kmsd, key.id, second.ciphertext)).plaintext, b64('second'));
  });
});
