import { LRUCache } from 'lru-cache';
import type { KeyVersion, SymmetricKey } from '../../domain/key.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import type { HsmKey, HsmKeyVersions } from '../../ports/hsm.js';
import { wrappedAad } from '../../crypto/wrapped-material.js';
import type { KeyStore, KeyWithVersions, LoadedVersion } from '../../ports/store.js';
import type { RootKeyProvider } from '../../ports/root-key.js';

// Key metadata and unwrapped version material for the crypto path, so that an Encrypt touches
// neither the store nor the root key once warm (DESIGN.md §7). Bounded by key count and TTL;
// material is wiped when its entry leaves. Every committed key change calls invalidate(keyId)
// before it is acknowledged, so the next request sees it (strong consistency on one node).
//
// A miss costs one store read, getKeyWithVersions: the key with all its versions and the wrapped
// material of the ACTIVE ones, so a cold call never reads again for its version; each version's
// material is unwrapped once, on its first use (issue #7: one read and one unwrap per cold call).
//
// A load racing an invalidation must not put the stale result back: loads remember the epoch
// they started in and only cache their result if no invalidation happened since.
//
// Callers use returned material right away, in the same microtask chain (no I/O in between).
//
// Across nodes, the store's change feed calls invalidate() for changes made elsewhere
// (services/cache-invalidation.ts). While the feed may be missing changes (`trusted()` false: its
// connection is down) the cache serves nothing it holds and keeps nothing it loads: every call
// reads the store (still once: its getVersion uses the versions read with its key), so a node
// never answers from a cache that a change could have passed by.

export interface UsableVersion {
  readonly version: KeyVersion;
  /**
   * Unwrapped material, or for an HSM-hosted version the handle of its key in the HSM. Absent for
   * versions that are not ACTIVE (their material is never unwrapped) and for HSM-hosted versions
   * when no HSM is configured.
   */
  readonly material?: SecretBytes | HsmKey;
}

/** A version of a loaded key: its wrapped material until first use, then the usable version. */
interface Slot {
  readonly version: KeyVersion;
  /** Dropped once the unwrapped material is kept. */
  wrapped?: Buffer;
  usable?: UsableVersion;
  /** The unwrap in flight: concurrent first uses of the version share it. */
  opening?: Promise<UsableVersion>;
}

/** A key with all its versions, as one store read found them. */
interface Entry {
  readonly key: SymmetricKey;
  readonly versions: Map<string, Slot>;
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

/** Wipes software material after the current turn: its caller uses it synchronously first. */
function wipeAfterTurn(usable: UsableVersion | undefined): void {
  const material = usable?.material;
  if (material instanceof SecretBytes) setImmediate(() => material.wipe());
}

function entryOf(loaded: KeyWithVersions): Entry {
  const slot = (v: LoadedVersion): Slot => (v.wrappedMaterial ? { version: v.version, wrapped: v.wrappedMaterial } : { version: v.version });
  return { key: loaded.key, versions: new Map(loaded.versions.map((v) => [v.version.id, slot(v)])) };
}

export class KeyCache {
  readonly #store: Pick<KeyStore, 'getKeyWithVersions'>;
  readonly #rootKey: RootKeyProvider;
  readonly #hsm: HsmKeyVersions | undefined;
  readonly #entries: LRUCache<string, Entry>;
  readonly #loads = new Map<string, Promise<Entry | undefined>>();
  /**
   * Entries loaded but not cached (while untrusted, or when an invalidation raced the load), by
   * their key object: the getVersion that follows a getKey in the same call uses the versions read
   * with that key instead of reading again. Weak, so they go with the call.
   */
  readonly #uncached = new WeakMap<SymmetricKey, Entry>();
  readonly #trusted: () => boolean;
  #epoch = 0;
  /** Lookups of the crypto path, for the metrics (read at scrape time; plain integers cost nothing here). */
  readonly stats = { keyHits: 0, keyMisses: 0, versionHits: 0, versionMisses: 0, unwraps: 0 };

  constructor(store: Pick<KeyStore, 'getKeyWithVersions'>, rootKey: RootKeyProvider, opts: KeyCacheOptions, hsm?: HsmKeyVersions) {
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
        for (const slot of entry.versions.values()) wipeAfterTurn(slot.usable);
      },
    });
  }

  invalidate(keyId: string): void {
    this.#epoch++;
    this.#entries.delete(keyId);
    // A load in flight may have read the state before the change: later callers must not join it.
    this.#loads.delete(keyId);
  }

  /**
   * The key as stored (deleted keys included), from cache when warm. A miss is one store read,
   * which brings the key's versions with it: the getVersion calls that follow read nothing more.
   */
  async getKey(keyId: string): Promise<SymmetricKey | undefined> {
    if (!this.#trusted()) return (await this.#load(keyId))?.key;
    const hit = this.#entries.get(keyId);
    if (hit) {
      this.stats.keyHits++;
      return hit.key;
    }
    this.stats.keyMisses++;
    const epoch = this.#epoch;
    const entry = await joinOrStart(this.#loads, keyId, () =>
      this.#load(keyId).then((loaded) => {
        // Kept only if no invalidation happened since the read began, and still trusted.
        if (loaded && epoch === this.#epoch && this.#trusted()) {
          this.#uncached.delete(loaded.key);
          this.#entries.set(keyId, loaded);
        }
        return loaded;
      }),
    );
    return entry?.key;
  }

  /**
   * A version of `key` with its material when ACTIVE; undefined when the key has no such version.
   * For a key this cache handed out, the version comes from the same read as the key, and its
   * material is unwrapped on first use (one unwrap per version). A key object from before an
   * invalidation is no longer the cached one: its version is read afresh.
   */
  async getVersion(key: SymmetricKey, versionId: string): Promise<UsableVersion | undefined> {
    const cached = this.#trusted() ? this.#entries.get(key.id) : undefined;
    if (cached?.key === key) return this.#usable(cached, versionId, true);
    const uncached = this.#uncached.get(key);
    if (uncached) return this.#usable(uncached, versionId, false);
    const fresh = await this.#load(key.id);
    return fresh && this.#usable(fresh, versionId, false);
  }

  /** The version's usable form; `keep` stores unwrapped material in the (cached) entry. */
  #usable(entry: Entry, versionId: string, keep: boolean): UsableVersion | Promise<UsableVersion> | undefined {
    const slot = entry.versions.get(versionId);
    if (slot === undefined) return undefined;
    if (slot.usable) {
      this.stats.versionHits++;
      return slot.usable;
    }
    this.stats.versionMisses++;
    if (!keep) {
      return this.#open(entry.key.id, slot).then((usable) => {
        wipeAfterTurn(usable); // nothing keeps it, so nothing would wipe it later
        return usable;
      });
    }
    const epoch = this.#epoch;
    slot.opening ??= this.#open(entry.key.id, slot).then(
      (usable) => {
        slot.opening = undefined;
        // Kept only while the entry is still the cached one; otherwise nothing would ever wipe it.
        if (epoch === this.#epoch && this.#entries.peek(entry.key.id) === entry) {
          slot.usable = usable;
          delete slot.wrapped;
        } else {
          wipeAfterTurn(usable);
        }
        return usable;
      },
      (e: unknown) => {
        slot.opening = undefined;
        throw e;
      },
    );
    return slot.opening;
  }

  /** One store read: the key with its versions; entries not (yet) cached are found by key object. */
  async #load(keyId: string): Promise<Entry | undefined> {
    const loaded = await this.#store.getKeyWithVersions(keyId);
    if (!loaded) return undefined;
    const entry = entryOf(loaded);
    this.#uncached.set(entry.key, entry);
    return entry;
  }

  /** Unwraps (or opens in the HSM) the material of an ACTIVE version; other versions have none. */
  async #open(keyId: string, slot: Pick<Slot, 'version' | 'wrapped'>): Promise<UsableVersion> {
    const { version, wrapped: wrappedMaterial } = slot;
    if (version.status !== 'ACTIVE' || !wrappedMaterial) return { version };
    if (version.hostedByHsm && !this.#hsm) return { version };
    this.stats.unwraps++;
    if (version.hostedByHsm) return { version, material: await this.#hsm!.open(wrappedMaterial) };
    return { version, material: await this.#rootKey.unwrap(wrappedMaterial, wrappedAad(keyId, version.id)) };
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#epoch++;
    this.#entries.clear();
    this.#loads.clear();
  }
}
