import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pkcs11js from 'pkcs11js';
import { rootKeyContract } from '../../../test/contract/root-key.contract.js';
import { uniqueLabel, withSoftHsm, type SoftHsm } from '../../../test/helpers/softhsm.js';
import { cryptoRandom } from '../random.js';
import { parseCiphertextV1, openV1With, sealV1With } from '../../crypto/ciphertext-v1.js';
import { decodeHsmReference } from '../../crypto/hsm-reference.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { wrappedAad } from '../../crypto/wrapped-material.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import { pkcs11KeyVersions, versionLabel } from './pkcs11-key-versions.js';
import { openPkcs11RootKey } from './pkcs11-root-key.js';
import { findSecretKeys, Pkcs11Error, Pkcs11Token } from './pkcs11-token.js';

// The PKCS#11 adapter against a real SoftHSM2 token (scripts/ensure-softhsm.sh): the root-key
// contract, the failures an operator meets at start, and what the token must never give away.

function pkcs11Error(check: (message: string) => void): (e: unknown) => true {
  return (e) => {
    assert.ok(e instanceof Pkcs11Error, `expected a Pkcs11Error, got ${String(e)}`);
    check(e.message);
    return true;
  };
}

/** CKA_* attributes of a key object as booleans, read through one of the token's sessions. */
async function flags(token: Pkcs11Token, key: Buffer): Promise<Record<string, boolean>> {
  const names = ['CKA_SENSITIVE', 'CKA_EXTRACTABLE', 'CKA_ALWAYS_SENSITIVE', 'CKA_NEVER_EXTRACTABLE', 'CKA_TOKEN', 'CKA_PRIVATE'] as const;
  const read = await token.withSession((s) => s.p11.C_GetAttributeValue(s.handle, key, names.map((n) => ({ type: pkcs11js[n] }))));
  return Object.fromEntries(names.map((n, i) => [n, (read[i]!.value as Buffer)[0] === 1]));
}

/** Reading CKA_VALUE of `key` must fail with CKR_ATTRIBUTE_SENSITIVE. */
async function assertValueUnreadable(token: Pkcs11Token, key: Buffer): Promise<void> {
  await assert.rejects(
    token.withSession((s) => s.p11.C_GetAttributeValue(s.handle, key, [{ type: pkcs11js.CKA_VALUE }])),
    (e: unknown) => {
      assert.match((e as Error).message, /CKR_ATTRIBUTE_SENSITIVE/);
      return true;
    },
  );
}

withSoftHsm('PKCS#11 adapter', (hsm: SoftHsm) => {
  const pin = readFileSync(hsm.pinFile, 'utf8');
  const sel = { module: hsm.module, token: hsm.token };

  describe('opening a token: clear errors, the PIN never shown', () => {
    it('a wrong PIN fails at login and does not show the PIN', () => {
      const wrong = `wrong-${randomBytes(4).toString('hex')}`;
      assert.throws(
        () => Pkcs11Token.open(sel, wrong, 2),
        pkcs11Error((m) => {
          assert.equal(m, `PKCS#11 token "${hsm.token}": login failed: the PIN is incorrect`);
          assert.equal(m.includes(wrong), false);
        }),
      );
    });

    it('a token label that does not exist names the tokens that do', () => {
      assert.throws(
        () => Pkcs11Token.open({ module: hsm.module, token: 'no-such-token' }, pin, 2),
        pkcs11Error((m) => {
          assert.match(m, /has no token "no-such-token"/);
          assert.ok(m.includes(`"${hsm.token}"`), m);
          assert.equal(m.includes(pin), false);
        }),
      );
    });

    it('a slot id that does not exist', () => {
      assert.throws(() => Pkcs11Token.open({ module: hsm.module, slot: 987654321n }, pin, 2), pkcs11Error((m) => assert.match(m, /has no slot 987654321/)));
    });

    it('a module that cannot be loaded', () => {
      assert.throws(
        () => Pkcs11Token.open({ module: '/nonexistent/libnothing.so', token: hsm.token }, pin, 2),
        pkcs11Error((m) => assert.match(m, /^PKCS#11 module \/nonexistent\/libnothing\.so cannot be loaded: .*No such file/)),
      );
      assert.throws(
        () => Pkcs11Token.open({ module: '/etc/hostname', token: hsm.token }, pin, 2),
        pkcs11Error((m) => assert.match(m, /^PKCS#11 module \/etc\/hostname cannot be loaded/)),
      );
    });
  });

  describe('with the token open', () => {
    let token: Pkcs11Token;
    before(() => {
      token = Pkcs11Token.open(sel, pin, 4);
    });
    after(() => token.close());

    it('opening it again with another PIN is refused (the login is shared)', () => {
      assert.throws(() => Pkcs11Token.open(sel, `${pin}x`, 4), pkcs11Error((m) => assert.match(m, /already open with a different PIN/)));
    });

    it('a missing root key label without create=yes is an error that says how to fix it', async () => {
      const label = uniqueLabel();
      await assert.rejects(
        openPkcs11RootKey(token, { label, create: false }, cryptoRandom),
        pkcs11Error((m) => assert.equal(m, `PKCS#11 token "${hsm.token}" has no key labelled "${label}"; create it, or add create=yes to --root-key to let kmsd generate it`)),
      );
      assert.equal((await token.withSession((s) => findSecretKeys(s, label))).length, 0, 'nothing was created');
    });

    it('creates the root key when asked: sensitive, never extractable; its value cannot be read', async () => {
      const label = uniqueLabel();
      const root = await openPkcs11RootKey(token, { label, create: true }, cryptoRandom);
      assert.match(root.id, /^p11:[0-9a-f]{16}$/);
      await root.selfTest(cryptoRandom);
      const [key] = await token.withSession((s) => findSecretKeys(s, label));
      assert.ok(key);
      assert.deepEqual(await flags(token, key), {
        CKA_SENSITIVE: true,
        CKA_EXTRACTABLE: false,
        CKA_ALWAYS_SENSITIVE: true,
        CKA_NEVER_EXTRACTABLE: true,
        CKA_TOKEN: true,
        CKA_PRIVATE: true,
      });
      await assertValueUnreadable(token, key);
    });

    it('opening the same key again (create=yes or not) gives the same id and unwraps what it wrapped', async () => {
      const label = uniqueLabel();
      const first = await openPkcs11RootKey(token, { label, create: true }, cryptoRandom);
      const wrapped = await first.wrap(new SecretBytes(Buffer.alloc(32, 7)), wrappedAad('k', 'v'));
      const again = await openPkcs11RootKey(token, { label, create: false }, cryptoRandom);
      assert.equal(again.id, first.id);
      assert.deepEqual((await again.unwrap(wrapped, wrappedAad('k', 'v'))).exposeSecret(), Buffer.alloc(32, 7));
    });

    it('refuses a root key that could leave the token', async () => {
      const label = uniqueLabel();
      await token.withSession((s) =>
        s.p11.C_GenerateKey(s.handle, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
          { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_SENSITIVE, value: false },
          { type: pkcs11js.CKA_EXTRACTABLE, value: true },
          { type: pkcs11js.CKA_ENCRYPT, value: true },
          { type: pkcs11js.CKA_DECRYPT, value: true },
          { type: pkcs11js.CKA_LABEL, value: label },
        ]),
      );
      await assert.rejects(openPkcs11RootKey(token, { label, create: false }, cryptoRandom), pkcs11Error((m) => assert.match(m, /can leave the token/)));
    });

    describe('AES_256_HSM key versions', () => {
      it('are generated in the token as non-extractable keys whose value cannot be read', async () => {
        const versions = pkcs11KeyVersions(token);
        const keyId = `abjkey${randomBytes(7).toString('hex')}`;
        const reference = await versions.generate(keyId, 'abjver00000000000001');
        assert.equal(decodeHsmReference(reference), versionLabel(keyId, 'abjver00000000000001'));
        const [key] = await token.withSession((s) => findSecretKeys(s, versionLabel(keyId, 'abjver00000000000001')));
        assert.ok(key);
        const f = await flags(token, key);
        assert.equal(f.CKA_EXTRACTABLE, false);
        assert.equal(f.CKA_NEVER_EXTRACTABLE, true);
        assert.equal(f.CKA_SENSITIVE, true);
        await assertValueUnreadable(token, key);
      });

      it('encrypt in the HSM into the v1 ciphertext layout; decrypt only with the same key id and AAD', async () => {
        const versions = pkcs11KeyVersions(token);
        const keyId = `abjkey${randomBytes(7).toString('hex')}`;
        const versionId = 'abjver00000000000002';
        const hsmKey = await versions.open(await versions.generate(keyId, versionId));
        const plaintext = randomBytes(100);
        const ciphertext = await sealV1With({ seal: hsmKey.seal, keyId, versionId, plaintext, aadContext: Buffer.from('ctx'), random: cryptoRandom });
        const parsed = parseCiphertextV1(ciphertext);
        assert.equal(parsed.versionId, versionId);
        assert.deepEqual(await openV1With({ open: hsmKey.open, keyId, parsed, aadContext: Buffer.from('ctx') }), plaintext);
        for (const [otherKey, ctx] of [
          [keyId, 'other'],
          ['abjkeyother', 'ctx'],
        ] as const) {
          await assert.rejects(openV1With({ open: hsmKey.open, keyId: otherKey, parsed, aadContext: Buffer.from(ctx) }), (e: unknown) => e instanceof KmsError && e.code === Code.InvalidArgument);
        }
        const tampered = Buffer.from(ciphertext);
        tampered[tampered.length - 1]! ^= 1;
        await assert.rejects(openV1With({ open: hsmKey.open, keyId, parsed: parseCiphertextV1(tampered), aadContext: Buffer.from('ctx') }), (e: unknown) => e instanceof KmsError && e.code === Code.InvalidArgument);
      });

      it('destroy removes the object; opening its reference then is INTERNAL; destroying twice is fine', async () => {
        const versions = pkcs11KeyVersions(token);
        const keyId = `abjkey${randomBytes(7).toString('hex')}`;
        const reference = await versions.generate(keyId, 'abjver00000000000003');
        await versions.destroy(reference);
        assert.equal((await token.withSession((s) => findSecretKeys(s, versionLabel(keyId, 'abjver00000000000003')))).length, 0);
        await versions.destroy(reference);
        await assert.rejects(versions.open(reference), (e: unknown) => e instanceof KmsError && e.code === Code.Internal && /missing from/.test(e.message));
      });
    });
  });

  let contractToken: Pkcs11Token;
  rootKeyContract('PKCS#11 (SoftHSM2)', async () => {
    contractToken = Pkcs11Token.open(sel, pin, 4);
    return {
      provider: await openPkcs11RootKey(contractToken, { label: uniqueLabel(), create: true }, cryptoRandom),
      other: await openPkcs11RootKey(contractToken, { label: uniqueLabel(), create: true }, cryptoRandom),
      close: () => contractToken.close(),
    };
  });
});
