import { ERR } from '../errors/kms-error.js';
import { isKnownRole } from './roles.js';

// Access bindings (SPEC.md §7.1): a role granted to a subject on a scope. Scopes nest: a binding on
// the installation ("global") applies to every folder, one on a folder to every key in it.

export type ScopeType = 'global' | 'folder' | 'key';

export interface Scope {
  readonly type: ScopeType;
  /** The folder or key id; '' for the global scope. */
  readonly id: string;
}

export const GLOBAL_SCOPE: Scope = Object.freeze({ type: 'global', id: '' });

export type SubjectKind = 'userAccount' | 'serviceAccount' | 'federatedUser' | 'system';

export interface Subject {
  readonly type: SubjectKind;
  readonly id: string;
}

export interface AccessBinding {
  readonly roleId: string;
  readonly subject: Subject;
}

export type BindingDelta = { readonly action: 'ADD' | 'REMOVE'; readonly binding: AccessBinding };

/** Every authenticated caller. */
export const ALL_AUTHENTICATED_USERS: Subject = Object.freeze({ type: 'system', id: 'allAuthenticatedUsers' });
/** Every caller, with or without a token. */
export const ALL_USERS: Subject = Object.freeze({ type: 'system', id: 'allUsers' });

const SUBJECT_KINDS: ReadonlySet<string> = new Set(['userAccount', 'serviceAccount', 'federatedUser', 'system']);
const SYSTEM_SUBJECTS: ReadonlySet<string> = new Set([ALL_AUTHENTICATED_USERS.id, ALL_USERS.id]);

/**
 * Checks what the proto rules cannot: the role exists and the subject type is one kmsd can
 * evaluate. Whether a userAccount/serviceAccount exists is checked against the store by the caller.
 */
export function validateBinding(b: { roleId: string; subject: { type: string; id: string } }, field: string): AccessBinding {
  if (!isKnownRole(b.roleId)) throw ERR.field(`${field}.role_id`, `unknown role "${b.roleId}"`);
  if (!SUBJECT_KINDS.has(b.subject.type)) throw ERR.field(`${field}.subject.type`, `unknown subject type "${b.subject.type}"`);
  if (b.subject.type === 'federatedUser') throw ERR.field(`${field}.subject.type`, 'federatedUser subjects are not supported by kmsd');
  if (b.subject.type === 'system' && !SYSTEM_SUBJECTS.has(b.subject.id)) {
    throw ERR.field(`${field}.subject.id`, `system subject must be allAuthenticatedUsers or allUsers, got "${b.subject.id}"`);
  }
  return { roleId: b.roleId, subject: { type: b.subject.type as SubjectKind, id: b.subject.id } };
}

export const bindingKey = (b: AccessBinding): string => `${b.roleId}\u0000${b.subject.type}\u0000${b.subject.id}`;

/** The set after the deltas, in order; adding a present binding or removing an absent one is a no-op. */
export function applyDeltas(current: readonly AccessBinding[], deltas: readonly BindingDelta[]): { next: AccessBinding[]; effective: BindingDelta[] } {
  const set = new Map(current.map((b) => [bindingKey(b), b]));
  const effective: BindingDelta[] = [];
  for (const d of deltas) {
    const k = bindingKey(d.binding);
    if (d.action === 'ADD' && !set.has(k)) {
      set.set(k, d.binding);
      effective.push(d);
    } else if (d.action === 'REMOVE' && set.has(k)) {
      set.delete(k);
      effective.push(d);
    }
  }
  return { next: [...set.values()], effective };
}

/** Duplicates in a SetAccessBindings list collapse to one binding. */
export function distinctBindings(bindings: readonly AccessBinding[]): AccessBinding[] {
  return [...new Map(bindings.map((b) => [bindingKey(b), b])).values()];
}

/** The deltas that turn `current` into `next` (SetAccessBindings): removals first, then additions. */
export function replacementDeltas(current: readonly AccessBinding[], next: readonly AccessBinding[]): BindingDelta[] {
  const want = new Map(distinctBindings(next).map((b) => [bindingKey(b), b]));
  const have = new Set(current.map(bindingKey));
  return [
    ...current.filter((b) => !want.has(bindingKey(b))).map((binding) => ({ action: 'REMOVE' as const, binding })),
    ...[...want.values()].filter((b) => !have.has(bindingKey(b))).map((binding) => ({ action: 'ADD' as const, binding })),
  ];
}

/** The effective deltas of a change: a replacement, or deltas applied in order. */
export function effectiveDeltas(current: readonly AccessBinding[], change: { replace?: readonly AccessBinding[]; deltas?: readonly BindingDelta[] }): BindingDelta[] {
  return change.replace !== undefined ? replacementDeltas(current, change.replace) : applyDeltas(current, change.deltas ?? []).effective;
}
