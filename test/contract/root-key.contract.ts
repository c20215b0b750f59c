import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { SecretBytes } from '../../src/crypto/secret-bytes.js';
import { parseWrappedV1, wrappedAad, wrappedRootKeyId } from '../../src/crypto/wrapped-material.js';
import { Code, KmsError } from '../../src/errors/kms-error.js';
import type { RootKeyProvider } from '../../src/ports/root-key.js';

// The behaviour every RootKeyProvider must have, whether the key is in process memory (file:,
// env:) or inside an HSM (pkcs11:). It talks to the providers only through the port:
//   rootKeyContract('software', async () => ({ provider, other, close }))
// `provider` and `other` are two different root keys of the same kind.

export interface RootKeyFixture {
  readonly provider: RootKeyProvider;
  readonly other: RootKeyProvider;
  close(): Promise<void> | void;
}

const UNWRAP_FAILED = 'stored key material does not unwrap with the configured root key';
const KEY = 'abjkey00000000000001';
const VERSION = 'abjver00000000000001';

async function rejectsCleanly(promise: Promise<unknown>, ...secrets: Buffer[]): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof KmsError, `expected a KmsError, got ${inspect(e)}`);
    assert.equal(e.code, Code.Internal);
    assert.equal(e.message, UNWRAP_FAILED, 'every failure reads the same: no oracle for which check failed');
    const rendered = [e.message, e.stack ?? '', inspect(e, { showHidden: true }), JSON.stringify(e)].join('\n');
    for (const s of secrets) {
      for (const form of [s.toString('hex'), s.toString('base64')]) assert.equal(rendered.includes(form), false, 'the error shows secret bytes');
    }
    return true;
  });
}

export function rootKeyContract(name: string, open: () => Promise<RootKeyFixture>): void {
  describe(`RootKeyProvider contract: ${name}`, () => {
    let f: RootKeyFixture;
    const aad = wrappedAad(KEY, VERSION);
    before(async () => {
      f = await open();
    });
    after(async () => {
      await f.close();
    });

    it('has an id of at most 255 bytes that differs between two keys', () => {
      assert.ok(f.provider.id.length > 0 && Buffer.byteLength(f.provider.id, 'latin1') <= 255);
      assert.notEqual(f.provider.id, f.other.id);
    });

    for (const length of [16, 24, 32]) {
      it(`wraps and unwraps ${length} bytes; the blob names the root key and hides the material`, async () => {
        const bytes = randomBytes(length);
        const wrapped = await f.provider.wrap(new SecretBytes(bytes), aad);
        assert.equal(wrappedRootKeyId(wrapped), f.provider.id);
        assert.equal(wrapped.includes(bytes), false, 'the material is not in the blob in the clear');
        assert.ok(parseWrappedV1(wrapped), 'the blob is in the v1 wrapped-material layout');
        const back = await f.provider.unwrap(wrapped, aad);
        assert.deepEqual(back.exposeSecret(), bytes);
      });
    }

    it('two wraps of the same material differ (a fresh nonce each time) and both unwrap', async () => {
      const material = new SecretBytes(randomBytes(32));
      const a = await f.provider.wrap(material, aad);
      const b = await f.provider.wrap(material, aad);
      assert.notDeepEqual(a, b);
      assert.deepEqual((await f.provider.unwrap(a, aad)).exposeSecret(), material.exposeSecret());
      assert.deepEqual((await f.provider.unwrap(b, aad)).exposeSecret(), material.exposeSecret());
    });

    it('every flipped bit of the blob → INTERNAL with one message', async () => {
      const bytes = randomBytes(32);
      const wrapped = await f.provider.wrap(new SecretBytes(bytes), aad);
      for (let bit = 0; bit < wrapped.length * 8; bit++) {
        const tampered = Buffer.from(wrapped);
        tampered[bit >> 3]! ^= 1 << (bit & 7);
        await rejectsCleanly(f.provider.unwrap(tampered, aad), bytes);
      }
    });

    it('every truncation and an appended byte → INTERNAL with one message', async () => {
      const bytes = randomBytes(32);
      const wrapped = await f.provider.wrap(new SecretBytes(bytes), aad);
      for (let n = 0; n < wrapped.length; n++) await rejectsCleanly(f.provider.unwrap(wrapped.subarray(0, n), aad), bytes);
      await rejectsCleanly(f.provider.unwrap(Buffer.concat([wrapped, Buffer.of(0)]), aad), bytes);
    });

    it('wrong AAD: another key, another version, the two swapped, or none → INTERNAL', async () => {
      const bytes = randomBytes(32);
      const wrapped = await f.provider.wrap(new SecretBytes(bytes), aad);
      for (const wrong of [
        wrappedAad('abjkey00000000000002', VERSION),
        wrappedAad(KEY, 'abjver00000000000002'),
        wrappedAad(VERSION, KEY),
        Buffer.alloc(0),
        Buffer.concat([aad, Buffer.of(0)]),
      ]) {
        await rejectsCleanly(f.provider.unwrap(wrapped, wrong), bytes);
      }
    });

    it('another root key cannot unwrap, even with its own id put in the header', async () => {
      const bytes = randomBytes(32);
      const wrapped = await f.provider.wrap(new SecretBytes(bytes), aad);
      await rejectsCleanly(f.other.unwrap(wrapped, aad), bytes);
      const parts = parseWrappedV1(wrapped)!;
      const otherHeader = (await f.other.wrap(new SecretBytes(randomBytes(32)), aad)).subarray(0, 3 + Buffer.byteLength(f.other.id, 'latin1'));
      await rejectsCleanly(f.other.unwrap(Buffer.concat([otherHeader, parts.nonce, parts.sealed]), aad), bytes);
    });

    it('serves many wraps and unwraps at once', async () => {
      const materials = Array.from({ length: 40 }, () => randomBytes(32));
      const wrapped = await Promise.all(materials.map((m, i) => f.provider.wrap(new SecretBytes(m), wrappedAad(KEY, `abjver${String(i).padStart(14, '0')}`))));
      const back = await Promise.all(wrapped.map((w, i) => f.provider.unwrap(w, wrappedAad(KEY, `abjver${String(i).padStart(14, '0')}`))));
      back.forEach((b, i) => assert.deepEqual(b.exposeSecret(), materials[i]));
    });
  });
}
