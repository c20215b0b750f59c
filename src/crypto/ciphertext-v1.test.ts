import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Code, INVALID_CIPHERTEXT_MESSAGE, KmsError } from '../errors/kms-error.js';
import type { Random } from '../ports/random.js';
import { CIPHERTEXT_MAGIC, FORMAT_V1, encodeHeaderV1, openV1, parseCiphertextV1, sealV1 } from './ciphertext-v1.js';
import { SecretBytes } from './secret-bytes.js';

const csprng: Random = { bytes: (n) => randomBytes(n) };
const EMPTY = Buffer.alloc(0);
const KEY_ID = 'abjkey00000000000001';
const VERSION_ID = 'abjver00000000000001';

function newKey(n: 16 | 24 | 32): SecretBytes {
  return new SecretBytes(randomBytes(n));
}

function seal(p: { key: SecretBytes; plaintext: Buffer; aadContext?: Buffer; keyId?: string; versionId?: string }): Buffer {
  return sealV1({
    key: p.key,
    keyId: p.keyId ?? KEY_ID,
    versionId: p.versionId ?? VERSION_ID,
    plaintext: p.plaintext,
    aadContext: p.aadContext ?? EMPTY,
    random: csprng,
  });
}

/** What a decrypt does: parse the header, then open with the key of the version it names. */
function parseAndOpen(p: { key: SecretBytes; ciphertext: Buffer; aadContext?: Buffer; keyId?: string }): Buffer {
  return openV1({ key: p.key, keyId: p.keyId ?? KEY_ID, parsed: parseCiphertextV1(p.ciphertext), aadContext: p.aadContext ?? EMPTY });
}

function isInvalidCiphertext(e: unknown): true {
  assert.ok(e instanceof KmsError, `expected a KmsError, got ${inspect(e)}`);
  assert.equal(e.code, Code.InvalidArgument);
  assert.equal(e.message, INVALID_CIPHERTEXT_MESSAGE);
  return true;
}

function flipBit(buf: Buffer, bit: number): Buffer {
  const out = Buffer.from(buf);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

describe('sealV1 / openV1 round trip', () => {
  for (const size of [16, 24, 32] as const) {
    for (const aadContext of [EMPTY, Buffer.from('tenant=7', 'utf8')]) {
      it(`AES-${size * 8}, ${aadContext.length === 0 ? 'no' : 'with'} AAD context`, () => {
        const key = newKey(size);
        for (const length of [1, 15, 16, 17, 100, 4096]) {
          const plaintext = randomBytes(length);
          const ciphertext = seal({ key, plaintext, aadContext });
          assert.equal(ciphertext.length, 3 + VERSION_ID.length + 12 + length + 16);
          assert.ok(parseAndOpen({ key, ciphertext, aadContext }).equals(plaintext));
        }
      });
    }
  }

  it('writes the documented header: magic 0x4b, format 0x01, L, version id, then the nonce from Random', () => {
    const nonce = Buffer.from('000102030405060708090a0b', 'hex');
    const calls: number[] = [];
    const ciphertext = sealV1({
      key: newKey(32),
      keyId: KEY_ID,
      versionId: 'v7',
      plaintext: Buffer.from('hello'),
      aadContext: EMPTY,
      random: {
        bytes(n) {
          calls.push(n);
          return Buffer.from(nonce);
        },
      },
    });
    assert.deepEqual(calls, [12]);
    assert.equal(CIPHERTEXT_MAGIC, 0x4b);
    assert.equal(FORMAT_V1, 0x01);
    assert.deepEqual(ciphertext.subarray(0, 5), Buffer.from([0x4b, 0x01, 2, 0x76, 0x37]));
    assert.deepEqual(ciphertext.subarray(5, 17), nonce);
    const parsed = parseCiphertextV1(ciphertext);
    assert.equal(parsed.versionId, 'v7');
    assert.deepEqual(parsed.header, ciphertext.subarray(0, 5));
    assert.deepEqual(parsed.nonce, nonce);
    assert.deepEqual(parsed.sealed, ciphertext.subarray(17));
  });

  it('accepts an empty plaintext (the API forbids one; the codec does not)', () => {
    const key = newKey(32);
    const ciphertext = seal({ key, plaintext: EMPTY, aadContext: Buffer.from('x') });
    assert.equal(ciphertext.length, 3 + VERSION_ID.length + 12 + 16);
    assert.equal(parseAndOpen({ key, ciphertext, aadContext: Buffer.from('x') }).length, 0);
  });

  it('does not contain the plaintext, and two encryptions of the same plaintext differ', () => {
    const key = newKey(32);
    const plaintext = Buffer.from('attack at dawn, attack at dawn, attack at dawn');
    const a = seal({ key, plaintext });
    const b = seal({ key, plaintext });
    assert.equal(a.indexOf(plaintext.subarray(0, 8)), -1);
    assert.notDeepEqual(a, b);
  });

  it('accepts version ids of length 1 and 50 (printable ASCII) and a non-ASCII key id', () => {
    const key = newKey(16);
    for (const versionId of ['1', 'x'.repeat(50), '!~"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}']) {
      const keyId = 'ключ-🔑';
      const ciphertext = seal({ key, plaintext: Buffer.from('p'), versionId, keyId });
      assert.equal(parseCiphertextV1(ciphertext).versionId, versionId);
      assert.equal(parseAndOpen({ key, ciphertext, keyId }).toString(), 'p');
    }
  });
});

describe('encodeHeaderV1', () => {
  it('encodes magic, format, length and id', () => {
    assert.deepEqual(encodeHeaderV1('ab'), Buffer.from([0x4b, 0x01, 2, 0x61, 0x62]));
    assert.equal(encodeHeaderV1('z'.repeat(50)).length, 53);
  });

  for (const [what, versionId] of [
    ['empty', ''],
    ['51 characters', 'a'.repeat(51)],
    ['a space', 'a b'],
    ['a control character', 'a\nb'],
    ['DEL', 'a\x7f'],
    ['non-ASCII', 'versión'],
  ] as const) {
    it(`refuses a version id that is ${what}, before drawing a nonce`, () => {
      let drawn = false;
      const random: Random = {
        bytes: (n) => {
          drawn = true;
          return randomBytes(n);
        },
      };
      assert.throws(() => encodeHeaderV1(versionId), /version id must be 1-50 printable ASCII characters/);
      assert.throws(
        () => sealV1({ key: newKey(32), keyId: KEY_ID, versionId, plaintext: Buffer.from('p'), aadContext: EMPTY, random }),
        /version id must be 1-50 printable ASCII characters/,
      );
      assert.equal(drawn, false);
    });
  }
});

describe('tampered ciphertexts all fail with the one invalid-ciphertext error', () => {
  const cases = [
    { name: 'AES-256, AAD, 20-char version id, 32-byte plaintext', size: 32, versionId: VERSION_ID, aad: Buffer.from('ctx'), length: 32 },
    { name: 'AES-128, no AAD, 1-char version id, 1-byte plaintext', size: 16, versionId: 'a', aad: EMPTY, length: 1 },
    { name: 'AES-192, AAD, 50-char version id, empty plaintext', size: 24, versionId: 'q'.repeat(50), aad: Buffer.from('c'), length: 0 },
  ] as const;

  for (const c of cases) {
    describe(c.name, () => {
      const key = newKey(c.size);
      const plaintext = randomBytes(c.length);
      const ciphertext = seal({ key, plaintext, aadContext: c.aad, versionId: c.versionId });
      const open = (ct: Buffer) => parseAndOpen({ key, ciphertext: ct, aadContext: c.aad });

      it('the untouched ciphertext opens (control)', () => {
        assert.ok(open(ciphertext).equals(plaintext));
      });

      it('every single bit flip', () => {
        for (let bit = 0; bit < ciphertext.length * 8; bit++) {
          assert.throws(() => open(flipBit(ciphertext, bit)), isInvalidCiphertext, `bit ${bit}`);
        }
      });

      it('every truncation 0 … len-1', () => {
        for (let n = 0; n < ciphertext.length; n++) {
          assert.throws(() => open(ciphertext.subarray(0, n)), isInvalidCiphertext, `length ${n}`);
        }
      });

      it('appended bytes', () => {
        for (const extra of [Buffer.of(0), Buffer.of(0xff), Buffer.alloc(16), randomBytes(100)]) {
          assert.throws(() => open(Buffer.concat([ciphertext, extra])), isInvalidCiphertext);
        }
      });
    });
  }

  describe('context mismatches', () => {
    const key = newKey(32);
    const plaintext = Buffer.from('the plaintext');
    const withAad = seal({ key, plaintext, aadContext: Buffer.from('context-A') });
    const withoutAad = seal({ key, plaintext });

    it('controls open', () => {
      assert.ok(parseAndOpen({ key, ciphertext: withAad, aadContext: Buffer.from('context-A') }).equals(plaintext));
      assert.ok(parseAndOpen({ key, ciphertext: withoutAad }).equals(plaintext));
    });

    it('a different AAD context', () => {
      for (const aad of ['context-B', 'context-', 'context-AA', 'CONTEXT-A']) {
        assert.throws(() => parseAndOpen({ key, ciphertext: withAad, aadContext: Buffer.from(aad) }), isInvalidCiphertext, aad);
      }
    });

    it('no AAD context when one was used', () => {
      assert.throws(() => parseAndOpen({ key, ciphertext: withAad }), isInvalidCiphertext);
    });

    it('an AAD context when none was used', () => {
      assert.throws(() => parseAndOpen({ key, ciphertext: withoutAad, aadContext: Buffer.of(0) }), isInvalidCiphertext);
    });

    it('another key id', () => {
      assert.throws(() => parseAndOpen({ key, ciphertext: withAad, aadContext: Buffer.from('context-A'), keyId: 'abjkey00000000000002' }), isInvalidCiphertext);
      assert.throws(() => parseAndOpen({ key, ciphertext: withoutAad, keyId: '' }), isInvalidCiphertext);
    });

    it('the key id / AAD boundary cannot be shifted (length prefixes)', () => {
      const ct = seal({ key, plaintext, keyId: 'abc', aadContext: Buffer.from('def') });
      assert.ok(parseAndOpen({ key, ciphertext: ct, keyId: 'abc', aadContext: Buffer.from('def') }).equals(plaintext));
      assert.throws(() => parseAndOpen({ key, ciphertext: ct, keyId: 'abcd', aadContext: Buffer.from('ef') }), isInvalidCiphertext);
      assert.throws(() => parseAndOpen({ key, ciphertext: ct, keyId: 'ab', aadContext: Buffer.from('cdef') }), isInvalidCiphertext);
    });

    it('another key of the same size', () => {
      assert.throws(() => parseAndOpen({ key: newKey(32), ciphertext: withoutAad }), isInvalidCiphertext);
    });
  });

  describe('the header is authenticated', () => {
    // Both versions share the key material: only the authenticated header can tell them apart.
    const key = newKey(32);
    const plaintext = Buffer.from('bound to its version');
    const a = seal({ key, plaintext, versionId: 'abjver0000000000000a' });

    for (const other of ['abjver0000000000000b', 'b', 'abjver0000000000000a0']) {
      it(`a header spliced from a ciphertext of version ${other}`, () => {
        const b = seal({ key, plaintext, versionId: other });
        const headerB = parseCiphertextV1(b).header;
        const spliced = Buffer.concat([headerB, a.subarray(parseCiphertextV1(a).header.length)]);
        assert.equal(parseCiphertextV1(spliced).versionId, other, 'the splice parses and names the other version');
        assert.throws(() => parseAndOpen({ key, ciphertext: spliced }), isInvalidCiphertext);
      });
    }
  });

  describe('rejected by parseCiphertextV1 before any key is needed', () => {
    const valid = seal({ key: newKey(32), plaintext: Buffer.from('p'), versionId: 'ver1' });
    const withByte = (i: number, value: number) => {
      const out = Buffer.from(valid);
      out[i] = value;
      return out;
    };

    const cases: [string, Buffer][] = [
      ['empty input', EMPTY],
      ['unknown magic 0x00', withByte(0, 0x00)],
      ['unknown magic 0x57 (a wrapped-material blob)', withByte(0, 0x57)],
      ['unknown magic 0x4c', withByte(0, 0x4c)],
      ['format byte 0x02', withByte(1, 0x02)],
      ['format byte 0x00', withByte(1, 0x00)],
      ['format byte 0xff', withByte(1, 0xff)],
      ['version id length 0', withByte(2, 0)],
      ['version id length 51', Buffer.concat([Buffer.of(0x4b, 0x01, 51), Buffer.alloc(51, 0x61), randomBytes(40)])],
      ['version id length 255', Buffer.concat([Buffer.of(0x4b, 0x01, 255), Buffer.alloc(255, 0x61), randomBytes(40)])],
      ['a space in the version id', withByte(4, 0x20)],
      ['a NUL in the version id', withByte(3, 0x00)],
      ['a high byte in the version id', withByte(3, 0xe9)],
      ['too short for nonce and tag', valid.subarray(0, 3 + 4 + 12 + 15)],
      ['only the header', valid.subarray(0, 7)],
      ['base64 text instead of bytes', Buffer.from(valid.toString('base64'), 'utf8')],
    ];

    for (const [what, bytes] of cases) {
      it(what, () => {
        assert.throws(() => parseCiphertextV1(bytes), isInvalidCiphertext);
      });
    }

    it('a ciphertext of exactly header + nonce + tag parses (empty plaintext)', () => {
      assert.equal(parseCiphertextV1(valid.subarray(0, 3 + 4 + 12 + 16)).sealed.length, 16);
    });
  });

  it('property: arbitrary bytes and random byte substitutions never yield anything but the one error', () => {
    const key = newKey(32);
    const valid = seal({ key, plaintext: Buffer.from('property plaintext'), aadContext: Buffer.from('p') });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, keepHeader) => {
        // With the real header in front, the bytes get past the parser and reach GCM.
        const ciphertext = keepHeader ? Buffer.concat([valid.subarray(0, 3 + VERSION_ID.length), bytes]) : Buffer.from(bytes);
        assert.throws(() => parseAndOpen({ key, ciphertext, aadContext: Buffer.from('p') }), isInvalidCiphertext);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 }), (i, delta) => {
        const ciphertext = Buffer.from(valid);
        ciphertext[i] = (ciphertext[i]! + delta) & 0xff;
        assert.throws(() => parseAndOpen({ key, ciphertext, aadContext: Buffer.from('p') }), isInvalidCiphertext);
      }),
      { numRuns: 500 },
    );
  });
});

describe('nonces', () => {
  it('2^16 encryptions of the same plaintext with the real CSPRNG never repeat a nonce', () => {
    const key = newKey(32);
    const plaintext = Buffer.from('same plaintext every time');
    const seen = new Set<string>();
    const headerLength = 3 + VERSION_ID.length;
    for (let i = 0; i < 2 ** 16; i++) {
      const ct = seal({ key, plaintext });
      seen.add(ct.toString('latin1', headerLength, headerLength + 12));
    }
    assert.equal(seen.size, 2 ** 16);
  });
});

describe('errors reveal nothing', () => {
  it('no failure path puts plaintext or key bytes into the error', () => {
    const keyBytes = randomBytes(32);
    const key = new SecretBytes(keyBytes);
    const plaintext = Buffer.from('PLAINTEXT-CANARY-0123456789-do-not-leak', 'utf8');
    const aadContext = Buffer.from('AAD-CANARY-context', 'utf8');
    const ciphertext = seal({ key, plaintext, aadContext });

    const errors: unknown[] = [];
    const collect = (fn: () => unknown) => {
      try {
        fn();
        assert.fail('expected a failure');
      } catch (e) {
        isInvalidCiphertext(e);
        errors.push(e);
      }
    };
    collect(() => parseAndOpen({ key, ciphertext: flipBit(ciphertext, 8 * (ciphertext.length - 1)), aadContext }));
    collect(() => parseAndOpen({ key, ciphertext: flipBit(ciphertext, 8 * 30), aadContext }));
    collect(() => parseAndOpen({ key, ciphertext, aadContext: EMPTY }));
    collect(() => parseAndOpen({ key, ciphertext, aadContext, keyId: 'other' }));
    collect(() => parseAndOpen({ key, ciphertext: ciphertext.subarray(0, 40), aadContext }));
    collect(() => parseCiphertextV1(Buffer.concat([Buffer.of(0x4b, 0x02), plaintext])));

    const forbidden = [
      plaintext.toString('utf8'),
      'PLAINTEXT-CANARY',
      plaintext.toString('hex'),
      plaintext.toString('base64').slice(0, 20),
      keyBytes.toString('hex'),
      keyBytes.toString('hex').slice(0, 16),
      keyBytes.toString('base64').slice(0, 16),
      'AAD-CANARY',
    ];
    for (const e of errors) {
      assert.ok(e instanceof KmsError);
      assert.equal(e.cause, undefined);
      const renderings = [e.message, String(e), e.stack ?? '', inspect(e, { showHidden: true, depth: 10 }), JSON.stringify(e)];
      for (const text of renderings) {
        for (const secret of forbidden) assert.equal(text.includes(secret), false, `error shows ${secret}`);
      }
    }
  });
});
