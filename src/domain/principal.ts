// Who is calling. Subjects are shaped like Yandex IAM subjects (SPEC.md §7.1) so that access
// bindings (a later issue) can name them directly.

export type SubjectType = 'userAccount' | 'serviceAccount' | 'system';

export interface Principal {
  readonly id: string;
  readonly type: SubjectType;
  readonly name: string;
  readonly createdAt: number;
  /** Holds kms.admin on everything. The bootstrap administrator and the --auth none caller do. */
  readonly admin: boolean;
}

export interface TokenRecord {
  readonly id: string;
  readonly principalId: string;
  /** SHA-256 of the token's secret part; the secret itself is never stored. */
  readonly secretHash: Buffer;
  readonly createdAt: number;
  readonly expiresAt?: number;
  readonly revokedAt?: number;
}

/** The caller of --auth none: every request is served as this administrator. */
export const DEV_MODE_PRINCIPAL: Principal = Object.freeze({
  id: 'kmsd-dev-admin',
  type: 'userAccount',
  name: 'dev mode administrator (--auth none)',
  createdAt: 0,
  admin: true,
});
