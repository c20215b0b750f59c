// AES_256_HSM end to end against a real `kmsd serve` whose root key and HSM-hosted versions live in
// a SoftHSM2 token: over REST, then over gRPC with the official SDK. The test process opens the
// same token itself to check what the HSM holds and that no key value can be read out of it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Session } from '@yandex-cloud/nodejs-sdk';
import { symmetricCryptoService, symmetricKey, symmetricKeyService } from '@yandex-cloud/nodejs-sdk/kms-v1';
import pkcs11js from 'pkcs11js';
import { findSecretKeys, Pkcs11Token } from '../../src/adapters/rootkey-pkcs11/pkcs11-token.js';
import { versionLabel } from '../../src/adapters/rootkey-pkcs11/pkcs11-key-versions.js';
import { parseCiphertextV1 } from '../../src/crypto/ciphertext-v1.js';
import {
  b64,
  createKey,
  fails,
  freshFolder,
  listVersions,
  ok,
  rotate,
  unb64,
  type DataKeyResponse,
  type DecryptResponse,
  type EncryptResponse,
  type ReEncryptResponse,
} from '../helpers/api.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';
import { pkcs11Spec, uniqueLabel, withSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

const INVALID_CIPHERTEXT = /ciphertext is invalid/;

withSoftHsm('AES_256_HSM end to end', (hsm: SoftHsm) => {
  let token: Pkcs11Token;
  before(() => {
    token = Pkcs11Token.open({ module: hsm.module, token: hsm.token }, readFileSync(hsm.pinFile, 'utf8'), 2);
  });
  after(() => token?.close());

  const objects = (label: string) => token.withSession((s) => findSecretKeys(s, label));

  /** C_GetAttributeValue(CKA_VALUE) on the object must fail: the HSM never hands the key out. */
  async function assertValueUnreadable(label: string): Promise<void> {
    const [key] = await objects(label);
    assert.ok(key, `the token holds ${label}`);
    await assert.rejects(
      token.withSession((s) => s.p11.C_GetAttributeValue(s.handle, key, [{ type: pkcs11js.CKA_VALUE }])),
      /CKR_ATTRIBUTE_SENSITIVE/,
    );
    const [extractable] = await token.withSession((s) => s.p11.C_GetAttributeValue(s.handle, key, [{ type: pkcs11js.CKA_EXTRACTABLE }]));
    assert.equal((extractable!.value as Buffer)[0], 0, 'CKA_EXTRACTABLE is false');
  }

  describe('over REST', () => {
    let kmsd: KmsdProcess;
    const rootLabel = uniqueLabel();
    const folderId = freshFolder();

    before(async () => {
      kmsd = await KmsdProcess.start({ auth: 'none', testClock: true, rootKey: pkcs11Spec(hsm, rootLabel) });
    });
    after(async () => {
      await kmsd?.dispose();
    });

    const encrypt = (keyId: string, plaintext: Buffer, aad = 'ctx', versionId?: string) =>
      kmsd.call<EncryptResponse>('POST', `/kms/v1/keys/${keyId}:encrypt`, { plaintext: b64(plaintext), aadContext: b64(aad), ...(versionId ? { versionId } : {}) });
    const decrypt = (keyId: string, ciphertext: string, aad = 'ctx') =>
      kmsd.call<DecryptResponse>('POST', `/kms/v1/keys/${keyId}:decrypt`, { ciphertext, aadContext: b64(aad) });

    it('creates an AES_256_HSM key whose version is hosted by the HSM, as a non-extractable token object', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      assert.equal(key.primaryVersion?.algorithm, 'AES_256_HSM');
      assert.equal(key.primaryVersion?.hostedByHsm, true);
      assert.equal(key.defaultAlgorithm, 'AES_256_HSM');
      await assertValueUnreadable(versionLabel(key.id, key.primaryVersion!.id));
      await assertValueUnreadable(rootLabel);
    });

    it('encrypts in the HSM into a v1 ciphertext that names its version; decrypts with the same AAD only', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      const plaintext = Buffer.from('a secret kept by the HSM');
      const enc = ok(await encrypt(key.id, plaintext));
      assert.equal(enc.versionId, key.primaryVersion!.id);
      const parsed = parseCiphertextV1(unb64(enc.ciphertext));
      assert.equal(parsed.versionId, enc.versionId, 'the v1 parser reads the HSM ciphertext');
      assert.equal(unb64(enc.ciphertext).includes(plaintext), false);
      const dec = ok(await decrypt(key.id, enc.ciphertext));
      assert.deepEqual(unb64(dec.plaintext), plaintext);
      assert.equal(dec.versionId, enc.versionId);
      fails(await decrypt(key.id, enc.ciphertext, 'other'), 400, 3, INVALID_CIPHERTEXT);
      const tampered = unb64(enc.ciphertext);
      tampered[tampered.length - 3]! ^= 0x10;
      fails(await decrypt(key.id, b64(tampered)), 400, 3, INVALID_CIPHERTEXT);
      const other = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      fails(await decrypt(other.id, enc.ciphertext), 400, 3, INVALID_CIPHERTEXT);
    });

    it('generates data keys of every size whose ciphertexts decrypt to them; skipPlaintext too', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      for (const [spec, length] of [
        ['AES_128', 16],
        ['AES_192', 24],
        ['AES_256', 32],
        [undefined, 32],
      ] as const) {
        const dk = ok(await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { aadContext: b64('dk'), ...(spec ? { dataKeySpec: spec } : {}) }));
        assert.equal(unb64(dk.dataKeyPlaintext!).length, length);
        assert.deepEqual(unb64(ok(await decrypt(key.id, dk.dataKeyCiphertext, 'dk')).plaintext), unb64(dk.dataKeyPlaintext!));
      }
      const skipped = ok(await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { skipPlaintext: true }));
      assert.equal(skipped.dataKeyPlaintext, undefined);
      assert.equal(unb64(ok(await decrypt(key.id, skipped.dataKeyCiphertext, '')).plaintext).length, 32);
    });

    it('rotates to a new HSM version; ciphertexts of every version still decrypt; ReEncrypt moves data between HSM and software keys', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      const messages: { ciphertext: string; plaintext: Buffer; versionId: string }[] = [];
      for (let round = 0; round < 3; round++) {
        const plaintext = Buffer.from(`message ${round}`);
        const enc = ok(await encrypt(key.id, plaintext));
        messages.push({ ciphertext: enc.ciphertext, plaintext, versionId: enc.versionId });
        const rotated = await rotate(kmsd, key.id);
        assert.notEqual(rotated.primaryVersion!.id, enc.versionId);
        assert.equal(rotated.primaryVersion!.hostedByHsm, true);
      }
      const versions = await listVersions(kmsd, key.id);
      assert.equal(versions.length, 4);
      assert.ok(versions.every((v) => v.hostedByHsm && v.algorithm === 'AES_256_HSM'));
      for (const v of versions) assert.equal((await objects(versionLabel(key.id, v.id))).length, 1);
      for (const m of messages) {
        const dec = ok(await decrypt(key.id, m.ciphertext));
        assert.deepEqual(unb64(dec.plaintext), m.plaintext);
        assert.equal(dec.versionId, m.versionId, 'decrypted by the version named in the ciphertext');
      }
      // an explicitly chosen older version still encrypts
      const byOld = ok(await encrypt(key.id, Buffer.from('by v1'), 'ctx', messages[0]!.versionId));
      assert.equal(byOld.versionId, messages[0]!.versionId);

      const software = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256' });
      const toSoftware = ok(
        await kmsd.call<ReEncryptResponse>('POST', `/kms/v1/keys/${software.id}:reEncrypt`, {
          sourceKeyId: key.id,
          ciphertext: messages[0]!.ciphertext,
          sourceAadContext: b64('ctx'),
          aadContext: b64('sw'),
        }),
      );
      assert.equal(toSoftware.sourceVersionId, messages[0]!.versionId);
      const back = ok(
        await kmsd.call<ReEncryptResponse>('POST', `/kms/v1/keys/${key.id}:reEncrypt`, {
          sourceKeyId: software.id,
          ciphertext: toSoftware.ciphertext,
          sourceAadContext: b64('sw'),
          aadContext: b64('hsm'),
        }),
      );
      assert.equal(back.versionId, versions.find((v) => v.primary)!.id);
      assert.deepEqual(unb64(ok(await decrypt(key.id, back.ciphertext, 'hsm')).plaintext), messages[0]!.plaintext);
    });

    it('a destroyed version loses its HSM object; its ciphertexts then fail with FAILED_PRECONDITION', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      const old = key.primaryVersion!.id;
      const enc = ok(await encrypt(key.id, Buffer.from('doomed')));
      await rotate(kmsd, key.id);
      ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: old, pendingPeriod: '86400s' }));
      assert.equal((await objects(versionLabel(key.id, old))).length, 1, 'scheduled, not yet destroyed');
      ok(await kmsd.call('POST', '/kmsd/v1/testing/clock:advance', { duration: '86401s' }));
      assert.equal((await listVersions(kmsd, key.id)).find((v) => v.id === old)?.status, 'DESTROYED');
      assert.equal((await objects(versionLabel(key.id, old))).length, 0, 'the key object is gone from the token');
      fails(await decrypt(key.id, enc.ciphertext), 400, 9);
    });

    it('after a restart the HSM keys are found again and old ciphertexts decrypt', async () => {
      const key = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256_HSM' });
      const enc = ok(await encrypt(key.id, Buffer.from('survives restarts')));
      const software = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256' });
      const encSw = ok(await encrypt(software.id, Buffer.from('wrapped by the HSM root key')));
      await kmsd.restart();
      assert.deepEqual(unb64(ok(await decrypt(key.id, enc.ciphertext)).plaintext), Buffer.from('survives restarts'));
      assert.deepEqual(unb64(ok(await decrypt(software.id, encSw.ciphertext)).plaintext), Buffer.from('wrapped by the HSM root key'));
    });
  });

  describe('over gRPC with the official SDK', () => {
    let kmsd: KmsdProcess;
    let session: Session;
    let endpoint: string;
    before(async () => {
      kmsd = await KmsdProcess.start({ auth: 'iam', rootKey: pkcs11Spec(hsm, uniqueLabel()) });
      const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
      endpoint = ready.grpc;
      session = new Session({ iamToken: kmsd.token!, ssl: { rootCerts: readFileSync(ready.caFile) } });
    });
    after(async () => {
      await kmsd?.dispose();
    });

    it('creates, encrypts, generates data keys, rotates and decrypts old ciphertexts', async () => {
      const keys = session.client(symmetricKeyService.SymmetricKeyServiceClient, endpoint);
      const crypto = session.client(symmetricCryptoService.SymmetricCryptoServiceClient, endpoint);
      const created = await keys.create(
        symmetricKeyService.CreateSymmetricKeyRequest.fromPartial({ folderId: freshFolder(), name: 'hsm', defaultAlgorithm: symmetricKey.SymmetricAlgorithm.AES_256_HSM }),
      );
      const key = symmetricKey.SymmetricKey.decode(created.response!.value);
      assert.equal(key.primaryVersion?.hostedByHsm, true);
      assert.equal(key.primaryVersion?.algorithm, symmetricKey.SymmetricAlgorithm.AES_256_HSM);
      await assertValueUnreadable(versionLabel(key.id, key.primaryVersion!.id));

      const aadContext = Buffer.from('grpc');
      const first = await crypto.encrypt(symmetricCryptoService.SymmetricEncryptRequest.fromPartial({ keyId: key.id, plaintext: Buffer.from('one'), aadContext }));
      assert.equal(parseCiphertextV1(Buffer.from(first.ciphertext)).versionId, key.primaryVersion!.id);
      const dk = await crypto.generateDataKey(
        symmetricCryptoService.GenerateDataKeyRequest.fromPartial({ keyId: key.id, dataKeySpec: symmetricKey.SymmetricAlgorithm.AES_256, aadContext }),
      );
      assert.equal(dk.dataKeyPlaintext.length, 32);

      const rotated = symmetricKey.SymmetricKey.decode((await keys.rotate(symmetricKeyService.RotateSymmetricKeyRequest.fromPartial({ keyId: key.id }))).response!.value);
      assert.notEqual(rotated.primaryVersion!.id, key.primaryVersion!.id);
      assert.equal(rotated.primaryVersion!.hostedByHsm, true);
      const second = await crypto.encrypt(symmetricCryptoService.SymmetricEncryptRequest.fromPartial({ keyId: key.id, plaintext: Buffer.from('two'), aadContext }));
      assert.equal(second.versionId, rotated.primaryVersion!.id);

      const decrypt = (ciphertext: Buffer) => crypto.decrypt(symmetricCryptoService.SymmetricDecryptRequest.fromPartial({ keyId: key.id, ciphertext, aadContext }));
      assert.deepEqual(Buffer.from((await decrypt(Buffer.from(first.ciphertext))).plaintext), Buffer.from('one'));
      assert.deepEqual(Buffer.from((await decrypt(Buffer.from(second.ciphertext))).plaintext), Buffer.from('two'));
      assert.deepEqual(Buffer.from((await decrypt(Buffer.from(dk.dataKeyCiphertext))).plaintext), Buffer.from(dk.dataKeyPlaintext));
      const re = await crypto.reEncrypt(
        symmetricCryptoService.SymmetricReEncryptRequest.fromPartial({ keyId: key.id, sourceKeyId: key.id, ciphertext: first.ciphertext, sourceAadContext: aadContext, aadContext }),
      );
      assert.equal(re.sourceVersionId, key.primaryVersion!.id);
      assert.equal(re.versionId, rotated.primaryVersion!.id);
      assert.deepEqual(Buffer.from((await decrypt(Buffer.from(re.ciphertext))).plaintext), Buffer.from('one'));
      // Flip a bit of the tag (setting the last byte to 0 left it unchanged whenever it already was: 1 run in 256).
      const tampered = Buffer.from(first.ciphertext);
      tampered[tampered.length - 1]! ^= 1;
      await assert.rejects(decrypt(tampered), /ciphertext is invalid/);
    });
  });
});
