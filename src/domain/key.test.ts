import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code, isKmsError } from '../errors/kms-error.js';
import {
  assertAlgorithmAvailable,
  assertCanBecomePrimary,
  assertKeyUsable,
  assertRoomForVersion,
  assertRotationPeriod,
  assertVersionUsable,
  cancelDestruction,
  DAY_MS,
  DEFAULT_PENDING_PERIOD_MS,
  destroy,
  isRotationDue,
  MAX_VERSIONS_PER_KEY,
  pendingPeriodOrDefault,
  rotationDueAt,
  scheduleDestruction,
  settableStatus,
  SYMMETRIC_ALGORITHMS,
  type KeyStatus,
  type KeyVersion,
  type SymmetricKey,
  type VersionStatus,
} from './key.js';

// The pure rules of SPEC.md §1.3–1.6: what a client may do to a key and its versions, and when
// background work falls due.

const T0 = Date.UTC(2026, 0, 1);

function key(fields: Partial<SymmetricKey> = {}): SymmetricKey {
  return {
    id: 'abjkey00000000000001',
    folderId: 'b1gfolder',
    name: '',
    description: '',
    labels: {},
    status: 'ACTIVE',
    primaryVersionId: 'abjprimary0000000001',
    defaultAlgorithm: 'AES_256',
    createdAt: T0,
    deletionProtection: false,
    revision: 1,
    ...fields,
  };
}

function version(status: VersionStatus, fields: Partial<KeyVersion> = {}): KeyVersion {
  return {
    id: 'abjversion0000000002',
    keyId: 'abjkey00000000000001',
    status,
    algorithm: 'AES_256',
    createdAt: T0,
    hostedByHsm: false,
    ...(status === 'SCHEDULED_FOR_DESTRUCTION' ? { destroyAt: T0 + 7 * DAY_MS } : {}),
    ...fields,
  };
}

function throwsCode(fn: () => unknown, code: Code, mentions?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${Code[code]}, got ${Code[e.code]}: ${e.message}`);
    if (mentions) assert.match(e.message, mentions);
    return true;
  });
}

describe('version status transitions (SPEC.md §1.4)', () => {
  const STATUSES: VersionStatus[] = ['ACTIVE', 'SCHEDULED_FOR_DESTRUCTION', 'DESTROYED'];
  // The one operation that moves a version to each target status.
  const NOW = T0 + DAY_MS; // before the scheduled version's destroyAt
  const moveTo: Record<VersionStatus, (v: KeyVersion) => KeyVersion> = {
    ACTIVE: (v) => cancelDestruction(v, NOW),
    SCHEDULED_FOR_DESTRUCTION: (v) => scheduleDestruction(key(), v, NOW, DEFAULT_PENDING_PERIOD_MS),
    DESTROYED: (v) => destroy(v),
  };
  const ALLOWED = new Set(['ACTIVE→SCHEDULED_FOR_DESTRUCTION', 'SCHEDULED_FOR_DESTRUCTION→ACTIVE', 'SCHEDULED_FOR_DESTRUCTION→DESTROYED']);

  for (const from of STATUSES) {
    for (const to of STATUSES) {
      const edge = `${from}→${to}`;
      if (ALLOWED.has(edge)) {
        it(`allows ${edge}`, () => {
          const before = version(from);
          const after = moveTo[to](before);
          assert.equal(after.status, to);
          assert.equal(after.id, before.id);
          assert.equal(after.keyId, before.keyId);
          assert.equal(after.algorithm, before.algorithm);
          assert.equal(after.createdAt, before.createdAt);
          assert.equal(before.status, from, 'the input version is not mutated');
        });
      } else {
        it(`refuses ${edge} with FAILED_PRECONDITION naming the version`, () => {
          throwsCode(() => moveTo[to](version(from)), Code.FailedPrecondition, /abjversion0000000002/);
        });
      }
    }
  }

  it('scheduling sets destroyAt = now + pending period; cancelling and destroying clear it', () => {
    const scheduled = scheduleDestruction(key(), version('ACTIVE'), NOW, 2 * DAY_MS);
    assert.equal(scheduled.destroyAt, NOW + 2 * DAY_MS);
    assert.equal('destroyAt' in cancelDestruction(scheduled, NOW), false);
    assert.equal('destroyAt' in destroy(scheduled), false);
  });

  it('never lets the primary version be scheduled for destruction', () => {
    const k = key();
    throwsCode(
      () => scheduleDestruction(k, version('ACTIVE', { id: k.primaryVersionId }), NOW, DEFAULT_PENDING_PERIOD_MS),
      Code.FailedPrecondition,
      /primary/,
    );
  });

  it('cancels until destroyAt and refuses from destroyAt on', () => {
    const scheduled = version('SCHEDULED_FOR_DESTRUCTION', { destroyAt: T0 + 5 * DAY_MS });
    assert.equal(cancelDestruction(scheduled, T0 + 5 * DAY_MS - 1).status, 'ACTIVE');
    throwsCode(() => cancelDestruction(scheduled, T0 + 5 * DAY_MS), Code.FailedPrecondition, /past its destruction time/);
    throwsCode(() => cancelDestruction(scheduled, T0 + 6 * DAY_MS), Code.FailedPrecondition);
  });

  it('only an ACTIVE version can become primary or be used', () => {
    assert.doesNotThrow(() => assertCanBecomePrimary(version('ACTIVE')));
    assert.doesNotThrow(() => assertVersionUsable(version('ACTIVE')));
    for (const s of ['SCHEDULED_FOR_DESTRUCTION', 'DESTROYED'] as const) {
      throwsCode(() => assertCanBecomePrimary(version(s)), Code.FailedPrecondition, new RegExp(s));
      throwsCode(() => assertVersionUsable(version(s)), Code.FailedPrecondition, new RegExp(s));
    }
  });
});

describe('key usability', () => {
  it('only an ACTIVE key is usable for cryptography', () => {
    assert.doesNotThrow(() => assertKeyUsable(key()));
    for (const status of ['INACTIVE', 'CREATING'] as const) throwsCode(() => assertKeyUsable(key({ status })), Code.FailedPrecondition, new RegExp(status));
  });
});

describe('automatic rotation (SPEC.md §1.5)', () => {
  const period = 30 * DAY_MS;

  it('is due exactly at createdAt + period when the key was never rotated', () => {
    const k = key({ rotationPeriodMs: period });
    assert.equal(rotationDueAt(k), T0 + period);
    assert.equal(isRotationDue(k, T0 + period - 1), false);
    assert.equal(isRotationDue(k, T0 + period), true);
    assert.equal(isRotationDue(k, T0 + 10 * period), true);
  });

  it('counts from rotatedAt once the key has been rotated', () => {
    const rotatedAt = T0 + 12 * DAY_MS;
    const k = key({ rotationPeriodMs: period, rotatedAt });
    assert.equal(rotationDueAt(k), rotatedAt + period);
    assert.equal(isRotationDue(k, T0 + period), false, 'not due at createdAt + period any more');
    assert.equal(isRotationDue(k, rotatedAt + period - 1), false);
    assert.equal(isRotationDue(k, rotatedAt + period), true);
  });

  it('is never due without a rotation period', () => {
    const k = key();
    assert.equal(rotationDueAt(k), undefined);
    assert.equal(isRotationDue(k, T0 + 100_000 * DAY_MS), false);
  });

  it('is never due for a deleted key', () => {
    const k = key({ rotationPeriodMs: period, deletedAt: T0 + DAY_MS });
    assert.equal(rotationDueAt(k), undefined);
    assert.equal(isRotationDue(k, T0 + 10 * period), false);
  });
});

describe('periods', () => {
  it('pending period defaults to 7 days', () => {
    assert.equal(DEFAULT_PENDING_PERIOD_MS, 7 * DAY_MS);
    assert.equal(pendingPeriodOrDefault(undefined), 7 * DAY_MS);
  });

  it('pending period accepts 1 to 365 days inclusive and refuses anything outside, naming pending_period', () => {
    assert.equal(pendingPeriodOrDefault(DAY_MS), DAY_MS);
    assert.equal(pendingPeriodOrDefault(365 * DAY_MS), 365 * DAY_MS);
    for (const ms of [0, 1, DAY_MS - 1, 365 * DAY_MS + 1]) {
      throwsCode(() => pendingPeriodOrDefault(ms), Code.InvalidArgument, /^pending_period: /);
    }
  });

  it('rotation period accepts absent and 1 to 3650 days inclusive, refusing the rest naming rotation_period', () => {
    for (const ms of [undefined, DAY_MS, 365 * DAY_MS, 3650 * DAY_MS]) assert.doesNotThrow(() => assertRotationPeriod(ms));
    for (const ms of [0, 1000, DAY_MS - 1, 3650 * DAY_MS + 1]) {
      throwsCode(() => assertRotationPeriod(ms), Code.InvalidArgument, /^rotation_period: /);
    }
  });
});

describe('settableStatus', () => {
  it('lets clients set ACTIVE and INACTIVE', () => {
    assert.equal(settableStatus('ACTIVE'), 'ACTIVE');
    assert.equal(settableStatus('INACTIVE'), 'INACTIVE');
  });

  it('refuses CREATING and STATUS_UNSPECIFIED with INVALID_ARGUMENT naming status', () => {
    for (const s of ['CREATING', 'STATUS_UNSPECIFIED'] as (KeyStatus | 'STATUS_UNSPECIFIED')[]) {
      throwsCode(() => settableStatus(s), Code.InvalidArgument, /^status: /);
    }
  });
});

describe('assertAlgorithmAvailable', () => {
  it('accepts the software AES algorithms with or without an HSM', () => {
    for (const a of ['AES_128', 'AES_192', 'AES_256'] as const) {
      assert.doesNotThrow(() => assertAlgorithmAvailable(a, false));
      assert.doesNotThrow(() => assertAlgorithmAvailable(a, true));
    }
  });

  it('refuses AES_256_HSM without an HSM with FAILED_PRECONDITION, and accepts it with one', () => {
    throwsCode(() => assertAlgorithmAvailable('AES_256_HSM', false), Code.FailedPrecondition, /HSM/);
    assert.doesNotThrow(() => assertAlgorithmAvailable('AES_256_HSM', true));
  });

  it('refuses GOST with UNIMPLEMENTED, HSM or not', () => {
    throwsCode(() => assertAlgorithmAvailable('GOST_R_3412_2015_K', false), Code.Unimplemented, /GOST/);
    throwsCode(() => assertAlgorithmAvailable('GOST_R_3412_2015_K', true), Code.Unimplemented, /GOST/);
  });

  it('knows exactly the five algorithms of SPEC.md §1.7', () => {
    assert.deepEqual([...SYMMETRIC_ALGORITHMS], ['AES_128', 'AES_192', 'AES_256', 'AES_256_HSM', 'GOST_R_3412_2015_K']);
  });
});

describe('100-version limit', () => {
  it('allows a new version while fewer than 100 are live', () => {
    assert.equal(MAX_VERSIONS_PER_KEY, 100);
    assert.doesNotThrow(() => assertRoomForVersion(0, 'abjk'));
    assert.doesNotThrow(() => assertRoomForVersion(99, 'abjk'));
  });

  it('refuses the 101st version with FAILED_PRECONDITION naming the key', () => {
    throwsCode(() => assertRoomForVersion(100, 'abjk'), Code.FailedPrecondition, /abjk.*100/);
    throwsCode(() => assertRoomForVersion(150, 'abjk'), Code.FailedPrecondition);
  });
});
