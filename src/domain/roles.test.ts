import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyDeltas, replacementDeltas, validateBinding, type AccessBinding } from './access.js';
import { isKnownRole, permissionsOf, ROLE_IDS } from './roles.js';

// The role graph of SPEC.md §7.2: inheritance is containment of permission sets.

const includes = (big: string, small: string) => [...permissionsOf(small)].every((p) => permissionsOf(big).has(p));

describe('roles', () => {
  it('follows the inheritance of the docs: auditor ⊂ viewer ⊂ editor ⊂ admin, key roles ⊂ encrypterDecrypter ⊂ editor', () => {
    for (const [big, small] of [
      ['kms.viewer', 'kms.auditor'],
      ['kms.editor', 'kms.viewer'],
      ['kms.admin', 'kms.editor'],
      ['kms.keys.encrypterDecrypter', 'kms.keys.encrypter'],
      ['kms.keys.encrypterDecrypter', 'kms.keys.decrypter'],
      ['kms.keys.encrypterDecrypter', 'kms.keys.user'],
      ['kms.editor', 'kms.keys.encrypterDecrypter'],
      ['kms.editor', 'kms.asymmetricSignatureKeys.signer'],
      ['kms.editor', 'kms.asymmetricEncryptionKeys.decrypter'],
    ]) {
      assert.ok(includes(big!, small!), `${small} ⊂ ${big}`);
    }
  });

  it('each step up the admin chain adds something', () => {
    assert.ok(!includes('kms.viewer', 'kms.editor') && !includes('kms.editor', 'kms.admin') && !includes('kms.keys.encrypter', 'kms.keys.encrypterDecrypter'));
  });

  it('keeps data access away from auditors and viewers, and admin-only rights away from editors', () => {
    for (const r of ['kms.auditor', 'kms.viewer']) {
      assert.ok(!permissionsOf(r).has('kms.keys.encrypt') && !permissionsOf(r).has('kms.keys.decrypt'), r);
    }
    for (const p of ['kms.keys.delete', 'kms.accessBindings.set', 'kms.keys.scheduleVersionDestruction', 'kms.keys.updateStatus', 'kmsd.principals.manage'] as const) {
      assert.ok(!permissionsOf('kms.editor').has(p), p);
      assert.ok(permissionsOf('kms.admin').has(p), p);
    }
  });

  it('maps primitive roles to the kms.* role of the same level and knows nothing else', () => {
    for (const level of ['auditor', 'viewer', 'editor', 'admin']) assert.deepEqual(permissionsOf(level), permissionsOf(`kms.${level}`));
    assert.equal(isKnownRole('kms.superuser'), false);
    assert.equal(permissionsOf('kms.superuser').size, 0);
    assert.ok(ROLE_IDS.every(isKnownRole));
  });
});

describe('access bindings', () => {
  const b = (roleId: string, id: string): AccessBinding => ({ roleId, subject: { type: 'serviceAccount', id } });

  it('deltas apply in order; adding a present binding or removing an absent one is a no-op', () => {
    const { next, effective } = applyDeltas([b('kms.viewer', 'a')], [
      { action: 'ADD', binding: b('kms.viewer', 'a') },
      { action: 'ADD', binding: b('kms.admin', 'b') },
      { action: 'REMOVE', binding: b('kms.editor', 'c') },
      { action: 'REMOVE', binding: b('kms.viewer', 'a') },
    ]);
    assert.deepEqual(next, [b('kms.admin', 'b')]);
    assert.deepEqual(effective.map((d) => d.action), ['ADD', 'REMOVE']);
  });

  it('a replacement is expressed as the removals and additions that make it', () => {
    assert.deepEqual(replacementDeltas([b('kms.viewer', 'a'), b('kms.admin', 'b')], [b('kms.admin', 'b'), b('kms.editor', 'c'), b('kms.editor', 'c')]), [
      { action: 'REMOVE', binding: b('kms.viewer', 'a') },
      { action: 'ADD', binding: b('kms.editor', 'c') },
    ]);
  });

  it('refuses unknown roles, subject types and system subjects', () => {
    assert.throws(() => validateBinding({ roleId: 'root', subject: { type: 'serviceAccount', id: 'a' } }, 'b'), /unknown role/);
    assert.throws(() => validateBinding({ roleId: 'kms.viewer', subject: { type: 'group', id: 'a' } }, 'b'), /subject type/);
    assert.throws(() => validateBinding({ roleId: 'kms.viewer', subject: { type: 'federatedUser', id: 'a' } }, 'b'), /not supported/);
    assert.throws(() => validateBinding({ roleId: 'kms.viewer', subject: { type: 'system', id: 'group:organization:x:users' } }, 'b'), /allAuthenticatedUsers or allUsers/);
    assert.deepEqual(validateBinding({ roleId: 'viewer', subject: { type: 'system', id: 'allUsers' } }, 'b'), { roleId: 'viewer', subject: { type: 'system', id: 'allUsers' } });
  });
});
