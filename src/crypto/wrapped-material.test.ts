import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Random } from '../ports/random.js';
import { SecretBytes } from './secret-bytes.js';
import { unwrapV1, wrapV1, wrappedAad, wrappedRootKeyId } from './wrapped-material.js';

const csprng: Random = { bytes: (n) => randomBytes(n) };
const ROOT_ID = 'sw:0123456789abcdef';
const KEY_ID = 'abjkey00000000000001';
const VERSION_ID = 'abjver00000000000001';

function setup(materialLength = 32) {
  const rootKey = new SecretBytes(randomBytes(32));
  const material = new SecretBytes(randomBytes(materialLength));
  const aad = wrappedAad(KEY_ID, VERSION_ID);
  const wrapped = wrapV1({ rootKey, rootKeyId: ROOT_ID, material, aad, random: csprng });
  return { rootKey, material, aad, wrapped };
}

describe('wrapV1 / unwrapV1', () => {
  for (const n of [16, 24, 32]) {
    it(`round trip of ${n}-byte material`, () => {
      const { rootKey, material, aad, wrapped } = setup(n);
      const out = unwrapV1({ rootKey, rootKeyId: ROOT_ID, wrapped, aad });
      assert.ok(out instanceof SecretBytes);
      assert.deepEqual(out.exposeSecret(), material.exposeSecret());
      assert.notEqual(out.exposeSecret(), material.exposeSecret());
    });
  }

  it('writes the documented layout: 0x57, 0x01, R, root key id, nonce from Random, sealed material ‖ tag', () => {
    const nonce = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaab', 'hex');
    const calls: number[] = [];
    const random: Random = {
      bytes(n) {
        calls.push(n);
        return Buffer.from(nonce);
      },
    };
    const material = new SecretBytes(randomBytes(32));
    const wrapped = wrapV1({ rootKey: new SecretBytes(randomBytes(32)), rootKeyId: ROOT_ID, material, aad: wrappedAad(KEY_ID, VERSION_ID), random });
    assert.deepEqual(calls, [12]);
    const header = Buffer.concat([Buffer.of(0x57, 0x01, ROOT_ID.length), Buffer.from(ROOT_ID, 'ascii')]);
    assert.deepEqual(wrapped.subarray(0, header.length), header);
    assert.deepEqual(wrapped.subarray(header.length, header.length + 12), nonce);
    assert.equal(wrapped.length, header.length + 12 + 32 + 16);
    assert.equal(wrapped.indexOf(material.exposeSecret().subarray(0, 8)), -1, 'material is not stored in the clear');
  });

  it('two wraps of the same material differ (fresh nonce)', () => {
    const rootKey = new SecretBytes(randomBytes(32));
    const material = new SecretBytes(randomBytes(32));
    const aad = wrappedAad(KEY_ID, VERSION_ID);
    const a = wrapV1({ rootKey, rootKeyId: ROOT_ID, material, aad, random: csprng });
    const b = wrapV1({ rootKey, rootKeyId: ROOT_ID, material, aad, random: csprng });
    assert.notDeepEqual(a, b);
  });
});

describe('wrappedAad binds the key id and the version id', () => {
  const { rootKey, wrapped } = setup();
  const unwrapWith = (aad: Buffer) => unwrapV1({ rootKey, rootKeyId: ROOT_ID, wrapped, aad });

  it('the right key and version unwrap (control)', () => {
    assert.ok(unwrapWith(wrappedAad(KEY_ID, VERSION_ID)) !== undefined);
  });

  it('a blob copied to another key fails', () => {
    assert.equal(unwrapWith(wrappedAad('abjkey00000000000002', VERSION_ID)), undefined);
  });

  it('a blob copied to another version fails', () => {
    assert.equal(unwrapWith(wrappedAad(KEY_ID, 'abjver00000000000002')), undefined);
  });

  it('swapping key id and version id fails', () => {
    assert.equal(unwrapWith(wrappedAad(VERSION_ID, KEY_ID)), undefined);
  });

  it('empty AAD fails', () => {
    assert.equal(unwrapWith(Buffer.alloc(0)), undefined);
  });

  it('the key id / version id boundary cannot shift', () => {
    assert.notDeepEqual(wrappedAad('ab', 'c'), wrappedAad('a', 'bc'));
    const r = setup();
    const blob = wrapV1({ rootKey: r.rootKey, rootKeyId: ROOT_ID, material: r.material, aad: wrappedAad('ab', 'c'), random: csprng });
    assert.ok(unwrapV1({ rootKey: r.rootKey, rootKeyId: ROOT_ID, wrapped: blob, aad: wrappedAad('ab', 'c') }) !== undefined);
    assert.equal(unwrapV1({ rootKey: r.rootKey, rootKeyId: ROOT_ID, wrapped: blob, aad: wrappedAad('a', 'bc') }), undefined);
  });

  it('is lp(utf8 key id) ‖ lp(utf8 version id)', () => {
    assert.equal(wrappedAad('k', 'vv').toString('hex'), '000000016b000000027676');
  });
});

describe('the root key', () => {
  const { rootKey, aad, wrapped } = setup();

  it('another root key id with the same bytes fails', () => {
    assert.equal(unwrapV1({ rootKey, rootKeyId: 'sw:fedcba9876543210', wrapped, aad }), undefined);
  });

  it('another root key with the same id fails', () => {
    assert.equal(unwrapV1({ rootKey: new SecretBytes(randomBytes(32)), rootKeyId: ROOT_ID, wrapped, aad }), undefined);
  });

  it('rewriting the id in the header to match the unwrapping id fails (the header is authenticated)', () => {
    const otherId = 'sw:fedcba9876543210'; // same length, so only the id bytes change
    const rewritten = Buffer.concat([Buffer.of(0x57, 0x01, otherId.length), Buffer.from(otherId, 'ascii'), wrapped.subarray(3 + ROOT_ID.length)]);
    assert.equal(wrappedRootKeyId(rewritten), otherId);
    assert.equal(unwrapV1({ rootKey, rootKeyId: otherId, wrapped: rewritten, aad }), undefined);
  });

  it('wrappedRootKeyId reads the id, and undefined for anything that is not a v1 blob', () => {
    assert.equal(wrappedRootKeyId(wrapped), ROOT_ID);
    assert.equal(wrappedRootKeyId(Buffer.alloc(0)), undefined);
    assert.equal(wrappedRootKeyId(Buffer.of(0x57, 0x01)), undefined);
    assert.equal(wrappedRootKeyId(Buffer.concat([Buffer.of(0x4b), wrapped.subarray(1)])), undefined);
    assert.equal(wrappedRootKeyId(Buffer.concat([Buffer.of(0x57, 0x02), wrapped.subarray(2)])), undefined);
    assert.equal(wrappedRootKeyId(wrapped.subarray(0, 3 + ROOT_ID.length - 1)), undefined, 'header cut short');
    assert.equal(wrappedRootKeyId(wrapped.subarray(0, 3 + ROOT_ID.length)), ROOT_ID);
    assert.equal(wrappedRootKeyId(Buffer.of(0x57, 0x01, 0)), '');
  });
});

describe('tampered blobs never unwrap', () => {
  const { rootKey, aad, wrapped } = setup();
  const unwrap = (blob: Buffer) => unwrapV1({ rootKey, rootKeyId: ROOT_ID, wrapped: blob, aad });

  it('every single bit flip', () => {
    for (let bit = 0; bit < wrapped.length * 8; bit++) {
      const tampered = Buffer.from(wrapped);
      tampered[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(unwrap(tampered), undefined, `bit ${bit}`);
    }
  });

  it('every truncation', () => {
    for (let n = 0; n < wrapped.length; n++) assert.equal(unwrap(wrapped.subarray(0, n)), undefined, `length ${n}`);
  });

  it('appended bytes', () => {
    assert.equal(unwrap(Buffer.concat([wrapped, Buffer.of(0)])), undefined);
    assert.equal(unwrap(Buffer.concat([wrapped, randomBytes(16)])), undefined);
  });
});
