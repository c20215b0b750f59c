import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { cryptoRandom } from '../../adapters/random.js';
import { softwareRootKey } from '../../adapters/rootkey/software-root-key.js';
import { openSqliteStore } from '../../adapters/store-sqlite/sqlite-store.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { DAY_MS, type SymmetricAlgorithm } from '../../domain/key.js';
import type { Principal } from '../../domain/principal.js';
import { GLOBAL_SCOPE } from '../../domain/access.js';
import { Code, INVALID_CIPHERTEXT_MESSAGE, isKmsError } from '../../errors/kms-error.js';
import type { RootKeyProvider } from '../../ports/root-key.js';
import type { Store } from '../../ports/store.js';
import { bindingAuthorizer } from '../access/authorizer.js';
import type { CallContext } from '../context.js';
import { KeyCache } from '../keys/key-cache.js';
import { keyService, type KeyService } from '../keys/key-service.js';
import { cryptoService, type CryptoService } from './crypto-service.js';

// SymmetricCryptoService (SPEC.md §4.2) over a real store, counted: a warm call touches neither
// the store nor the root key, and nothing a client gets back or sent in is wiped under it.

const T0 = Date.UTC(2026, 0, 1);
const admin: Principal = { id: 'ajeadmin', type: 'userAccount', name: 'admin', createdAt: T0 };
const user: Principal = { id: 'ajeuser', type: 'userAccount', name: 'user', createdAt: T0 };
const ctx: CallContext = { caller: { kind: 'principal', principal: admin }, requestId: 'req' };
const asUser: CallContext = { caller: { kind: 'principal', principal: user }, requestId: 'req-user' };
const NO_AAD: Buffer = Buffer.alloc(0);

/** Counts every call to any method of the store. */
function counted(store: Store, calls: Map<string, number>): Store {
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

let raw: Store;
let storeCalls: Map<string, number>;
let unwraps: number;
let keys: KeyService;
let crypto: CryptoService;
let keysCache: KeyCache;

beforeEach(async () => {
  raw = openSqliteStore(':memory:');
  await raw.changeBindings({ scope: GLOBAL_SCOPE, deltas: [{ action: 'ADD', binding: { roleId: 'kms.admin', subject: { type: 'userAccount', id: admin.id } } }] });
  storeCalls = new Map();
  unwraps = 0;
  const store = counted(raw, storeCalls);
  const real = softwareRootKey(new SecretBytes(randomBytes(32)), cryptoRandom);
  const rootKey: RootKeyProvider = {
    id: real.id,
    wrap: (m, aad) => real.wrap(m, aad),
    unwrap: (w, aad) => {
      unwraps++;
      return real.unwrap(w, aad);
    },
  };
  const cache = new KeyCache(store, rootKey, { maxKeys: 100, ttlMs: 60_000 });
  keysCache = cache;
  const clock = { now: () => T0 };
  const authorizer = bindingAuthorizer(store);
  keys = keyService({ store, rootKey, cache, authorizer, clock, random: cryptoRandom });
  crypto = cryptoService({ cache, authorizer, random: cryptoRandom });
});

afterEach(async () => {
  await raw.close();
});

const totalStoreCalls = () => [...storeCalls.values()].reduce((a, b) => a + b, 0);

async function newKey(algorithm: SymmetricAlgorithm = 'AES_256'): Promise<{ keyId: string; v1: string }> {
  const op = await keys.create(ctx, { folderId: 'b1g', name: '', description: '', labels: {}, defaultAlgorithm: algorithm, deletionProtection: false });
  assert.equal(op.metadata.type, 'CreateSymmetricKeyMetadata');
  return { keyId: op.metadata.keyId, v1: op.metadata.primaryVersionId };
}

async function rejectsWith(promise: Promise<unknown>, code: Code, message?: string | RegExp): Promise<string> {
  let seen = '';
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${Code[code]}, got ${Code[e.code]}: ${e.message}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    seen = e.message;
    return true;
  });
  return seen;
}

const encrypt = (keyId: string, plaintext: Buffer, aadContext: Buffer = NO_AAD, versionId = '') =>
  crypto.encrypt(ctx, { keyId, versionId, aadContext, plaintext });
const decrypt = (keyId: string, ciphertext: Buffer, aadContext: Buffer = NO_AAD) => crypto.decrypt(ctx, { keyId, aadContext, ciphertext });

describe('encrypt and decrypt', () => {
  it('round-trip with the primary version, whose id the answer and the ciphertext carry', async () => {
    for (const alg of ['AES_128', 'AES_192', 'AES_256'] as const) {
      const { keyId, v1 } = await newKey(alg);
      const aad = Buffer.from('context');
      const enc = await encrypt(keyId, Buffer.from('hello'), aad);
      assert.equal(enc.keyId, keyId);
      assert.equal(enc.versionId, v1);
      assert.ok(enc.ciphertext.includes(Buffer.from(v1)));
      const dec = await decrypt(keyId, enc.ciphertext, aad);
      assert.deepEqual(dec, { keyId, versionId: v1, plaintext: Buffer.from('hello') });
    }
  });

  it('a warm Encrypt makes no store call and no unwrap', async () => {
    const { keyId } = await newKey();
    await encrypt(keyId, Buffer.from('warm up'));
    storeCalls.clear();
    unwraps = 0;
    for (let i = 0; i < 10; i++) await encrypt(keyId, Buffer.from(`message ${i}`));
    assert.equal(totalStoreCalls(), 0, `store calls: ${JSON.stringify([...storeCalls])}`);
    assert.equal(unwraps, 0);
  });

  it('a warm Decrypt makes no store call either, and no crypto call ever writes', async () => {
    const { keyId } = await newKey();
    const { ciphertext } = await encrypt(keyId, Buffer.from('x'));
    await decrypt(keyId, ciphertext);
    storeCalls.clear();
    await decrypt(keyId, ciphertext);
    await crypto.generateDataKey(ctx, { keyId, versionId: '', aadContext: NO_AAD, dataKeySpec: undefined, skipPlaintext: false });
    await crypto.reEncrypt(ctx, { keyId, versionId: '', aadContext: NO_AAD, sourceKeyId: keyId, sourceAadContext: NO_AAD, ciphertext });
    assert.equal(totalStoreCalls(), 0, `store calls: ${JSON.stringify([...storeCalls])}`);
  });

  it('concurrent cold Encrypts read the key once', async () => {
    const { keyId } = await newKey();
    storeCalls.clear();
    await Promise.all(Array.from({ length: 20 }, (_, i) => encrypt(keyId, Buffer.from(`m${i}`))));
    assert.deepEqual([...storeCalls], [['getKeyWithVersions', 1]]);
    assert.equal(unwraps, 1);
  });

  it('a cold key costs one store read (the key with its versions) and one unwrap per version used', async () => {
    // Issue #7: a cold key's first call costs no more than one store read and one unwrap.
    const { keyId, v1 } = await newKey();
    const old = await encrypt(keyId, Buffer.from('under v1'));
    const v2 = (await keys.rotate(ctx, keyId)).metadata;
    assert.equal(v2.type, 'RotateSymmetricKeyMetadata');
    for (const call of ['encrypt', 'decrypt', 'generateDataKey', 'reEncrypt'] as const) {
      keysCache.clear(); // cold again: as after a restart, an eviction or a change elsewhere
      storeCalls.clear();
      unwraps = 0;
      if (call === 'encrypt') assert.equal((await encrypt(keyId, Buffer.from('x'))).versionId, v2.newPrimaryVersionId);
      if (call === 'decrypt') assert.equal((await decrypt(keyId, old.ciphertext)).versionId, v1, 'an older version, read with the key');
      if (call === 'generateDataKey') await crypto.generateDataKey(ctx, { keyId, versionId: '', aadContext: NO_AAD, dataKeySpec: undefined, skipPlaintext: false });
      if (call === 'reEncrypt') {
        // Needs two versions: v1 to open the ciphertext, the primary to seal it again.
        await crypto.reEncrypt(ctx, { keyId, versionId: '', aadContext: NO_AAD, sourceKeyId: keyId, sourceAadContext: NO_AAD, ciphertext: old.ciphertext });
      }
      assert.deepEqual([...storeCalls], [['getKeyWithVersions', 1]], `${call}: store calls`);
      assert.equal(unwraps, call === 'reEncrypt' ? 2 : 1, `${call}: unwraps`);
    }
    // Warm now: the other version's first use unwraps it, and still reads nothing.
    storeCalls.clear();
    unwraps = 0;
    await encrypt(keyId, Buffer.from('x'), NO_AAD, v1);
    await encrypt(keyId, Buffer.from('x'));
    assert.equal(totalStoreCalls(), 0);
    assert.equal(unwraps, 0, 'both versions were unwrapped by the reEncrypt above');
  });

  it('sees a rotation at once: the next Encrypt uses the new primary, old ciphertexts still decrypt', async () => {
    const { keyId, v1 } = await newKey();
    const old = await encrypt(keyId, Buffer.from('before'));
    const rotated = await keys.rotate(ctx, keyId);
    assert.equal(rotated.metadata.type, 'RotateSymmetricKeyMetadata');
    const v2 = rotated.metadata.newPrimaryVersionId;
    assert.equal((await encrypt(keyId, Buffer.from('after'))).versionId, v2);
    assert.deepEqual(await decrypt(keyId, old.ciphertext), { keyId, versionId: v1, plaintext: Buffer.from('before') });
    assert.equal((await encrypt(keyId, Buffer.from('named'), NO_AAD, v1)).versionId, v1, 'an older ACTIVE version may be named');
  });

  it('refuses an INACTIVE key, a deleted key and a version scheduled for destruction', async () => {
    const { keyId, v1 } = await newKey();
    const { ciphertext } = await encrypt(keyId, Buffer.from('x'));
    await keys.rotate(ctx, keyId);
    await keys.scheduleVersionDestruction(ctx, keyId, v1, DAY_MS);
    await rejectsWith(decrypt(keyId, ciphertext), Code.FailedPrecondition, /SCHEDULED_FOR_DESTRUCTION/);
    await rejectsWith(encrypt(keyId, Buffer.from('x'), NO_AAD, v1), Code.FailedPrecondition);

    const inactive = await newKey();
    await keys.update(ctx, {
      keyId: inactive.keyId,
      fields: new Set(['status']),
      name: '',
      description: '',
      status: 'INACTIVE',
      labels: {},
      defaultAlgorithm: undefined,
      deletionProtection: false,
    });
    await rejectsWith(encrypt(inactive.keyId, Buffer.from('x')), Code.FailedPrecondition, /INACTIVE/);

    const deleted = await newKey();
    await encrypt(deleted.keyId, Buffer.from('warm'));
    await keys.delete(ctx, deleted.keyId);
    await rejectsWith(encrypt(deleted.keyId, Buffer.from('x')), Code.NotFound);
    await rejectsWith(encrypt('abjnosuchkey', Buffer.from('x')), Code.NotFound);
    await rejectsWith(encrypt(keyId, Buffer.from('x'), NO_AAD, 'abjnosuchversion'), Code.NotFound);
  });

  it('refuses a non-admin principal', async () => {
    const { keyId } = await newKey();
    const { ciphertext } = await encrypt(keyId, Buffer.from('x'));
    await rejectsWith(crypto.encrypt(asUser, { keyId, versionId: '', aadContext: NO_AAD, plaintext: Buffer.from('x') }), Code.PermissionDenied);
    await rejectsWith(crypto.decrypt(asUser, { keyId, aadContext: NO_AAD, ciphertext }), Code.PermissionDenied);
  });
});

describe('invalid ciphertexts', () => {
  it('one whose version belongs to another key gets the generic invalid-ciphertext error', async () => {
    const a = await newKey();
    const b = await newKey();
    const { ciphertext } = await encrypt(a.keyId, Buffer.from('for a only'));
    await rejectsWith(decrypt(b.keyId, ciphertext), Code.InvalidArgument, INVALID_CIPHERTEXT_MESSAGE);
  });

  it('tampering, a wrong AAD, garbage and a forged version id all get the same answer', async () => {
    const a = await newKey();
    const { ciphertext } = await encrypt(a.keyId, Buffer.from('secret'), Buffer.from('aad'));
    const tampered = Buffer.from(ciphertext);
    tampered[tampered.length - 1]! ^= 1;
    const forged = Buffer.from(ciphertext);
    forged[forged.length - 20]! ^= 0xff;
    const cases: [string, Buffer, Buffer][] = [
      ['tampered tag', tampered, Buffer.from('aad')],
      ['tampered body', forged, Buffer.from('aad')],
      ['wrong AAD', ciphertext, Buffer.from('other')],
      ['missing AAD', ciphertext, NO_AAD],
      ['garbage', Buffer.from('not a ciphertext at all'), NO_AAD],
      ['truncated', ciphertext.subarray(0, 20), Buffer.from('aad')],
    ];
    for (const [, ct, aad] of cases) await rejectsWith(decrypt(a.keyId, ct, aad), Code.InvalidArgument, INVALID_CIPHERTEXT_MESSAGE);
  });
});

describe('reEncrypt', () => {
  it('moves a ciphertext to another key and leaves every buffer the caller sees intact', async () => {
    const src = await newKey();
    const dst = await newKey('AES_128');
    const plaintext = Buffer.from('move me to the new key');
    const { ciphertext } = await encrypt(src.keyId, plaintext, Buffer.from('src-aad'));
    const input = { ciphertext: Buffer.from(ciphertext), aadContext: Buffer.from('dst-aad'), sourceAadContext: Buffer.from('src-aad') };
    const copies = { ciphertext: Buffer.from(input.ciphertext), aadContext: Buffer.from(input.aadContext), sourceAadContext: Buffer.from(input.sourceAadContext) };

    const out = await crypto.reEncrypt(ctx, { keyId: dst.keyId, versionId: '', sourceKeyId: src.keyId, ...input });
    await nextTurn();
    assert.deepEqual(input, copies, 'inputs untouched');
    assert.equal(out.keyId, dst.keyId);
    assert.equal(out.versionId, dst.v1);
    assert.equal(out.sourceKeyId, src.keyId);
    assert.equal(out.sourceVersionId, src.v1);
    const kept = Buffer.from(out.ciphertext);
    await nextTurn();
    assert.deepEqual(out.ciphertext, kept, 'the new ciphertext is not wiped after the call');
    assert.deepEqual((await decrypt(dst.keyId, out.ciphertext, Buffer.from('dst-aad'))).plaintext, plaintext);
    assert.ok(!out.ciphertext.includes(plaintext), 'no plaintext in the answer');
  });

  it('needs the source AAD and the source key', async () => {
    const src = await newKey();
    const dst = await newKey();
    const { ciphertext } = await encrypt(src.keyId, Buffer.from('x'), Buffer.from('aad'));
    const base = { keyId: dst.keyId, versionId: '', aadContext: NO_AAD, ciphertext };
    await rejectsWith(crypto.reEncrypt(ctx, { ...base, sourceKeyId: src.keyId, sourceAadContext: NO_AAD }), Code.InvalidArgument, INVALID_CIPHERTEXT_MESSAGE);
    await rejectsWith(crypto.reEncrypt(ctx, { ...base, sourceKeyId: dst.keyId, sourceAadContext: Buffer.from('aad') }), Code.InvalidArgument, INVALID_CIPHERTEXT_MESSAGE);
  });

  it('the plaintext handed to encrypt and the plaintext decrypt returns are never wiped', async () => {
    const { keyId } = await newKey();
    const plaintext = Buffer.from('keep me');
    const { ciphertext } = await encrypt(keyId, plaintext);
    const dec = await decrypt(keyId, ciphertext);
    await crypto.reEncrypt(ctx, { keyId, versionId: '', aadContext: NO_AAD, sourceKeyId: keyId, sourceAadContext: NO_AAD, ciphertext });
    await nextTurn();
    assert.deepEqual(plaintext, Buffer.from('keep me'));
    assert.deepEqual(dec.plaintext, Buffer.from('keep me'));
  });
});

describe('generateDataKey', () => {
  const LENGTHS: [SymmetricAlgorithm | undefined, number][] = [
    ['AES_128', 16],
    ['AES_192', 24],
    ['AES_256', 32],
    ['AES_256_HSM', 32],
    ['GOST_R_3412_2015_K', 32],
    [undefined, 32],
  ];

  for (const [spec, length] of LENGTHS) {
    it(`${spec ?? 'unspecified'}: a ${length}-byte data key whose ciphertext decrypts to it`, async () => {
      const { keyId, v1 } = await newKey();
      const aad = Buffer.from('dek-aad');
      const out = await crypto.generateDataKey(ctx, { keyId, versionId: '', aadContext: aad, dataKeySpec: spec, skipPlaintext: false });
      assert.equal(out.keyId, keyId);
      assert.equal(out.versionId, v1);
      assert.equal(out.dataKeyPlaintext?.length, length);
      const kept = Buffer.from(out.dataKeyPlaintext!);
      await nextTurn();
      assert.deepEqual(out.dataKeyPlaintext, kept, 'not wiped after the call');
      assert.notDeepEqual(kept, Buffer.alloc(length), 'not all zeros');
      assert.deepEqual((await decrypt(keyId, out.dataKeyCiphertext, aad)).plaintext, kept);
    });
  }

  it('gives fresh keys every time', async () => {
    const { keyId } = await newKey();
    const gen = () => crypto.generateDataKey(ctx, { keyId, versionId: '', aadContext: NO_AAD, dataKeySpec: 'AES_256', skipPlaintext: false });
    const [a, b] = await Promise.all([gen(), gen()]);
    assert.notDeepEqual(a.dataKeyPlaintext, b.dataKeyPlaintext);
  });

  it('skipPlaintext leaves out the plaintext but the ciphertext still holds the key', async () => {
    const { keyId } = await newKey();
    const out = await crypto.generateDataKey(ctx, { keyId, versionId: '', aadContext: NO_AAD, dataKeySpec: 'AES_128', skipPlaintext: true });
    assert.equal('dataKeyPlaintext' in out, false);
    const dec = await decrypt(keyId, out.dataKeyCiphertext);
    assert.equal(dec.plaintext.length, 16);
    assert.notDeepEqual(dec.plaintext, Buffer.alloc(16));
  });

  it('honours an explicit version', async () => {
    const { keyId, v1 } = await newKey();
    await keys.rotate(ctx, keyId);
    const out = await crypto.generateDataKey(ctx, { keyId, versionId: v1, aadContext: NO_AAD, dataKeySpec: undefined, skipPlaintext: true });
    assert.equal(out.versionId, v1);
  });
});
