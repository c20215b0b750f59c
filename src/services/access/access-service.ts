import { GLOBAL_SCOPE, validateBinding, type AccessBinding, type BindingDelta, type Scope } from '../../domain/access.js';
import { newId } from '../../domain/ids.js';
import type { Operation } from '../../domain/operation.js';
import { callerId } from '../../domain/principal.js';
import { ERR } from '../../errors/kms-error.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { AccessStore, KeyStore, OperationStore, PrincipalStore } from '../../ports/store.js';
import type { AuditLog } from '../audit/audit-log.js';
import { note } from '../audit/trail.js';
import type { CallContext } from '../context.js';
import { missingKey, type Authorizer, type ResourceRef } from './authorizer.js';

// Access bindings (SPEC.md §4.1.12–14, §7.1) on keys — through the KMS API, with Operations — and
// on folders and the whole installation — through kmsd's own API. Every change clears the grant
// cache at once, so a revoked role stops working at the next request.

export type BindingInput = { roleId: string; subject: { type: string; id: string } };
export type DeltaInput = { action: 'ADD' | 'REMOVE' | 'UNSPECIFIED'; binding: BindingInput };

export interface AccessServiceDeps {
  readonly store: AccessStore & Pick<KeyStore, 'getKey'> & Pick<PrincipalStore, 'getPrincipal'> & Pick<OperationStore, 'findOperationByIdempotencyKey'>;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
  readonly random: Random;
  readonly audit?: Pick<AuditLog, 'forCommit' | 'committed'>;
  /** Called after every committed change (other nodes' caches, through the change feed). */
  readonly onChange?: () => void;
}

/** Pages over an in-memory list; bindings of one scope are bounded (≤ 1000 per Set call). */
function pageOf<T>(items: readonly T[], pageSize: number, pageToken: string): { items: T[]; nextPageToken: string } {
  const start = pageToken === '' ? 0 : /^[0-9]{1,7}$/.test(pageToken) ? Number(pageToken) : NaN;
  if (!Number.isSafeInteger(start)) throw ERR.field('page_token', 'is not a token this service issued');
  const size = pageSize === 0 ? 100 : pageSize;
  const end = start + size;
  return { items: items.slice(start, end), nextPageToken: end < items.length ? String(end) : '' };
}

export function accessService(d: AccessServiceDeps) {
  async function checkedBindings(bindings: readonly BindingInput[], field: string): Promise<AccessBinding[]> {
    const out: AccessBinding[] = [];
    for (const [i, b] of bindings.entries()) {
      const binding = validateBinding(b, `${field}[${i}]`);
      if (binding.subject.type === 'userAccount' || binding.subject.type === 'serviceAccount') {
        const p = await d.store.getPrincipal(binding.subject.id);
        if (!p || p.type !== binding.subject.type) {
          throw ERR.field(`${field}[${i}].subject`, `${binding.subject.type} ${binding.subject.id} does not exist`);
        }
      }
      out.push(binding);
    }
    return out;
  }

  async function checkedDeltas(deltas: readonly DeltaInput[]): Promise<BindingDelta[]> {
    const out: BindingDelta[] = [];
    for (const [i, delta] of deltas.entries()) {
      if (delta.action === 'UNSPECIFIED') throw ERR.field(`access_binding_deltas[${i}].action`, 'required: ADD or REMOVE');
      // A REMOVE may name a principal that no longer exists; only the role and subject shape are checked.
      const binding =
        delta.action === 'ADD'
          ? (await checkedBindings([delta.binding], `access_binding_deltas[${i}].access_binding`))[0]!
          : validateBinding(delta.binding, `access_binding_deltas[${i}].access_binding`);
      out.push({ action: delta.action, binding });
    }
    return out;
  }

  /** A live key the caller may act on, for the key-scoped methods. */
  async function keyScope(ctx: CallContext, keyId: string, permission: 'kms.accessBindings.list' | 'kms.accessBindings.set'): Promise<{ scope: Scope; ref: ResourceRef }> {
    note(ctx, { keyId });
    const key = await d.store.getKey(keyId);
    if (!key || key.deletedAt !== undefined) return missingKey(d.authorizer, ctx.caller, permission, keyId, () => ERR.keyNotFound(keyId));
    note(ctx, { folderId: key.folderId });
    const ref = { folderId: key.folderId, keyId };
    await d.authorizer.authorize(ctx.caller, permission, ref);
    return { scope: { type: 'key', id: keyId }, ref };
  }

  async function otherScope(ctx: CallContext, scope: Scope, permission: 'kms.accessBindings.list' | 'kms.accessBindings.set'): Promise<void> {
    if (scope.type === 'folder') {
      if (scope.id === '') throw ERR.field('folder_id', 'required');
      note(ctx, { folderId: scope.id, resourceId: scope.id });
      await d.authorizer.authorize(ctx.caller, permission, { folderId: scope.id });
    } else {
      await d.authorizer.authorize(ctx.caller, permission, {});
    }
  }

  async function commitKeyChange(ctx: CallContext, keyId: string, change: { replace?: AccessBinding[]; deltas?: BindingDelta[] }, type: 'SetAccessBindingsMetadata' | 'UpdateAccessBindingsMetadata', description: string): Promise<Operation> {
    if (ctx.idempotencyKey !== undefined) {
      const earlier = await d.store.findOperationByIdempotencyKey(callerId(ctx.caller), ctx.idempotencyKey);
      if (earlier) {
        if (earlier.metadata.type !== type || earlier.resourceId !== keyId) throw ERR.invalidArgument('Idempotency-Key was already used for a different request');
        return earlier;
      }
    }
    const now = d.clock.now();
    const op: Operation = {
      id: newId(d.random),
      description,
      createdAt: now,
      createdBy: callerId(ctx.caller),
      modifiedAt: now,
      done: true,
      metadata: { type, resourceId: keyId },
      response: { type: 'Empty' },
      resourceId: keyId,
      ...(ctx.idempotencyKey === undefined ? {} : { idempotencyKey: ctx.idempotencyKey }),
    };
    const audit = d.audit?.forCommit(ctx);
    await d.store.changeBindings({ scope: { type: 'key', id: keyId }, ...change, operation: op, ...(audit ? { audit } : {}) });
    d.audit?.committed(ctx);
    d.authorizer.invalidate();
    d.onChange?.();
    return op;
  }

  async function commitScopeChange(ctx: CallContext, scope: Scope, change: { replace?: AccessBinding[]; deltas?: BindingDelta[] }): Promise<BindingDelta[]> {
    const audit = d.audit?.forCommit(ctx);
    const effective = await d.store.changeBindings({ scope, ...change, ...(audit ? { audit } : {}) });
    d.audit?.committed(ctx);
    d.authorizer.invalidate();
    d.onChange?.();
    return effective;
  }

  return {
    async listKeyBindings(ctx: CallContext, keyId: string, pageSize: number, pageToken: string) {
      const { scope } = await keyScope(ctx, keyId, 'kms.accessBindings.list');
      return pageOf(await d.store.listBindings(scope), pageSize, pageToken);
    },
    async setKeyBindings(ctx: CallContext, keyId: string, bindings: readonly BindingInput[]): Promise<Operation> {
      await keyScope(ctx, keyId, 'kms.accessBindings.set');
      const replace = await checkedBindings(bindings, 'access_bindings');
      return commitKeyChange(ctx, keyId, { replace }, 'SetAccessBindingsMetadata', 'set access bindings');
    },
    async updateKeyBindings(ctx: CallContext, keyId: string, deltas: readonly DeltaInput[]): Promise<Operation> {
      await keyScope(ctx, keyId, 'kms.accessBindings.set');
      return commitKeyChange(ctx, keyId, { deltas: await checkedDeltas(deltas) }, 'UpdateAccessBindingsMetadata', 'update access bindings');
    },

    /** Folder or installation bindings (kmsd's own API). */
    async listScopeBindings(ctx: CallContext, scope: Scope): Promise<AccessBinding[]> {
      await otherScope(ctx, scope, 'kms.accessBindings.list');
      return d.store.listBindings(scope);
    },
    async setScopeBindings(ctx: CallContext, scope: Scope, bindings: readonly BindingInput[]): Promise<BindingDelta[]> {
      await otherScope(ctx, scope, 'kms.accessBindings.set');
      const replace = await checkedBindings(bindings, 'access_bindings');
      if (scope.type === 'global') await keepAnAdministrator(d.store, replace.map((binding) => ({ action: 'ADD' as const, binding })), true);
      return commitScopeChange(ctx, scope, { replace });
    },
    async updateScopeBindings(ctx: CallContext, scope: Scope, deltas: readonly DeltaInput[]): Promise<BindingDelta[]> {
      await otherScope(ctx, scope, 'kms.accessBindings.set');
      const checked = await checkedDeltas(deltas);
      if (scope.type === 'global') await keepAnAdministrator(d.store, checked, false);
      return commitScopeChange(ctx, scope, { deltas: checked });
    },
  };
}

/** An installation without any global administrator could never be managed again: refuse that change. */
async function keepAnAdministrator(store: Pick<AccessStore, 'listBindings'>, deltas: readonly BindingDelta[], replacing: boolean): Promise<void> {
  const isAdmin = (b: AccessBinding) => b.roleId === 'kms.admin' || b.roleId === 'admin';
  const current = replacing ? [] : (await store.listBindings(GLOBAL_SCOPE)).filter(isAdmin);
  const keys = new Set(current.map((b) => `${b.roleId}/${b.subject.type}/${b.subject.id}`));
  for (const d of deltas) {
    if (!isAdmin(d.binding)) continue;
    const k = `${d.binding.roleId}/${d.binding.subject.type}/${d.binding.subject.id}`;
    if (d.action === 'ADD') keys.add(k);
    else keys.delete(k);
  }
  if (keys.size === 0) throw ERR.failedPrecondition('this change would leave the installation without any kms.admin binding; grant another administrator first');
}

export type AccessService = ReturnType<typeof accessService>;
