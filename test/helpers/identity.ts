// kmsd's own identity API (/kmsd/v1) from tests, as the administrator of a KmsdProcess.
import { ok } from './api.js';
import type { Caller } from './kmsd-process.js';

export interface PrincipalJson {
  readonly id: string;
  readonly type: 'serviceAccount' | 'userAccount';
  readonly name: string;
}

export interface IssuedTokenJson {
  readonly token: string;
  readonly id: string;
  readonly principalId: string;
  readonly expiresAt?: string;
}

export async function createPrincipal(kmsd: Caller, name: string, type: PrincipalJson['type'] = 'serviceAccount'): Promise<PrincipalJson> {
  return ok(await kmsd.call<PrincipalJson>('POST', '/kmsd/v1/principals', { type, name }));
}

export async function issueToken(kmsd: Caller, principalId: string, body: Record<string, unknown> = {}): Promise<IssuedTokenJson> {
  return ok(await kmsd.call<IssuedTokenJson>('POST', `/kmsd/v1/principals/${principalId}/tokens`, body));
}

/** A principal and a bearer token for it. */
export async function newCaller(kmsd: Caller, name: string, type: PrincipalJson['type'] = 'serviceAccount'): Promise<{ principal: PrincipalJson; token: string; authorization: string }> {
  const principal = await createPrincipal(kmsd, name, type);
  const { token } = await issueToken(kmsd, principal.id);
  return { principal, token, authorization: `Bearer ${token}` };
}

export type Scope = { folder: string } | { key: string } | 'installation';

/** Adds (or removes) one binding on a folder, a key or the installation, as the administrator. */
export async function bind(kmsd: Caller, scope: Scope, roleId: string, subject: { type: string; id: string }, action: 'ADD' | 'REMOVE' = 'ADD'): Promise<void> {
  const body = { accessBindingDeltas: [{ action, accessBinding: { roleId, subject } }] };
  const path =
    scope === 'installation'
      ? '/kmsd/v1/installation:updateAccessBindings'
      : 'folder' in scope
        ? `/kmsd/v1/folders/${scope.folder}:updateAccessBindings`
        : `/kms/v1/keys/${scope.key}:updateAccessBindings`;
  ok(await kmsd.call('POST', path, body));
}
