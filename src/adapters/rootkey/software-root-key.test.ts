import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { wrappedAad, wrappedRootKeyId } from '../../crypto/wrapped-material.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import type { Random } from '../../ports/random.js';
import { RootKeyError, readOrCreateRootKeyFile, readRootKeyFromEnv, softwareRootKey } from './software-root-key.js';
import { rootKeyContract } from '../../../test/contract/root-key.contract.js';

const csprng: Random = { bytes: (n) => randomBytes(n) };
const dir = mkdtempSync(join(tmpdir(), 'kmsd-rootkey-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
const freshPath = () => join(dir, `root-${++counter}.key`);

function writeKeyFile(bytes: Buffer, mode: number): string {
  const path = freshPath();
  writeFileSync(path, bytes, { mode: 0o600 });
  chmodSync(path, mode); // explicit: writeFileSync's mode is subject to the umask
  return path;
}

/** The error must name what is wrong but show none of the key's bytes, in any encoding. */
function assertRevealsNothing(text: string, ...secrets: Buffer[]): void {
  for (const s of secrets) {
    // One to three bytes are two to six hex characters: they occur in any text (the temp path) by chance.
    if (s.length < 4) continue;
    for (const form of [s.toString('hex'), s.toString('base64'), s.toString('base64').slice(0, 12), s.toString('hex').slice(0, 12)]) {
      assert.equal(text.includes(form), false, `"${text}" reveals secret bytes`);
    }
  }
}

function rootKeyError(check: (message: string) => void): (e: unknown) => true {
  return (e) => {
    assert.ok(e instanceof RootKeyError, `expected a RootKeyError, got ${inspect(e)}`);
    assert.equal(e.name, 'RootKeyError');
    check(e.message);
    return true;
  };
}

describe('readOrCreateRootKeyFile', () => {
  it('creates a missing file with mode 0600 holding 32 random bytes', () => {
    const path = freshPath();
    const { key, created } = readOrCreateRootKeyFile(path);
    assert.equal(created, true);
    assert.equal(key.length, 32);
    const st = statSync(path);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(st.size, 32);
    assert.deepEqual(readFileSync(path), key.exposeSecret());
    assert.notDeepEqual(key.exposeSecret(), Buffer.alloc(32), 'not all zeros (the local buffer was wiped, the key was not)');
  });

  it('re-reading the file gives the same bytes and the same root key id', () => {
    const path = freshPath();
    const first = readOrCreateRootKeyFile(path);
    const second = readOrCreateRootKeyFile(path);
    assert.equal(second.created, false);
    assert.deepEqual(second.key.exposeSecret(), first.key.exposeSecret());
    assert.equal(softwareRootKey(second.key, csprng).id, softwareRootKey(first.key, csprng).id);
  });

  it('two created files hold different keys with different ids', () => {
    const a = readOrCreateRootKeyFile(freshPath()).key;
    const b = readOrCreateRootKeyFile(freshPath()).key;
    assert.notDeepEqual(a.exposeSecret(), b.exposeSecret());
    assert.notEqual(softwareRootKey(a, csprng).id, softwareRootKey(b, csprng).id);
  });

  it('accepts an existing 0600 and 0400 file', () => {
    const bytes = randomBytes(32);
    for (const mode of [0o600, 0o400]) {
      const { key, created } = readOrCreateRootKeyFile(writeKeyFile(bytes, mode));
      assert.equal(created, false);
      assert.deepEqual(key.exposeSecret(), bytes);
    }
  });

  for (const mode of [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o666, 0o610]) {
    it(`refuses a file with mode ${mode.toString(8)}`, () => {
      const bytes = randomBytes(32);
      const path = writeKeyFile(bytes, mode);
      assert.throws(
        () => readOrCreateRootKeyFile(path),
        rootKeyError((m) => {
          assert.ok(m.includes(path), 'names the file');
          assert.ok(m.includes(mode.toString(8)), 'names the mode');
          assertRevealsNothing(m, bytes);
        }),
      );
    });
  }

  for (const length of [0, 1, 16, 31, 33, 44, 64]) {
    it(`refuses a ${length}-byte file`, () => {
      const bytes = randomBytes(length);
      const path = writeKeyFile(bytes, 0o600);
      assert.throws(
        () => readOrCreateRootKeyFile(path),
        rootKeyError((m) => {
          assert.ok(m.includes(path));
          assert.ok(m.includes(`holds ${length}`));
          assertRevealsNothing(m, bytes);
        }),
      );
    });
  }
});

describe('readRootKeyFromEnv', () => {
  const VAR = 'KMSD_TEST_ROOT_KEY';

  it('accepts base64 of 32 bytes, with surrounding whitespace too', () => {
    const bytes = randomBytes(32);
    assert.deepEqual(readRootKeyFromEnv(VAR, { [VAR]: bytes.toString('base64') }).exposeSecret(), bytes);
    assert.deepEqual(readRootKeyFromEnv(VAR, { [VAR]: `  ${bytes.toString('base64')}\n` }).exposeSecret(), bytes);
  });

  it('reads the variable it is told to, from the env it is given', () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const env = { OTHER: a.toString('base64'), [VAR]: b.toString('base64') };
    assert.deepEqual(readRootKeyFromEnv(VAR, env).exposeSecret(), b);
  });

  for (const [what, env] of [
    ['unset', {}],
    ['empty', { [VAR]: '' }],
  ] as const) {
    it(`refuses an ${what} variable, naming it`, () => {
      assert.throws(
        () => readRootKeyFromEnv(VAR, env),
        rootKeyError((m) => assert.equal(m, `environment variable ${VAR} (the root key) is not set`)),
      );
    });
  }

  const notBase64 = [
    'this is not base64!',
    `${randomBytes(32).toString('base64url')}-_`,
    `${randomBytes(32).toString('hex')}:x`,
    '====',
    `${randomBytes(32).toString('base64')}===`,
  ];
  for (const value of notBase64) {
    it(`refuses a value that is not base64 (${value.length} chars) without echoing it`, () => {
      assert.throws(
        () => readRootKeyFromEnv(VAR, { [VAR]: value }),
        rootKeyError((m) => {
          assert.equal(m, `environment variable ${VAR} is not base64`);
          assert.equal(m.includes(value), false);
        }),
      );
    });
  }

  for (const length of [1, 16, 24, 31, 33, 64]) {
    it(`refuses base64 of ${length} bytes without echoing it`, () => {
      const bytes = randomBytes(length);
      const value = bytes.toString('base64');
      assert.throws(
        () => readRootKeyFromEnv(VAR, { [VAR]: value }),
        rootKeyError((m) => {
          assert.ok(m.includes(VAR), 'names the variable');
          assert.ok(m.includes(`holds ${length}`));
          assert.equal(m.includes(value), false);
          assertRevealsNothing(m, bytes);
        }),
      );
    });
  }

  it('the same bytes from a file and from the environment give the same root key id', () => {
    const bytes = randomBytes(32);
    const fromFile = readOrCreateRootKeyFile(writeKeyFile(bytes, 0o600)).key;
    const fromEnv = readRootKeyFromEnv(VAR, { [VAR]: bytes.toString('base64') });
    assert.equal(softwareRootKey(fromFile, csprng).id, softwareRootKey(fromEnv, csprng).id);
  });
});

describe('softwareRootKey', () => {
  const aad = wrappedAad('abjkey00000000000001', 'abjver00000000000001');

  it('has a sw:<16 hex> id that does not contain the key', () => {
    const bytes = randomBytes(32);
    const { id } = softwareRootKey(new SecretBytes(bytes), csprng);
    assert.match(id, /^sw:[0-9a-f]{16}$/);
    assertRevealsNothing(id, bytes.subarray(0, 8), bytes.subarray(8, 16), bytes.subarray(16, 24), bytes.subarray(24));
  });

  it('the id is a fixed function of the key bytes (stored blobs name it, so it must never change)', () => {
    // "sw:" + first 16 hex digits of HMAC-SHA256(key, "kmsd root key id"), computed with Python's hmac:
    //   hmac.new(bytes(32), b'kmsd root key id', hashlib.sha256).hexdigest()[:16]
    assert.equal(softwareRootKey(new SecretBytes(Buffer.alloc(32)), csprng).id, 'sw:a65ff554ab5d0e8c');
    assert.equal(softwareRootKey(new SecretBytes(Buffer.alloc(32, 1)), csprng).id, 'sw:0a39dce9768f7e58');
  });

  for (const length of [0, 16, 24, 31, 33]) {
    it(`refuses a ${length}-byte key`, () => {
      assert.throws(
        () => softwareRootKey(new SecretBytes(Buffer.alloc(length, 7)), csprng),
        rootKeyError((m) => assert.equal(m, `root key must be 32 bytes, got ${length}`)),
      );
    });
  }

  it('wraps and unwraps; the blob names this root key', async () => {
    const provider = softwareRootKey(new SecretBytes(randomBytes(32)), csprng);
    const material = new SecretBytes(randomBytes(32));
    const wrapped = await provider.wrap(material, aad);
    assert.equal(wrappedRootKeyId(wrapped), provider.id);
    const out = await provider.unwrap(wrapped, aad);
    assert.deepEqual(out.exposeSecret(), material.exposeSecret());
  });

  it('unwrap with another root key, other AAD or a damaged blob → KmsError INTERNAL that reveals nothing', async () => {
    const keyA = randomBytes(32);
    const keyB = randomBytes(32);
    const a = softwareRootKey(new SecretBytes(keyA), csprng);
    const b = softwareRootKey(new SecretBytes(keyB), csprng);
    const materialBytes = randomBytes(32);
    const wrapped = await a.wrap(new SecretBytes(materialBytes), aad);

    const failures = [
      () => b.unwrap(wrapped, aad),
      () => a.unwrap(wrapped, wrappedAad('abjkey00000000000002', 'abjver00000000000001')),
      () => a.unwrap(wrapped.subarray(0, wrapped.length - 1), aad),
      () => a.unwrap(Buffer.alloc(0), aad),
    ];
    for (const fail of failures) {
      await assert.rejects(fail, (e: unknown) => {
        assert.ok(e instanceof KmsError, `expected a KmsError, got ${inspect(e)}`);
        assert.equal(e.code, Code.Internal);
        assert.equal(e.message, 'stored key material does not unwrap with the configured root key');
        assert.equal(e.cause, undefined);
        const rendered = [e.message, String(e), e.stack ?? '', inspect(e, { showHidden: true }), JSON.stringify(e)].join('\n');
        assertRevealsNothing(rendered, keyA, keyB, materialBytes, wrapped);
        for (const id of [a.id, b.id]) assert.equal(rendered.includes(id), false, 'does not name a root key id');
        return true;
      });
    }
  });
});

rootKeyContract('software (file: and env:)', async () => ({
  provider: softwareRootKey(new SecretBytes(randomBytes(32)), csprng),
  other: softwareRootKey(new SecretBytes(randomBytes(32)), csprng),
  close() {},
}));
