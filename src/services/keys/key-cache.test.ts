import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { cryptoRandom } from '../../adapters/random.js';
import { softwareRootKey } from '../../adapters/rootkey/software-root-key.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { wrappedAad } from '../../crypto/wrapped-material.js';
import type { KeyVersion, SymmetricKey, VersionStatus } from '../../domain/key.js';
import type { RootKeyProvider } from '../../ports/root-key.js';
import type { KeyStore, KeyWithVersions } from '../../ports/store.js';
import { KeyCache } from './key-cache.js';

// The crypto path's cache (DESIGN.md §7): one store read per miss however many requests wait for
// it, nothing stale after an invalidation, and material only for versions that may use it.

const T0 = Date.UTC(2026, 0, 1);
const rootKey = softwareRootKey(new SecretBytes(randomBytes(32)), cryptoRandom);

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * An in-memory KeyStore that counts its reads. While `gate` is set, a read takes its snapshot at
 * once but answers only when the gate opens: a slow database that saw the state of its start.
 */
class FakeStore implements Pick<KeyStore, 'getKeyWithVersions'> {
  readonly keys = new Map<string, SymmetricKey>();
  readonly versions = new Map<string, KeyVersion>();
  readonly material = new Map<string, Buffer>();
  reads = 0;
  gate: Deferred | undefined;

  /** As the real stores: every version of the key, material only for ACTIVE ones. */
  async getKeyWithVersions(id: string): Promise<KeyWithVersions | undefined> {
    this.reads++;
    const key = this.keys.get(id);
    const versions = [...this.versions.values()]
      .filter((v) => v.keyId === id)
      .map((version) => {
        const wrapped = version.status === 'ACTIVE' ? this.material.get(`${id}/${version.id}`) : undefined;
        return wrapped ? { version, wrappedMaterial: wrapped } : { version };
      });
    await this.gate?.promise;
    return key && { key, versions };
  }

  /** Adds a key with one version per status given (the first is primary); returns the key. */
  async addKey(id: string, statuses: VersionStatus[] = ['ACTIVE'], fields: Partial<SymmetricKey> = {}): Promise<SymmetricKey> {
    const versionIds = statuses.map((_, i) => `${id}-v${i}`);
    const key: SymmetricKey = {
      id,
      folderId: 'b1gfolder',
      name: '',
      description: '',
      labels: {},
      status: 'ACTIVE',
      primaryVersionId: versionIds[0]!,
      defaultAlgorithm: 'AES_256',
      createdAt: T0,
      deletionProtection: false,
      revision: 1,
      ...fields,
    };
    this.keys.set(id, key);
    for (const [i, status] of statuses.entries()) {
      const v: KeyVersion = {
        id: versionIds[i]!,
        keyId: id,
        status,
        algorithm: 'AES_256',
        createdAt: T0,
        hostedByHsm: false,
        ...(status === 'SCHEDULED_FOR_DESTRUCTION' ? { destroyAt: T0 + 1 } : {}),
      };
      this.versions.set(`${id}/${v.id}`, v);
      if (status !== 'DESTROYED') {
        this.material.set(`${id}/${v.id}`, await rootKey.wrap(new SecretBytes(Buffer.alloc(32, i + 1)), wrappedAad(id, v.id)));
      }
    }
    return key;
  }
}

/** The root key, counting unwraps. */
function countingRootKey(): RootKeyProvider & { unwraps: number } {
  const counting = {
    id: rootKey.id,
    unwraps: 0,
    wrap: (m: SecretBytes, aad: Buffer) => rootKey.wrap(m, aad),
    unwrap: (w: Buffer, aad: Buffer) => {
      counting.unwraps++;
      return rootKey.unwrap(w, aad);
    },
  };
  return counting;
}

function setup(opts: { maxKeys?: number; ttlMs?: number; trusted?: () => boolean } = {}) {
  const store = new FakeStore();
  const root = countingRootKey();
  const cache = new KeyCache(store, root, { maxKeys: opts.maxKeys ?? 100, ttlMs: opts.ttlMs ?? 60_000, ...(opts.trusted ? { trusted: opts.trusted } : {}) });
  return { store, root, cache };
}

describe('KeyCache: single flight', () => {
  it('N concurrent getKey misses make one store read, and later calls none', async () => {
    const { store, cache } = setup();
    const key = await store.addKey('abjk1');
    store.gate = deferred();
    const pending = Array.from({ length: 25 }, () => cache.getKey('abjk1'));
    store.gate.resolve();
    const results = await Promise.all(pending);
    assert.equal(store.reads, 1);
    for (const r of results) assert.deepEqual(r, key);
    store.gate = undefined;
    assert.deepEqual(await cache.getKey('abjk1'), key);
    assert.equal(store.reads, 1, 'warm: no further read');
  });

  it('the key read brings its versions: N concurrent first getVersion calls read nothing more and unwrap once', async () => {
    const { store, root, cache } = setup();
    await store.addKey('abjk1', ['ACTIVE', 'ACTIVE']);
    const key = (await cache.getKey('abjk1'))!;
    const pending = Array.from({ length: 25 }, () => cache.getVersion(key, 'abjk1-v0'));
    const results = await Promise.all(pending);
    assert.equal(store.reads, 1);
    assert.equal(root.unwraps, 1);
    for (const r of results) assert.deepEqual((r?.material as SecretBytes | undefined)?.exposeSecret(), Buffer.alloc(32, 1));
    await cache.getVersion(key, 'abjk1-v0');
    assert.equal(root.unwraps, 1, 'warm: no further unwrap');
    assert.deepEqual((await cache.getVersion(key, 'abjk1-v1'))?.material, new SecretBytes(Buffer.alloc(32, 2)));
    assert.equal(root.unwraps, 2, 'another version: its own unwrap on first use');
    assert.equal(store.reads, 1, 'and still no further read');
  });

  it('a failed unwrap is not kept: the next use unwraps again', async () => {
    const { store, root, cache } = setup();
    await store.addKey('abjk1');
    const key = (await cache.getKey('abjk1'))!;
    const real = root.unwrap;
    root.unwrap = async () => {
      root.unwraps++;
      throw new Error('HSM session lost');
    };
    await assert.rejects(Promise.all([cache.getVersion(key, 'abjk1-v0'), cache.getVersion(key, 'abjk1-v0')]), /HSM session lost/);
    assert.equal(root.unwraps, 1, 'concurrent first uses share the unwrap');
    root.unwrap = real;
    assert.ok((await cache.getVersion(key, 'abjk1-v0'))?.material);
    assert.equal(store.reads, 1);
  });

  it('a failed read is not cached: the next call reads again', async () => {
    const { store, cache } = setup();
    const key = await store.addKey('abjk1');
    const real = store.getKeyWithVersions.bind(store);
    store.getKeyWithVersions = async () => {
      store.reads++;
      throw new Error('database is locked');
    };
    await assert.rejects(Promise.all([cache.getKey('abjk1'), cache.getKey('abjk1')]), /database is locked/);
    assert.equal(store.reads, 1);
    store.getKeyWithVersions = real;
    assert.deepEqual(await cache.getKey('abjk1'), key);
    assert.equal(store.reads, 2);
  });

  it('a missing key is answered undefined and not remembered', async () => {
    const { store, cache } = setup();
    assert.equal(await cache.getKey('abjnothere'), undefined);
    const key = await store.addKey('abjnothere');
    assert.deepEqual(await cache.getKey('abjnothere'), key);
    assert.equal(await cache.getVersion(key, 'abjnoversion'), undefined);
  });
});

describe('KeyCache: invalidation', () => {
  it('invalidate drops the entry: the next getKey reads the store and sees the change', async () => {
    const { store, cache } = setup();
    const key = await store.addKey('abjk1');
    assert.equal((await cache.getKey('abjk1'))?.status, 'ACTIVE');
    store.keys.set('abjk1', { ...key, status: 'INACTIVE', revision: 2 });
    assert.equal((await cache.getKey('abjk1'))?.status, 'ACTIVE', 'still cached before invalidate');
    cache.invalidate('abjk1');
    assert.equal((await cache.getKey('abjk1'))?.status, 'INACTIVE');
    assert.equal(store.reads, 2);
  });

  it('invalidate drops the cached versions of the key too', async () => {
    const { store, cache } = setup();
    await store.addKey('abjk1', ['ACTIVE', 'ACTIVE']);
    const key = (await cache.getKey('abjk1'))!;
    assert.ok((await cache.getVersion(key, 'abjk1-v1'))?.material);
    const v = store.versions.get('abjk1/abjk1-v1')!;
    store.versions.set('abjk1/abjk1-v1', { ...v, status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + 5 });
    cache.invalidate('abjk1');
    const fresh = (await cache.getKey('abjk1'))!;
    const usable = await cache.getVersion(fresh, 'abjk1-v1');
    assert.equal(usable?.version.status, 'SCHEDULED_FOR_DESTRUCTION');
    assert.equal(usable?.material, undefined);
  });

  it('invalidating one key leaves the others cached', async () => {
    const { store, cache } = setup();
    await store.addKey('abjk1');
    await store.addKey('abjk2');
    await cache.getKey('abjk1');
    await cache.getKey('abjk2');
    cache.invalidate('abjk1');
    await cache.getKey('abjk2');
    assert.equal(store.reads, 2);
  });

  it('a key load that races an invalidation does not cache the stale key', async () => {
    const { store, cache } = setup();
    const key = await store.addKey('abjk1');
    store.gate = deferred();
    const racing = cache.getKey('abjk1'); // reads the ACTIVE key, answers later
    store.keys.set('abjk1', { ...key, status: 'INACTIVE', revision: 2 }); // a change commits …
    cache.invalidate('abjk1'); // … and invalidates while the read is in flight
    store.gate.resolve();
    store.gate = undefined;
    assert.equal((await racing)?.status, 'ACTIVE', 'the racing caller gets what its read saw');
    assert.equal((await cache.getKey('abjk1'))?.status, 'INACTIVE', 'but it was not cached');
    assert.equal(store.reads, 2);
  });

  it('an unwrap that races an invalidation does not cache the stale version or its material', async () => {
    const { store, cache } = setup();
    await store.addKey('abjk1', ['ACTIVE', 'ACTIVE']);
    const key = (await cache.getKey('abjk1'))!;
    const racing = cache.getVersion(key, 'abjk1-v1'); // unwraps, answers later
    const v = store.versions.get('abjk1/abjk1-v1')!;
    store.versions.set('abjk1/abjk1-v1', { ...v, status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + 5 });
    cache.invalidate('abjk1');
    const raced = await racing;
    assert.equal(raced?.version.status, 'ACTIVE', 'the racing caller gets what its read saw');
    const material = raced?.material as SecretBytes;
    assert.deepEqual(material.exposeSecret(), Buffer.alloc(32, 2));
    await nextTurn();
    assert.deepEqual(material.exposeSecret(), Buffer.alloc(32, 0), 'kept by no entry, so wiped after the caller used it');
    const fresh = (await cache.getKey('abjk1'))!;
    assert.equal((await cache.getVersion(fresh, 'abjk1-v1'))?.version.status, 'SCHEDULED_FOR_DESTRUCTION');
    // Even a caller that still holds the old key object does not get the stale version from cache.
    assert.equal((await cache.getVersion(key, 'abjk1-v1'))?.version.status, 'SCHEDULED_FOR_DESTRUCTION');
  });

  it('a getKey that starts after an invalidation does not join a load that started before it', async () => {
    // Strong consistency (DESIGN.md §7): once a change is committed and invalidated, the next
    // request sees it, even while a read begun before the change is still in flight.
    const { store, cache } = setup();
    const key = await store.addKey('abjk1');
    store.gate = deferred();
    const before = cache.getKey('abjk1');
    store.keys.set('abjk1', { ...key, status: 'INACTIVE', revision: 2 });
    cache.invalidate('abjk1');
    const after = cache.getKey('abjk1');
    store.gate.resolve();
    store.gate = undefined;
    assert.equal((await before)?.status, 'ACTIVE');
    assert.equal((await after)?.status, 'INACTIVE');
  });

  it('a getVersion that starts after an invalidation does not join a load that started before it', async () => {
    const { store, cache } = setup();
    await store.addKey('abjk1', ['ACTIVE', 'ACTIVE']);
    const key = (await cache.getKey('abjk1'))!;
    store.gate = deferred();
    const before = cache.getVersion(key, 'abjk1-v1');
    const v = store.versions.get('abjk1/abjk1-v1')!;
    store.versions.set('abjk1/abjk1-v1', { ...v, status: 'SCHEDULED_FOR_DESTRUCTION', destroyAt: T0 + 5 });
    cache.invalidate('abjk1');
    const after = cache.getVersion(key, 'abjk1-v1');
    store.gate.resolve();
    store.gate = undefined;
    assert.equal((await before)?.version.status, 'ACTIVE');
    assert.equal((await after)?.version.status, 'SCHEDULED_FOR_DESTRUCTION');
    assert.equal((await after)?.material, undefined);
  });

  it('clear() empties the cache', async () => {
    const { store, cache } = setup();
    await store.addKey('abjk1');
    await cache.getKey('abjk1');
    assert.equal(cache.size, 1);
    cache.clear();
    assert.equal(cache.size, 0);
    await cache.getKey('abjk1');
    assert.equal(store.reads, 2);
  });
});

describe('KeyCache: while changes may go unheard (trusted() false)', () => {
  it('reads the store on every call and keeps nothing, and caches again once trusted', async () => {
    let trusted = false;
    const { store, root, cache } = setup({ trusted: () => trusted });
    await store.addKey('abjk1');
    for (let i = 0; i < 3; i++) {
      const key = (await cache.getKey('abjk1'))!;
      assert.ok((await cache.getVersion(key, 'abjk1-v0'))?.material);
    }
    assert.equal(store.reads, 3, 'one read per call: its getVersion uses the versions read with its key');
    assert.equal(root.unwraps, 3);
    assert.equal(cache.size, 0);
    trusted = true;
    for (let i = 0; i < 3; i++) {
      const key = (await cache.getKey('abjk1'))!;
      await cache.getVersion(key, 'abjk1-v0');
    }
    assert.equal(store.reads, 4);
    assert.equal(root.unwraps, 4);
  });

  it('wipes material it did not keep once the caller has used it', async () => {
    const { store, cache } = setup({ trusted: () => false });
    await store.addKey('abjk1');
    const key = (await cache.getKey('abjk1'))!;
    const material = (await cache.getVersion(key, 'abjk1-v0'))!.material as SecretBytes;
    assert.ok(material.exposeSecret().some((b) => b !== 0), 'usable right away');
    await nextTurn();
    assert.ok(material.exposeSecret().every((b) => b === 0), 'wiped after the turn');
  });
});

describe('KeyCache: material', () => {
  it('is unwrapped for ACTIVE versions only', async () => {
    const { store, root, cache } = setup();
    await store.addKey('abjk1', ['ACTIVE', 'SCHEDULED_FOR_DESTRUCTION', 'DESTROYED']);
    const key = (await cache.getKey('abjk1'))!;

    const active = await cache.getVersion(key, 'abjk1-v0');
    assert.equal(active?.version.status, 'ACTIVE');
    assert.deepEqual((active?.material as SecretBytes | undefined)?.exposeSecret(), Buffer.alloc(32, 1));
    assert.equal(root.unwraps, 1);

    const scheduled = await cache.getVersion(key, 'abjk1-v1');
    assert.equal(scheduled?.version.status, 'SCHEDULED_FOR_DESTRUCTION');
    assert.equal(scheduled?.material, undefined);

    const destroyed = await cache.getVersion(key, 'abjk1-v2');
    assert.equal(destroyed?.version.status, 'DESTROYED');
    assert.equal(destroyed?.material, undefined);

    assert.equal(root.unwraps, 1, 'no unwrap for the scheduled or destroyed version');
    assert.equal(store.reads, 1);
  });

  it('is unwrapped with the version’s own AAD (a blob moved to another version fails)', async () => {
    const { store, cache } = setup();
    await store.addKey('abjk1', ['ACTIVE', 'ACTIVE']);
    store.material.set('abjk1/abjk1-v1', store.material.get('abjk1/abjk1-v0')!);
    const key = (await cache.getKey('abjk1'))!;
    await assert.rejects(cache.getVersion(key, 'abjk1-v1'), (e: Error) => /does not unwrap/.test(e.message));
  });

  it('is wiped once its entry leaves the cache', async () => {
    const { store, cache } = setup({ maxKeys: 1 });
    await store.addKey('abjk1');
    await store.addKey('abjk2');
    const key = (await cache.getKey('abjk1'))!;
    const material = (await cache.getVersion(key, 'abjk1-v0'))!.material as SecretBytes;
    assert.deepEqual(material.exposeSecret(), Buffer.alloc(32, 1));
    await cache.getKey('abjk2'); // evicts abjk1
    assert.deepEqual(material.exposeSecret(), Buffer.alloc(32, 1), 'still usable in the current turn');
    await nextTurn();
    assert.deepEqual(material.exposeSecret(), Buffer.alloc(32, 0));
  });
});

describe('KeyCache: bounds', () => {
  it('holds at most maxKeys keys, evicting the least recently used', async () => {
    const { store, cache } = setup({ maxKeys: 3 });
    for (let i = 1; i <= 5; i++) await store.addKey(`abjk${i}`);
    for (let i = 1; i <= 5; i++) {
      await cache.getKey(`abjk${i}`);
      assert.ok(cache.size <= 3, `size ${cache.size} after ${i} keys`);
    }
    assert.equal(cache.size, 3);
    assert.equal(store.reads, 5);
    await cache.getKey('abjk5');
    await cache.getKey('abjk3');
    assert.equal(store.reads, 5, 'the three most recent are cached');
    await cache.getKey('abjk1');
    assert.equal(store.reads, 6, 'the oldest was evicted');
  });

  it('keeps unwrapped material only for the keys it holds: every evicted key’s versions are wiped', async () => {
    const { store, cache } = setup({ maxKeys: 3 });
    const used: { keyId: string; material: SecretBytes }[] = [];
    for (let i = 1; i <= 12; i++) {
      const key = await store.addKey(`abjk${i}`, ['ACTIVE', 'ACTIVE']);
      const cached = (await cache.getKey(key.id))!;
      for (const v of ['v0', 'v1']) used.push({ keyId: key.id, material: (await cache.getVersion(cached, `${key.id}-${v}`))!.material as SecretBytes });
      assert.ok(cache.size <= 3);
    }
    await nextTurn();
    const wiped = (m: SecretBytes) => m.exposeSecret().every((b) => b === 0);
    const held = new Set(['abjk10', 'abjk11', 'abjk12']);
    for (const u of used) assert.equal(wiped(u.material), !held.has(u.keyId), `${u.keyId}: wiped iff evicted`);
  });

  it('an unwrap that finishes after its key was evicted does not keep the material', async () => {
    const { store, root, cache } = setup({ maxKeys: 1 });
    await store.addKey('abjk1');
    await store.addKey('abjk2');
    const key = (await cache.getKey('abjk1'))!;
    const pending = cache.getVersion(key, 'abjk1-v0'); // unwrapping …
    await cache.getKey('abjk2'); // … while abjk1 is evicted
    const material = (await pending)!.material as SecretBytes;
    await nextTurn();
    assert.ok(material.exposeSecret().every((b) => b === 0));
    const again = (await cache.getKey('abjk1'))!;
    assert.ok(((await cache.getVersion(again, 'abjk1-v0'))!.material as SecretBytes).exposeSecret().some((b) => b !== 0));
    assert.equal(root.unwraps, 2, 'unwrapped again for the new entry');
  });

  it('forgets entries after the TTL', async () => {
    const { store, cache } = setup({ ttlMs: 5 });
    await store.addKey('abjk1');
    await cache.getKey('abjk1');
    await new Promise((r) => setTimeout(r, 20));
    await cache.getKey('abjk1');
    assert.equal(store.reads, 2);
  });
});
