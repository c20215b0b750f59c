import { LRUCache } from 'lru-cache';
import { ALL_AUTHENTICATED_USERS, ALL_USERS, type Scope, type Subject } from '../../domain/access.js';
import type { Caller } from '../../domain/principal.js';
import { permissionsOf, type Permission } from '../../domain/roles.js';
import { ERR, KmsError } from '../../errors/kms-error.js';
import type { AccessStore } from '../../ports/store.js';

// Decides, per caller and resource, whether a permission is granted (SPEC.md §7). A binding on the
// installation (global scope) applies everywhere, one on a folder to every key in it, one on a key
// to that key. A caller's grants are loaded once from the store and cached briefly; any change of
// bindings clears the cache on this node (and, over PostgreSQL, on every node via the change feed).

export type { Permission } from '../../domain/roles.js';

/** The resource a permission is checked on: the installation ({}), a folder, or a key inside one. */
export interface ResourceRef {
  readonly folderId?: string;
  readonly keyId?: string;
}

export interface Authorizer {
  /** Throws PERMISSION_DENIED (UNAUTHENTICATED for a caller without a token) unless granted. */
  authorize(caller: Caller, permission: Permission, resource: ResourceRef): Promise<void>;
  allows(caller: Caller, permission: Permission, resource: ResourceRef): Promise<boolean>;
  /** Keys on which the caller holds `permission` through bindings on the keys themselves. */
  keysGranted(caller: Caller, permission: Permission): Promise<ReadonlySet<string>>;
  /** Forgets every cached grant: a binding, a principal or a token changed. */
  invalidate(): void;
}

interface Grants {
  readonly global: ReadonlySet<Permission>;
  readonly folders: ReadonlyMap<string, ReadonlySet<Permission>>;
  readonly keys: ReadonlyMap<string, ReadonlySet<Permission>>;
}

const denied = (caller: Caller, permission: Permission, resource: ResourceRef): KmsError => {
  if (caller.kind === 'anonymous') return ERR.unauthenticated('missing Authorization: Bearer token');
  const on = resource.keyId !== undefined ? `key ${resource.keyId}` : resource.folderId !== undefined ? `folder ${resource.folderId}` : 'this installation';
  return ERR.permissionDenied(`permission denied: ${permission} on ${on}`);
};

/** What a caller's bindings add up to. Anonymous callers get only what system:allUsers has. */
function subjectsOf(caller: Caller): Subject[] {
  if (caller.kind === 'anonymous') return [ALL_USERS];
  return [{ type: caller.principal.type, id: caller.principal.id }, ALL_AUTHENTICATED_USERS, ALL_USERS];
}

export interface BindingAuthorizerOptions {
  readonly maxCallers: number;
  /** Safety net behind explicit invalidation. */
  readonly ttlMs: number;
  /** Whether cached grants may be used and kept (false while the change feed may miss changes). Default: always. */
  readonly trusted?: () => boolean;
}

export function bindingAuthorizer(store: Pick<AccessStore, 'bindingsOfSubjects'>, opts: BindingAuthorizerOptions = { maxCallers: 10_000, ttlMs: 5_000 }): Authorizer {
  const cache = new LRUCache<string, Promise<Grants>>({ max: opts.maxCallers, ttl: opts.ttlMs });
  let epoch = 0;

  async function load(caller: Caller): Promise<Grants> {
    const global = new Set<Permission>();
    const folders = new Map<string, Set<Permission>>();
    const keys = new Map<string, Set<Permission>>();
    const add = (scope: Scope, roleId: string) => {
      const target = scope.type === 'global' ? global : (() => {
        const map = scope.type === 'folder' ? folders : keys;
        let set = map.get(scope.id);
        if (!set) map.set(scope.id, (set = new Set()));
        return set;
      })();
      for (const p of permissionsOf(roleId)) target.add(p);
    };
    for (const { scope, binding } of await store.bindingsOfSubjects(subjectsOf(caller))) add(scope, binding.roleId);
    return { global, folders, keys };
  }

  function grants(caller: Caller): Promise<Grants> {
    if (opts.trusted?.() === false) return load(caller);
    const id = caller.kind === 'anonymous' ? '' : caller.principal.id;
    const hit = cache.get(id);
    if (hit) return hit;
    const at = epoch;
    const loading = load(caller);
    cache.set(id, loading);
    // A failed load is not cached; a load that raced an invalidation is dropped after it is used.
    loading.then(
      () => {
        if (at !== epoch) cache.delete(id);
      },
      () => cache.delete(id),
    );
    return loading;
  }

  async function allows(caller: Caller, permission: Permission, resource: ResourceRef): Promise<boolean> {
    if (caller.kind === 'dev') return true;
    const g = await grants(caller);
    if (g.global.has(permission)) return true;
    if (resource.folderId !== undefined && g.folders.get(resource.folderId)?.has(permission)) return true;
    return resource.keyId !== undefined && g.keys.get(resource.keyId)?.has(permission) === true;
  }

  return {
    allows,
    async authorize(caller, permission, resource) {
      if (!(await allows(caller, permission, resource))) throw denied(caller, permission, resource);
    },
    async keysGranted(caller, permission) {
      if (caller.kind === 'dev') return new Set();
      const g = await grants(caller);
      return new Set([...g.keys].filter(([, set]) => set.has(permission)).map(([id]) => id));
    },
    invalidate() {
      epoch++;
      cache.clear();
    },
  };
}

/** Every caller may do everything: --auth none, and unit tests of other services. */
export const grantAllAuthorizer: Authorizer = {
  allows: async () => true,
  authorize: async () => undefined,
  keysGranted: async () => new Set(),
  invalidate: () => undefined,
};

/**
 * For a key that does not exist (or is deleted): NOT_FOUND only to a caller who could see any key
 * of the installation; everyone else gets exactly the PERMISSION_DENIED an existing key without a
 * grant would give, so ids cannot be probed.
 */
export async function missingKey(authorizer: Authorizer, caller: Caller, permission: Permission, keyId: string, notFound: () => KmsError): Promise<never> {
  if (await authorizer.allows(caller, permission, {})) throw notFound();
  throw denied(caller, permission, { keyId });
}

/** Reading an operation is refused with the operation's id only: its key is not disclosed. */
export function operationDenied(caller: Caller, operationId: string): KmsError {
  if (caller.kind === 'anonymous') return ERR.unauthenticated('missing Authorization: Bearer token');
  return ERR.permissionDenied(`permission denied: kms.keys.get on operation ${operationId}`);
}

/** As missingKey, for an operation id. */
export async function missingOperation(authorizer: Authorizer, caller: Caller, operationId: string, notFound: () => KmsError): Promise<never> {
  if (await authorizer.allows(caller, 'kms.keys.get', {})) throw notFound();
  throw operationDenied(caller, operationId);
}
