import { LRUCache } from 'lru-cache';
import type { KeyVersion, SymmetricKey } from '../../domain/key.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import type { HsmKey, HsmKeyVersions } from '../../ports/hsm.js';
import { wrappedAad } from '../../crypto/wrapped-material.js';
import type { KeyStore } from '../../ports/store.js';
import type { RootKeyProvider } from '../../ports/root-key.js';

// Key metadata and unwrapped version material for the crypto path, so that an Encrypt touches
// neither the store nor the root key once warm (DESIGN.md §7). Bounded by key count and TTL;
// material is wiped when its entry leaves. Every committed key change calls invalidate(keyId)
// before it is acknowledged, so the next request sees it (strong consistency on one node).
//
// A load racing an invalidation must not put the stale result back: loads remember the epoch
// they started in and only cache their result if no invalidation happened since.
//
// Callers use returned material right away, in the same microtask chain (no I/O in between).
//
// Across nodes, the store's change feed calls invalidate() for changes made elsewhere
// (services/cache-invalidation.ts). While the feed may be missing changes (`trusted()` false: its
// connection is down) the cache serves nothing it holds and keeps nothing it loads: every call
// reads the store, so a node never answers from a cache that a change could have passed by.

export interface UsableVersion {
  readonly version: KeyVersion;
  /**
   * Unwrapped material, or for an HSM-hosted version the handle of its key in the HSM. Absent for
   * versions that are not ACTIVE (their material is never unwrapped) and for HSM-hosted versions
   * when no HSM is configured.
   */
  readonly material?: SecretBytes | HsmKey;
}

interface Entry {
  readonly key: SymmetricKey;
  readonly versions: Map<string, UsableVersion>;
}

export interface KeyCacheOptions {
  readonly maxKeys: number;
  readonly ttlMs: number;
  /** Whether cached entries may be used and kept; while false every call reads the store. Default: always. */
  readonly trusted?: () => boolean;
}

/** Single flight: concurrent misses for one id share one load; a finished load removes only itself. */
function joinOrStart<T>(loads: Map<string, Promise<T>>, id: string, start: () => Promise<T>): Promise<T> {
  const inFlight = loads.get(id);
  if (inFlight) return inFlight;
  const load = start();
  load
    .finally(() => {
      if (loads.get(id) === load) loads.delete(id);
    })
    .catch(() => undefined);
  loads.set(id, load);
  return load;
}

export class KeyCache {
  readonly #store: Pick<KeyStore, 'getKey' | 'getVersion' | 'getWrappedMaterial'>;
  readonly #rootKey: RootKeyProvider;
  readonly #hsm: HsmKeyVersions | undefined;
  readonly #entries: LRUCache<string, Entry>;
  readonly #keyLoads = new Map<string, Promise<SymmetricKey | undefined>>();
  readonly #versionLoads = new Map<string, Promise<UsableVersion | undefined>>();
  readonly #trusted: () => boolean;
  #epoch = 0;
  /** Lookups of the crypto path, for the metrics (read at scrape time; plain integers cost nothing here). */
  readonly stats = { keyHits: 0, keyMisses: 0, versionHits: 0, versionMisses: 0 };

  constructor(store: Pick<KeyStore, 'getKey' | 'getVersion' | 'getWrappedMaterial'>, rootKey: RootKeyProvider, opts: KeyCacheOptions, hsm?: HsmKeyVersions) {
    this.#store = store;
    this.#rootKey = rootKey;
    this.#hsm = hsm;
    this.#trusted = opts.trusted ?? (() => true);
    this.#entries = new LRUCache<string, Entry>({
      max: opts.maxKeys,
      ttl: opts.ttlMs,
      // Wiped after the current turn of the event loop: a request that has just been handed this
      // material uses it synchronously in the microtask that follows, which runs before setImmediate.
      dispose: (entry) => {
        setImmediate(() => {
          for (const v of entry.versions.values()) if (v.material instanceof SecretBytes) v.material.wipe();
        });
      },
    });
  }

  invalidate(keyId: string): void {
    this.#epoch++;
    this.#entries.delete(keyId);
    // A load in flight may have read the state before the change: later callers must not join it.
    this.#keyLoads.delete(keyId);
    for (const loadId of this.#versionLoads.keys()) if (loadId.startsWith(`${keyId}/`)) this.#versionLoads.delete(loadId);
  }

  /** The key as stored (deleted keys included), from cache when warm; one store read per miss. */
  async getKey(keyId: string): Promise<SymmetricKey | undefined> {
    if (!this.#trusted()) return this.#store.getKey(keyId);
    const hit = this.#entries.get(keyId);
    if (hit) {
      this.stats.keyHits++;
      return hit.key;
    }
    this.stats.keyMisses++;
    const epoch = this.#epoch;
    return joinOrStart(this.#keyLoads, keyId, () =>
      this.#store.getKey(keyId).then((key) => {
        if (key && epoch === this.#epoch) this.#entries.set(keyId, { key, versions: new Map() });
        return key;
      }),
    );
  }

  /** A version of `key` with its material when ACTIVE; undefined when the key has no such version. */
  async getVersion(key: SymmetricKey, versionId: string): Promise<UsableVersion | undefined> {
    if (!this.#trusted()) {
      const usable = await this.#loadVersion(key.id, versionId);
      // Not kept, so wiped as a cache entry is: after the caller's synchronous use.
      const material = usable?.material;
      if (material instanceof SecretBytes) setImmediate(() => material.wipe());
      return usable;
    }
    const entry = this.#entries.get(key.id);
    const hit = entry?.key === key ? entry.versions.get(versionId) : undefined;
    if (hit) {
      this.stats.versionHits++;
      return hit;
    }
    this.stats.versionMisses++;
    const epoch = this.#epoch;
    return joinOrStart(this.#versionLoads, `${key.id}/${versionId}`, () =>
      this.#loadVersion(key.id, versionId).then((usable) => {
        const current = this.#entries.get(key.id);
        if (usable && epoch === this.#epoch && current?.key === key) current.versions.set(versionId, usable);
        return usable;
      }),
    );
  }

  async #loadVersion(keyId: string, versionId: string): Promise<UsableVersion | undefined> {
    const version = await this.#store.getVersion(keyId, versionId);
    if (!version) return undefined;
    if (version.status !== 'ACTIVE') return { version };
    const wrapped = await this.#store.getWrappedMaterial(keyId, versionId);
    if (!wrapped) return { version };
    if (version.hostedByHsm) return this.#hsm ? { version, material: await this.#hsm.open(wrapped) } : { version };
    return { version, material: await this.#rootKey.unwrap(wrapped, wrappedAad(keyId, versionId)) };
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#epoch++;
    this.#entries.clear();
    this.#keyLoads.clear();
    this.#versionLoads.clear();
  }
}
