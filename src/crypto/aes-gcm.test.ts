import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GCM_NONCE_LENGTH, GCM_TAG_LENGTH, gcmOpen, gcmSeal, lengthPrefixed } from './aes-gcm.js';
import { SecretBytes } from './secret-bytes.js';

// Known answers from D. McGrew and J. Viega, "The Galois/Counter Mode of Operation (GCM)", the
// revised submission to NIST, Appendix B (test cases 4, 10, 13, 14 and 16). Checked independently
// of node with Python `cryptography` (AESGCM), and the ciphertext part of test case 16 with the
// openssl CLI, GCM's first data counter block being IV ‖ 00000002:
//   echo $P | xxd -r -p | openssl enc -aes-256-ctr -K $K -iv cafebabefacedbaddecaf88800000002 | xxd -p
const P60 =
  'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39';
const A20 = 'feedfacedeadbeeffeedfacedeadbeefabaddad2';
const IV = 'cafebabefacedbaddecaf888';
const K = 'feffe9928665731c6d6a8f9467308308';

const KNOWN_ANSWERS = [
  {
    name: 'test case 4 (AES-128, 60-byte plaintext, 20-byte AAD)',
    key: K,
    iv: IV,
    aad: A20,
    plaintext: P60,
    ciphertext:
      '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091',
    tag: '5bc94fbc3221a5db94fae95ae7121a47',
  },
  {
    name: 'test case 10 (AES-192, 60-byte plaintext, 20-byte AAD)',
    key: K + K.slice(0, 16),
    iv: IV,
    aad: A20,
    plaintext: P60,
    ciphertext:
      '3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710',
    tag: '2519498e80f1478f37ba55bd6d27618c',
  },
  {
    name: 'test case 13 (AES-256, zero key, empty plaintext)',
    key: '00'.repeat(32),
    iv: '00'.repeat(12),
    aad: '',
    plaintext: '',
    ciphertext: '',
    tag: '530f8afbc74536b9a963b4f1c4cb738b',
  },
  {
    name: 'test case 14 (AES-256, zero key, one zero block)',
    key: '00'.repeat(32),
    iv: '00'.repeat(12),
    aad: '',
    plaintext: '00'.repeat(16),
    ciphertext: 'cea7403d4d606b6e074ec5d3baf39d18',
    tag: 'd0d1c8a799996bf0265b98b5d48ab919',
  },
  {
    name: 'test case 16 (AES-256, 60-byte plaintext, 20-byte AAD)',
    key: K + K,
    iv: IV,
    aad: A20,
    plaintext: P60,
    ciphertext:
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
    tag: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
];

const hex = (s: string) => Buffer.from(s, 'hex');

describe('AES-GCM known answers (McGrew–Viega GCM spec, Appendix B)', () => {
  for (const v of KNOWN_ANSWERS) {
    it(`${v.name}: seal`, () => {
      const sealed = gcmSeal(new SecretBytes(hex(v.key)), hex(v.iv), hex(v.plaintext), hex(v.aad));
      assert.equal(sealed.toString('hex'), v.ciphertext + v.tag);
    });

    it(`${v.name}: open`, () => {
      const opened = gcmOpen(new SecretBytes(hex(v.key)), hex(v.iv), hex(v.ciphertext + v.tag), hex(v.aad));
      assert.ok(opened !== undefined);
      assert.equal(opened.toString('hex'), v.plaintext);
    });
  }
});

describe('gcmOpen fails closed', () => {
  const v = KNOWN_ANSWERS[4]!;
  const key = new SecretBytes(hex(v.key));
  const sealed = hex(v.ciphertext + v.tag);

  it('a flipped bit anywhere in ciphertext or tag', () => {
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const tampered = Buffer.from(sealed);
      tampered[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(gcmOpen(key, hex(v.iv), tampered, hex(v.aad)), undefined, `bit ${bit}`);
    }
  });

  it('other AAD, other nonce, other key', () => {
    assert.equal(gcmOpen(key, hex(v.iv), sealed, hex(v.aad).subarray(1)), undefined);
    assert.equal(gcmOpen(key, hex(v.iv), sealed, Buffer.alloc(0)), undefined);
    assert.equal(gcmOpen(key, hex('cafebabefacedbaddecaf889'), sealed, hex(v.aad)), undefined);
    assert.equal(gcmOpen(new SecretBytes(randomBytes(32)), hex(v.iv), sealed, hex(v.aad)), undefined);
  });

  it('shorter than a tag, or a nonce that is not 12 bytes', () => {
    for (let n = 0; n < GCM_TAG_LENGTH; n++) assert.equal(gcmOpen(key, hex(v.iv), sealed.subarray(0, n), hex(v.aad)), undefined);
    assert.equal(gcmOpen(key, hex(v.iv).subarray(0, 11), sealed, hex(v.aad)), undefined);
    assert.equal(gcmOpen(key, Buffer.concat([hex(v.iv), Buffer.alloc(4)]), sealed, hex(v.aad)), undefined);
  });

  it('a truncated tag', () => {
    assert.equal(gcmOpen(key, hex(v.iv), sealed.subarray(0, sealed.length - 1), hex(v.aad)), undefined);
  });
});

describe('key length', () => {
  it('16, 24 and 32 bytes select AES-128/192/256 (round trip)', () => {
    for (const n of [16, 24, 32]) {
      const key = new SecretBytes(randomBytes(n));
      const nonce = randomBytes(GCM_NONCE_LENGTH);
      const sealed = gcmSeal(key, nonce, Buffer.from('hi'), Buffer.from('aad'));
      assert.equal(sealed.length, 2 + GCM_TAG_LENGTH);
      assert.equal(gcmOpen(key, nonce, sealed, Buffer.from('aad'))?.toString(), 'hi');
    }
  });

  for (const n of [0, 1, 15, 17, 23, 25, 31, 33, 64]) {
    it(`a ${n}-byte key throws on seal and on open, naming only the length`, () => {
      const bytes = Buffer.alloc(n, 0xab);
      const expected = { name: 'Error', message: `AES-GCM key must be 16, 24 or 32 bytes, got ${n}` };
      assert.throws(() => gcmSeal(new SecretBytes(bytes), randomBytes(12), Buffer.from('p'), Buffer.alloc(0)), expected);
      assert.throws(() => gcmOpen(new SecretBytes(bytes), randomBytes(12), randomBytes(32), Buffer.alloc(0)), expected);
    });
  }
});

describe('lengthPrefixed', () => {
  it('prepends a 4-byte big-endian length', () => {
    assert.equal(lengthPrefixed(Buffer.alloc(0)).toString('hex'), '00000000');
    assert.equal(lengthPrefixed(Buffer.from('abc')).toString('hex'), '00000003616263');
    const big = lengthPrefixed(Buffer.alloc(0x01_02_03, 7));
    assert.equal(big.subarray(0, 4).toString('hex'), '00010203');
    assert.equal(big.length, 4 + 0x01_02_03);
  });

  it('keeps concatenations of different splits apart', () => {
    const split = (a: string, b: string) => Buffer.concat([lengthPrefixed(Buffer.from(a)), lengthPrefixed(Buffer.from(b))]);
    assert.notDeepEqual(split('ab', 'c'), split('a', 'bc'));
    assert.notDeepEqual(split('', 'abc'), split('abc', ''));
  });
});
