// The committed v1 vectors (test/vectors/ciphertext-v1.json) decrypt forever. This test never
// regenerates them: it opens the committed bytes, reseals with the recorded nonces and expects the
// same bytes, and decrypts each one a second time with raw node:crypto following the layout that
// src/crypto/ciphertext-v1.ts documents — so the documentation, the code and the vectors agree.
import { createDecipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { openV1, parseCiphertextV1, sealV1 } from '../../src/crypto/ciphertext-v1.js';
import { SecretBytes } from '../../src/crypto/secret-bytes.js';
import { Code, INVALID_CIPHERTEXT_MESSAGE, KmsError } from '../../src/errors/kms-error.js';
import type { Random } from '../../src/ports/random.js';

const hex = z.string().regex(/^([0-9a-f]{2})*$/);
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);
const VectorFile = z.object({
  format: z.string(),
  vectors: z
    .array(
      z.object({
        name: z.string(),
        material: hex,
        keyId: z.string(),
        versionId: z.string(),
        aadContext: base64,
        plaintext: z.union([
          base64,
          z.object({ rule: z.literal('sha256-counter'), seed: z.string(), length: z.number().int().nonnegative(), sha256: hex }),
        ]),
        nonce: hex,
        ciphertext: base64,
      }),
    )
    .min(1),
});
type Vector = z.infer<typeof VectorFile>['vectors'][number];

const file = VectorFile.parse(JSON.parse(readFileSync(new URL('./ciphertext-v1.json', import.meta.url), 'utf8')));

/** The `sha256-counter` rule, implemented here independently of the generator script. */
function expandRule(seed: string, length: number): Buffer {
  const out = Buffer.alloc(Math.ceil(length / 32) * 32);
  for (let i = 0; i * 32 < length; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    createHash('sha256').update(seed, 'utf8').update(counter).digest().copy(out, i * 32);
  }
  return out.subarray(0, length);
}

function plaintextOf(v: Vector): Buffer {
  if (typeof v.plaintext === 'string') return Buffer.from(v.plaintext, 'base64');
  const bytes = expandRule(v.plaintext.seed, v.plaintext.length);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), v.plaintext.sha256, `${v.name}: plaintext rule expands wrongly`);
  return bytes;
}

/** A Random that hands out exactly the recorded nonce, once. */
function replay(nonce: Buffer): Random {
  let used = false;
  return {
    bytes(n) {
      assert.equal(used, false, 'sealV1 asked for random bytes twice');
      assert.equal(n, 12, 'sealV1 must ask for a 12-byte nonce');
      used = true;
      return Buffer.from(nonce);
    },
  };
}

function be32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** Decrypts with raw node:crypto, building header and AAD from the layout comment in ciphertext-v1.ts. */
function rawDecrypt(v: Vector): Buffer {
  const ct = Buffer.from(v.ciphertext, 'base64');
  const id = Buffer.from(v.versionId, 'ascii');
  const header = Buffer.concat([Buffer.of(0x4b, 0x01, id.length), id]);
  assert.deepEqual(ct.subarray(0, header.length), header, 'header = magic 0x4b, format 0x01, L, version id');
  const nonce = ct.subarray(header.length, header.length + 12);
  const tag = ct.subarray(ct.length - 16);
  const body = ct.subarray(header.length + 12, ct.length - 16);
  const keyId = Buffer.from(v.keyId, 'utf8');
  const aadContext = Buffer.from(v.aadContext, 'base64');
  const aad = Buffer.concat([header, be32(keyId.length), keyId, be32(aadContext.length), aadContext]);
  const material = Buffer.from(v.material, 'hex');
  const decipher = createDecipheriv(`aes-${material.length * 8}-gcm` as 'aes-256-gcm', material, nonce, { authTagLength: 16 });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(body), decipher.final()]);
}

const isInvalidCiphertext = (e: unknown): boolean => {
  assert.ok(e instanceof KmsError, `expected a KmsError, got ${String(e)}`);
  assert.equal(e.code, Code.InvalidArgument);
  assert.equal(e.message, INVALID_CIPHERTEXT_MESSAGE);
  return true;
};

describe('ciphertext v1 committed vectors', () => {
  it('cover every key size, empty and non-empty AAD, 0/1/100/32768-byte plaintexts and version ids of length 1 and 50', () => {
    const vs = file.vectors;
    assert.ok(vs.length >= 7, 'vectors are only ever added, never removed');
    assert.deepEqual(new Set(vs.map((v) => v.material.length / 2)), new Set([16, 24, 32]));
    assert.deepEqual(new Set(vs.map((v) => v.aadContext === '')), new Set([true, false]));
    const lengths = new Set(vs.map((v) => plaintextOf(v).length));
    for (const n of [0, 1, 100, 32768]) assert.ok(lengths.has(n), `a ${n}-byte plaintext`);
    const idLengths = new Set(vs.map((v) => v.versionId.length));
    for (const n of [1, 50]) assert.ok(idLengths.has(n), `a version id of length ${n}`);
  });

  for (const v of file.vectors) {
    describe(v.name, () => {
      const key = new SecretBytes(Buffer.from(v.material, 'hex'));
      const ciphertext = Buffer.from(v.ciphertext, 'base64');
      const aadContext = Buffer.from(v.aadContext, 'base64');
      const plaintext = plaintextOf(v);

      it('parses: header names the version, nonce at 3+L', () => {
        const parsed = parseCiphertextV1(ciphertext);
        assert.equal(parsed.versionId, v.versionId);
        assert.equal(parsed.header.length, 3 + v.versionId.length);
        assert.equal(parsed.nonce.toString('hex'), v.nonce);
        assert.equal(parsed.sealed.length, plaintext.length + 16);
      });

      it('decrypts the committed ciphertext', () => {
        const opened = openV1({ key, keyId: v.keyId, parsed: parseCiphertextV1(ciphertext), aadContext });
        assert.ok(opened.equals(plaintext));
      });

      it('reseals to the same bytes with the recorded nonce', () => {
        const resealed = sealV1({
          key,
          keyId: v.keyId,
          versionId: v.versionId,
          plaintext,
          aadContext,
          random: replay(Buffer.from(v.nonce, 'hex')),
        });
        assert.equal(resealed.toString('base64'), v.ciphertext);
      });

      it('decrypts with raw node:crypto using the documented layout', () => {
        assert.ok(rawDecrypt(v).equals(plaintext));
      });

      it('does not decrypt under another key id or AAD context', () => {
        const parsed = parseCiphertextV1(ciphertext);
        assert.throws(() => openV1({ key, keyId: `${v.keyId}x`, parsed, aadContext }), isInvalidCiphertext);
        const otherAad = Buffer.concat([aadContext, Buffer.of(0)]);
        assert.throws(() => openV1({ key, keyId: v.keyId, parsed, aadContext: otherAad }), isInvalidCiphertext);
      });
    });
  }
});
