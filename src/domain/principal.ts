// Who is calling. Subjects are shaped like Yandex IAM subjects (SPEC.md §7.1) so that access
// bindings name them directly: `{ type: 'serviceAccount', id: 'aje…' }`.

export type PrincipalType = 'userAccount' | 'serviceAccount';

export interface Principal {
  readonly id: string;
  readonly type: PrincipalType;
  readonly name: string;
  readonly description?: string;
  readonly createdAt: number;
}

/** A caller as the authorizer sees it: a stored principal, the dev-mode administrator, or nobody. */
export type Caller =
  | { readonly kind: 'principal'; readonly principal: Principal }
  /** --auth none: every request is served as an administrator of everything. */
  | { readonly kind: 'dev'; readonly principal: Principal }
  /** No Authorization header: only bindings to system:allUsers apply. */
  | { readonly kind: 'anonymous' };

export interface TokenRecord {
  readonly id: string;
  readonly principalId: string;
  /** SHA-256 of the token's secret part; the secret itself is never stored. */
  readonly secretHash: Buffer;
  readonly createdAt: number;
  readonly expiresAt?: number;
  readonly revokedAt?: number;
  readonly description?: string;
}

/** The caller of --auth none. */
export const DEV_MODE_PRINCIPAL: Principal = Object.freeze({
  id: 'kmsd-dev-admin',
  type: 'userAccount',
  name: 'dev mode administrator (--auth none)',
  createdAt: 0,
});

export const DEV_MODE_CALLER: Caller = Object.freeze({ kind: 'dev', principal: DEV_MODE_PRINCIPAL });
export const ANONYMOUS_CALLER: Caller = Object.freeze({ kind: 'anonymous' });

/** The id recorded for a caller in operations and audit records. */
export function callerId(c: Caller): string {
  return c.kind === 'anonymous' ? 'anonymous' : c.principal.id;
}
export function callerType(c: Caller): string {
  return c.kind === 'anonymous' ? 'anonymous' : c.principal.type;
}
