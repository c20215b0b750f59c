import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { cryptoRandom } from '../../adapters/random.js';
import { openSqliteStore } from '../../adapters/store-sqlite/sqlite-store.js';
import { GLOBAL_SCOPE } from '../../domain/access.js';
import type { Store } from '../../ports/store.js';
import { ADMIN_TOKEN_FILE, ensureBootstrapAdmin } from './bootstrap.js';

// The administrator of the first start: made once, with kms.admin on the installation, and its
// token written to the data directory; never resurrected once an operator has removed it.

let dir: string;
let store: Store;
const clock = { now: () => Date.UTC(2026, 10, 28) };
const boot = () => ensureBootstrapAdmin({ store, dataDir: dir, random: cryptoRandom, clock });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmsd-boot-'));
  store = openSqliteStore(':memory:');
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ensureBootstrapAdmin', () => {
  it('creates the administrator with kms.admin on the installation and a 0600 token file, once', async () => {
    const first = await boot();
    assert.equal(first.issued, true);
    assert.equal(statSync(join(dir, ADMIN_TOKEN_FILE)).mode & 0o777, 0o600);
    assert.deepEqual(await store.listBindings(GLOBAL_SCOPE), [{ roleId: 'kms.admin', subject: { type: 'userAccount', id: first.principalId } }]);
    const again = await boot();
    assert.deepEqual(again, { ...first, issued: false });
    assert.equal((await store.listTokens(first.principalId)).length, 1);
  });

  it('issues a new token when the file was removed', async () => {
    const first = await boot();
    const token = readFileSync(join(dir, ADMIN_TOKEN_FILE), 'utf8');
    unlinkSync(join(dir, ADMIN_TOKEN_FILE));
    assert.equal((await boot()).issued, true);
    assert.notEqual(readFileSync(join(dir, ADMIN_TOKEN_FILE), 'utf8'), token);
    assert.equal((await store.listTokens(first.principalId)).length, 2);
  });

  it('does not bring back an administrator an operator deleted, nor its role', async () => {
    const first = await boot();
    await store.deletePrincipal(first.principalId);
    unlinkSync(join(dir, ADMIN_TOKEN_FILE));
    const after = await boot();
    assert.equal(after.issued, false);
    assert.equal(await store.getPrincipal(first.principalId), undefined);
    assert.deepEqual(await store.listBindings(GLOBAL_SCOPE), []);
    assert.equal(existsSync(join(dir, ADMIN_TOKEN_FILE)), false);
  });
});
