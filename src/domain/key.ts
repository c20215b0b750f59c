import { ERR, KmsError, Code } from '../errors/kms-error.js';

// Symmetric keys and their versions: pure types and the rules of SPEC.md §1.3–1.6. No I/O here.

export const SYMMETRIC_ALGORITHMS = ['AES_128', 'AES_192', 'AES_256', 'AES_256_HSM', 'GOST_R_3412_2015_K'] as const;
export type SymmetricAlgorithm = (typeof SYMMETRIC_ALGORITHMS)[number];

export type KeyStatus = 'CREATING' | 'ACTIVE' | 'INACTIVE';
export type VersionStatus = 'ACTIVE' | 'SCHEDULED_FOR_DESTRUCTION' | 'DESTROYED';

/** Key material length in bytes of each algorithm kmsd implements in software. */
export const MATERIAL_LENGTH: Partial<Record<SymmetricAlgorithm, number>> = { AES_128: 16, AES_192: 24, AES_256: 32 };

/** Data-key length of GenerateDataKey by dataKeySpec (SPEC.md §4.2.3); unspecified means AES_256. */
export const DATA_KEY_LENGTH: Record<SymmetricAlgorithm, number> = {
  AES_128: 16,
  AES_192: 24,
  AES_256: 32,
  AES_256_HSM: 32,
  GOST_R_3412_2015_K: 32,
};

export const MAX_VERSIONS_PER_KEY = 100;
export const DAY_MS = 86_400_000;
export const DEFAULT_PENDING_PERIOD_MS = 7 * DAY_MS;
export const MIN_PENDING_PERIOD_MS = DAY_MS;
export const MAX_PENDING_PERIOD_MS = 365 * DAY_MS;
export const MIN_ROTATION_PERIOD_MS = DAY_MS;
export const MAX_ROTATION_PERIOD_MS = 3650 * DAY_MS;
/** How long a deleted key's material is kept before it is destroyed (SPEC.md §1.6). */
export const DELETION_GRACE_MS = 3 * DAY_MS;

export interface SymmetricKey {
  readonly id: string;
  readonly folderId: string;
  readonly name: string;
  readonly description: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly status: KeyStatus;
  readonly primaryVersionId: string;
  readonly defaultAlgorithm: SymmetricAlgorithm;
  readonly createdAt: number;
  readonly rotatedAt?: number;
  readonly rotationPeriodMs?: number;
  readonly deletionProtection: boolean;
  /** Set when the key was deleted: it is gone from the API and its versions await destruction. */
  readonly deletedAt?: number;
  /** Optimistic-concurrency counter; every committed change increments it. */
  readonly revision: number;
}

export interface KeyVersion {
  readonly id: string;
  readonly keyId: string;
  readonly status: VersionStatus;
  readonly algorithm: SymmetricAlgorithm;
  readonly createdAt: number;
  readonly destroyAt?: number;
  readonly hostedByHsm: boolean;
}

export interface KeyWithVersion {
  readonly key: SymmetricKey;
  readonly version: KeyVersion;
}

/** Algorithms this build can create versions for; the rest get a precise error. */
export function assertAlgorithmAvailable(algorithm: SymmetricAlgorithm, hsmConfigured: boolean): void {
  if (algorithm === 'AES_256_HSM' && !hsmConfigured) {
    throw ERR.failedPrecondition(
      'AES_256_HSM needs an HSM: start kmsd with --root-key pkcs11:... to create HSM-hosted key versions',
    );
  }
  if (algorithm === 'GOST_R_3412_2015_K') {
    throw ERR.unimplemented('GOST_R_3412_2015_K is not supported by kmsd');
  }
}

export function assertRotationPeriod(ms: number | undefined): void {
  if (ms === undefined) return;
  if (ms < MIN_ROTATION_PERIOD_MS || ms > MAX_ROTATION_PERIOD_MS) {
    throw ERR.field('rotation_period', `must be between ${MIN_ROTATION_PERIOD_MS / 1000}s and ${MAX_ROTATION_PERIOD_MS / 1000}s`);
  }
}

export function pendingPeriodOrDefault(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_PENDING_PERIOD_MS;
  if (ms < MIN_PENDING_PERIOD_MS || ms > MAX_PENDING_PERIOD_MS) {
    throw ERR.field('pending_period', `must be between ${MIN_PENDING_PERIOD_MS / 1000}s and ${MAX_PENDING_PERIOD_MS / 1000}s`);
  }
  return ms;
}

/** The key is usable for cryptography (SPEC.md §4.2): exists, not deleted, ACTIVE. */
export function assertKeyUsable(key: SymmetricKey): void {
  if (key.status !== 'ACTIVE') throw ERR.failedPrecondition(`key ${key.id} is ${key.status}`);
}

export function assertVersionUsable(version: KeyVersion): void {
  if (version.status !== 'ACTIVE') {
    throw ERR.failedPrecondition(`key ${version.keyId}: version ${version.id} is ${version.status}`);
  }
}

/** Version lifecycle as a transition table (SPEC.md §1.4). */
const VERSION_NEXT: Record<VersionStatus, readonly VersionStatus[]> = {
  ACTIVE: ['SCHEDULED_FOR_DESTRUCTION'],
  SCHEDULED_FOR_DESTRUCTION: ['ACTIVE', 'DESTROYED'],
  DESTROYED: [],
};

function transition(v: KeyVersion, to: VersionStatus, destroyAt?: number): KeyVersion {
  if (!VERSION_NEXT[v.status].includes(to)) {
    throw ERR.failedPrecondition(`key ${v.keyId}: version ${v.id} is ${v.status} and cannot become ${to}`);
  }
  const { destroyAt: _old, ...rest } = v;
  return destroyAt === undefined ? { ...rest, status: to } : { ...rest, status: to, destroyAt };
}

export function scheduleDestruction(key: SymmetricKey, v: KeyVersion, now: number, pendingMs: number): KeyVersion {
  if (v.id === key.primaryVersionId) {
    throw ERR.failedPrecondition(`key ${key.id}: version ${v.id} is the primary version and cannot be destroyed`);
  }
  return transition(v, 'SCHEDULED_FOR_DESTRUCTION', now + pendingMs);
}

export function cancelDestruction(v: KeyVersion, now: number): KeyVersion {
  if (v.status === 'SCHEDULED_FOR_DESTRUCTION' && v.destroyAt !== undefined && now >= v.destroyAt) {
    throw ERR.failedPrecondition(`key ${v.keyId}: version ${v.id} is past its destruction time`);
  }
  return transition(v, 'ACTIVE');
}

export function destroy(v: KeyVersion): KeyVersion {
  return transition(v, 'DESTROYED');
}

export function assertCanBecomePrimary(v: KeyVersion): void {
  if (v.status !== 'ACTIVE') {
    throw ERR.failedPrecondition(`key ${v.keyId}: version ${v.id} is ${v.status}; only an ACTIVE version can be primary`);
  }
}

/** Versions that count toward the 100-version limit: destroyed ones hold no material and do not. */
export function assertRoomForVersion(liveVersionCount: number, keyId: string): void {
  if (liveVersionCount >= MAX_VERSIONS_PER_KEY) {
    throw new KmsError(
      Code.FailedPrecondition,
      `key ${keyId} already has ${MAX_VERSIONS_PER_KEY} versions; destroy old versions before rotating`,
    );
  }
}

export function rotationDueAt(key: SymmetricKey): number | undefined {
  if (key.rotationPeriodMs === undefined || key.deletedAt !== undefined) return undefined;
  return (key.rotatedAt ?? key.createdAt) + key.rotationPeriodMs;
}

export function isRotationDue(key: SymmetricKey, now: number): boolean {
  const due = rotationDueAt(key);
  return due !== undefined && now >= due;
}

export function settableStatus(status: KeyStatus | 'STATUS_UNSPECIFIED'): KeyStatus {
  if (status !== 'ACTIVE' && status !== 'INACTIVE') throw ERR.field('status', 'only ACTIVE or INACTIVE can be set');
  return status;
}
