import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { cryptoRandom } from '../adapters/random.js';
import { softwareRootKey } from '../adapters/rootkey/software-root-key.js';
import { openSqliteStore } from '../adapters/store-sqlite/sqlite-store.js';
import { SecretBytes } from '../crypto/secret-bytes.js';
import { wrappedAad } from '../crypto/wrapped-material.js';
import { DAY_MS } from '../domain/key.js';
import type { RootKeyProvider } from '../ports/root-key.js';
import type { Store } from '../ports/store.js';
import { grantAllAuthorizer } from '../services/access/authorizer.js';
import { keyService, type KeyService } from '../services/keys/key-service.js';
import { applySeedFile, parseSeedFile, SeedError } from './seed-file.js';

// --seed FILE (DESIGN.md §2): keys with fixed ids and optional fixed material, from YAML or JSON,
// created if missing. A bad entry names its place in the file and the field.

const T0 = Date.UTC(2026, 0, 1);
const dir = mkdtempSync(join(tmpdir(), 'kmsd-seed-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
function seedFile(text: string, ext = 'yaml'): string {
  const path = join(dir, `seed-${++fileCounter}.${ext}`);
  writeFileSync(path, text);
  return path;
}

let store: Store;
let rootKey: RootKeyProvider;
let keys: KeyService;

beforeEach(() => {
  store = openSqliteStore(':memory:');
  rootKey = softwareRootKey(new SecretBytes(randomBytes(32)), cryptoRandom);
  keys = keyService({ store, rootKey, cache: { invalidate: () => undefined }, authorizer: grantAllAuthorizer, clock: { now: () => T0 }, random: cryptoRandom });
});

afterEach(async () => {
  await store.close();
});

async function material(keyId: string, versionId: string): Promise<Buffer | undefined> {
  const wrapped = await store.getWrappedMaterial(keyId, versionId);
  return wrapped && Buffer.from((await rootKey.unwrap(wrapped, wrappedAad(keyId, versionId))).exposeSecret());
}

/** Expects a SeedError whose message contains every fragment. */
async function seedError(run: () => Promise<unknown> | unknown, ...fragments: string[]): Promise<string> {
  let message = '';
  await assert.rejects(
    async () => run(),
    (e: unknown) => {
      assert.ok(e instanceof SeedError, `expected a SeedError, got ${String(e)}`);
      for (const f of fragments) assert.ok(e.message.includes(f), `"${e.message}" should mention ${f}`);
      message = e.message;
      return true;
    },
  );
  return message;
}

const MATERIAL_32 = Buffer.alloc(32, 7);
const MATERIAL_16 = Buffer.alloc(16, 9);

const YAML = `
keys:
  - id: abjdevkey00000000001
    folderId: b1gdev
    name: app
    description: the app key
    defaultAlgorithm: AES_256
    rotationPeriod: 2592000s
    labels: { env: dev }
    deletionProtection: true
    versions:
      - id: abjdevversion0000001
        material: ${MATERIAL_32.toString('base64')}
      - id: abjdevversion0000002
        algorithm: AES_128
        material: ${MATERIAL_16.toString('base64')}
    primaryVersionId: abjdevversion0000002
  - id: plain-key_2
    folder_id: b1gdev
    default_algorithm: AES_128
`;

describe('parseSeedFile', () => {
  it('reads YAML', async () => {
    const file = await parseSeedFile(seedFile(YAML));
    assert.equal(file.keys.length, 2);
    assert.equal(file.keys[0]?.id, 'abjdevkey00000000001');
    assert.deepEqual(file.keys[0]?.versions?.[0]?.material, MATERIAL_32);
  });

  it('reads JSON', async () => {
    const json = JSON.stringify({ keys: [{ id: 'abjjson', folderId: 'b1g', defaultAlgorithm: 'AES_192' }] });
    assert.deepEqual((await parseSeedFile(seedFile(json, 'json'))).keys.map((k) => k.id), ['abjjson']);
  });

  it('an empty file has no keys', async () => {
    assert.deepEqual((await parseSeedFile(seedFile(''))).keys, []);
    assert.deepEqual((await parseSeedFile(seedFile('keys: []'))).keys, []);
  });

  it('refuses a missing file and a file that is not YAML, naming the file', async () => {
    const missing = join(dir, 'nope.yaml');
    await seedError(() => parseSeedFile(missing), missing);
    const broken = seedFile('keys: [ {id: a');
    await seedError(() => parseSeedFile(broken), broken);
  });

  it('names keys[i] and the field of a bad entry', async () => {
    const cases: [string, string[]][] = [
      ['keys:\n  - id: ok1\n    folderId: f\n  - id: "Bad Id"\n    folderId: f', ['keys[1].id']],
      ['keys:\n  - folderId: f', ['keys[0].id']],
      ['keys:\n  - id: k\n    versions: []', ['keys[0].versions']],
      ['keys:\n  - id: k\n    versions:\n      - id: v1\n        material: "not base64!"', ['keys[0].versions[0].material', 'base64']],
      ['keys:\n  - id: k\n    versions:\n      - id: v1\n        colour: red', ['keys[0].versions[0]', 'colour']],
      ['keys:\n  - id: k\n    versions:\n      - algorithm: AES_512', ['keys[0].versions[0].algorithm']],
      ['keys:\n  - id: k\n    versions:\n      - id: v1\n    primaryVersionId: v2', ['keys[0].primaryVersionId']],
      ['keys:\n  - id: k\n    versions:\n      - id: v1\n      - id: v1', ['keys[0]', 'unique']],
      ['keys: {}', ['keys']],
      ['kees: []', ['kees']],
    ];
    for (const [text, fragments] of cases) {
      const path = seedFile(text);
      await seedError(() => parseSeedFile(path), path, ...fragments);
    }
  });
});

describe('applySeedFile', () => {
  it('creates the keys with their fixed ids, versions and material', async () => {
    const result = await applySeedFile(seedFile(YAML), keys);
    assert.deepEqual(result, { created: ['abjdevkey00000000001', 'plain-key_2'], existing: [] });

    const key = (await store.getKey('abjdevkey00000000001'))!;
    assert.equal(key.folderId, 'b1gdev');
    assert.equal(key.name, 'app');
    assert.equal(key.description, 'the app key');
    assert.deepEqual(key.labels, { env: 'dev' });
    assert.equal(key.defaultAlgorithm, 'AES_256');
    assert.equal(key.rotationPeriodMs, 30 * DAY_MS);
    assert.equal(key.deletionProtection, true);
    assert.equal(key.primaryVersionId, 'abjdevversion0000002');
    assert.equal((await store.getVersion(key.id, 'abjdevversion0000001'))?.algorithm, 'AES_256');
    assert.equal((await store.getVersion(key.id, 'abjdevversion0000002'))?.algorithm, 'AES_128');
    assert.deepEqual(await material(key.id, 'abjdevversion0000001'), MATERIAL_32);
    assert.deepEqual(await material(key.id, 'abjdevversion0000002'), MATERIAL_16);

    const plain = (await store.getKey('plain-key_2'))!;
    assert.equal(plain.defaultAlgorithm, 'AES_128');
    assert.equal((await store.countLiveVersions(plain.id)), 1);
    assert.equal((await material(plain.id, plain.primaryVersionId))?.length, 16, 'generated material of the algorithm’s length');
  });

  it('accepts the same keys from JSON', async () => {
    const json = JSON.stringify({
      keys: [{ id: 'abjjson', folderId: 'b1g', defaultAlgorithm: 'AES_256', versions: [{ id: 'abjjsonv1', material: MATERIAL_32.toString('base64') }] }],
    });
    assert.deepEqual(await applySeedFile(seedFile(json, 'json'), keys), { created: ['abjjson'], existing: [] });
    assert.deepEqual(await material('abjjson', 'abjjsonv1'), MATERIAL_32);
  });

  it('is idempotent: a second run creates nothing and changes nothing', async () => {
    const path = seedFile(YAML);
    await applySeedFile(path, keys);
    const before = JSON.stringify([
      await store.getKey('abjdevkey00000000001'),
      await store.listVersions('abjdevkey00000000001', { pageSize: 100, pageToken: '' }),
      await store.listOperations('abjdevkey00000000001', { pageSize: 100, pageToken: '' }),
      await store.getKey('plain-key_2'),
      await store.listVersions('plain-key_2', { pageSize: 100, pageToken: '' }),
    ]);
    assert.deepEqual(await applySeedFile(path, keys), { created: [], existing: ['abjdevkey00000000001', 'plain-key_2'] });
    const afterwards = JSON.stringify([
      await store.getKey('abjdevkey00000000001'),
      await store.listVersions('abjdevkey00000000001', { pageSize: 100, pageToken: '' }),
      await store.listOperations('abjdevkey00000000001', { pageSize: 100, pageToken: '' }),
      await store.getKey('plain-key_2'),
      await store.listVersions('plain-key_2', { pageSize: 100, pageToken: '' }),
    ]);
    assert.equal(afterwards, before);
  });

  it('refuses material of the wrong length for the algorithm, naming keys[i]', async () => {
    const text = `keys:\n  - id: ok\n    folderId: f\n    defaultAlgorithm: AES_256\n  - id: short\n    folderId: f\n    defaultAlgorithm: AES_256\n    versions:\n      - material: ${MATERIAL_16.toString('base64')}`;
    await seedError(() => applySeedFile(seedFile(text), keys), 'keys[1]', 'short', '32 bytes', 'got 16');
    assert.equal(await store.getKey('short'), undefined);
    assert.equal(await store.getKey('ok'), undefined, 'a bad entry stops the whole file before anything is created');
  });

  it('refuses material for AES_128 of 32 bytes', async () => {
    const text = `keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_128\n    versions:\n      - material: ${MATERIAL_32.toString('base64')}`;
    await seedError(() => applySeedFile(seedFile(text), keys), 'keys[0]', '16 bytes', 'got 32');
  });

  it('applies the API’s rules to each key, naming keys[i] and the field', async () => {
    const cases: [string, string[]][] = [
      ['keys:\n  - id: k\n    defaultAlgorithm: AES_256', ['keys[0]', 'folder_id', 'required']],
      ['keys:\n  - id: k\n    folderId: f', ['keys[0]', 'default_algorithm', 'required']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_512', ['keys[0]', 'default_algorithm']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_256\n    labels: { Env: dev }', ['keys[0]', 'labels', 'Env']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_256\n    colour: red', ['keys[0]', 'colour']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_256\n    rotationPeriod: 24h', ['keys[0]', 'rotation_period']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_256\n    rotationPeriod: 60s', ['keys[0]', 'rotation_period']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: GOST_R_3412_2015_K', ['keys[0]', 'GOST']],
      ['keys:\n  - id: k\n    folderId: f\n    defaultAlgorithm: AES_256_HSM', ['keys[0]', 'HSM']],
    ];
    for (const [text, fragments] of cases) await seedError(() => applySeedFile(seedFile(text), keys), ...fragments);
  });
});
