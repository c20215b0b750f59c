// Several `kmsd serve` processes over one PostgreSQL database (DESIGN.md §7): they start together on
// an empty schema, a change made through any node (keys, access bindings, tokens, principals) is
// seen by the very next request on every other node, and background work falls due on every node
// but is done once.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  b64,
  createKey,
  decryptCall,
  DAY_S,
  encrypt,
  fails,
  freshFolder,
  listVersions,
  ok,
  rotate,
  sleep,
  update,
  type EncryptResponse,
  type Operation,
  type OperationList,
} from '../helpers/api.js';
import { disposeAll, newRootKey, startNode, startNodes } from '../helpers/cluster.js';
import { purgedCount } from '../helpers/logs.js';
import { expectStartFailure, tempDir, type KmsdProcess } from '../helpers/kmsd-process.js';
import { withTestPostgres } from '../helpers/postgres.js';
import { MIGRATIONS } from '../../src/adapters/store-postgres/migrations.js';
import { bind, createPrincipal, issueToken } from '../helpers/identity.js';
import { connectionPerWorker, type PinnedConnection } from '../helpers/workers.js';

await withTestPostgres('several kmsd nodes over one PostgreSQL', (db) => {
  describe('three nodes starting at once on an empty schema', () => {
    let nodes: KmsdProcess[] = [];
    let schema: string;
    const rootKey = newRootKey();
    let url: string;

    before(async () => {
      ({ schema, url } = await db.freshSchema());
      nodes = await startNodes(3, url, { rootKey, auth: 'iam' });
    });
    after(() => disposeAll(nodes));

    it('migrate once, agree on one root key check and one administrator, and each writes a token of it', async () => {
      const migrations = await db.query<{ version: number }>(schema, 'SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(
        migrations.map((m) => m.version),
        MIGRATIONS.map((m) => m.version),
        'every migration applied once',
      );
      const meta = await db.query<{ name: string }>(schema, 'SELECT name FROM meta ORDER BY name');
      assert.deepEqual(
        meta.map((m) => m.name),
        ['audit_mac_key', 'bootstrap_admin_created_at', 'bootstrap_admin_id', 'root_key_check'],
        'one value of each, whichever node set it first',
      );
      const principals = await db.query<{ id: string }>(schema, 'SELECT id FROM principals');
      assert.equal(principals.length, 1, 'exactly one bootstrap administrator');
      const bindings = await db.query<{ scope_type: string; role_id: string; subject_id: string }>(schema, 'SELECT scope_type, role_id, subject_id FROM access_bindings');
      assert.deepEqual(bindings, [{ scope_type: 'global', role_id: 'kms.admin', subject_id: principals[0]!.id }], 'one kms.admin binding, to it');
      const tokens = await db.query<{ principal_id: string }>(schema, 'SELECT principal_id FROM tokens');
      assert.deepEqual(
        tokens.map((t) => t.principal_id),
        [principals[0]!.id, principals[0]!.id, principals[0]!.id],
        'one token per node, all of that administrator',
      );
      assert.equal(new Set(nodes.map((n) => n.token)).size, 3);
    });

    it('accept each other’s tokens', async () => {
      const folderId = freshFolder();
      for (const issuer of nodes) {
        for (const server of nodes) {
          ok(await server.call('GET', `/kms/v1/keys?folderId=${folderId}`, undefined, { authorization: `Bearer ${issuer.token}` }));
        }
      }
    });

    it('a node with another root key refuses to start, and says why', async () => {
      const dir = tempDir();
      const other = await expectStartFailure({
        dataDir: `${dir}/data`,
        rootKey: 'env:KMSD_TEST_ROOT_KEY',
        env: { KMSD_TEST_ROOT_KEY: newRootKey() },
        args: ['--store', 'postgres', '--postgres-url', url, '--postgres-pool-size', '2'],
      });
      assert.equal(other.code, 1);
      assert.match(other.stderr, /the configured root key .* is not the one this data directory was initialised with/);
    });
  });

  describe('a change through one node is seen by the next request on every other node', () => {
    let nodes: KmsdProcess[] = [];
    before(async () => {
      const { url } = await db.freshSchema();
      nodes = await startNodes(3, url, { rootKey: newRootKey(), auth: 'iam' });
    });
    after(() => disposeAll(nodes));

    const plaintext = Buffer.from('multi-node');
    const encryptOn = (node: KmsdProcess, keyId: string) => node.call<EncryptResponse>('POST', `/kms/v1/keys/${keyId}:encrypt`, { plaintext: b64(plaintext) });

    it('rotate on A: B and C encrypt with the new primary at once, every time', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      // Warm B's and C's caches with the first primary.
      assert.equal((await encrypt(b, key.id, plaintext)).versionId, key.primaryVersion.id);
      assert.equal((await encrypt(c, key.id, plaintext)).versionId, key.primaryVersion.id);
      for (let round = 0; round < 20; round++) {
        const rotated = await rotate(a, key.id);
        for (const other of [b, c]) {
          const res = ok(await encryptOn(other, key.id));
          assert.equal(res.versionId, rotated.primaryVersion.id, `round ${round}: the very next encrypt uses the new primary`);
        }
      }
    });

    it('set primary on A: B encrypts with it at once', async () => {
      const [a, b] = nodes as [KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const second = await rotate(a, key.id);
      assert.equal((await encrypt(b, key.id, plaintext)).versionId, second.primaryVersion.id);
      for (const target of [key.primaryVersion.id, second.primaryVersion.id, key.primaryVersion.id]) {
        ok(await a.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: target }));
        assert.equal(ok(await encryptOn(b, key.id)).versionId, target);
      }
    });

    it('deactivate on A: B refuses at once; reactivate on C: B serves again at once', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const sealed = await encrypt(b, key.id, plaintext);
      for (let round = 0; round < 5; round++) {
        await update(a, key.id, { updateMask: 'status', status: 'INACTIVE' });
        fails(await encryptOn(b, key.id), 400, 9, /INACTIVE/);
        fails(await decryptCall(b, key.id, sealed.ciphertext), 400, 9, /INACTIVE/);
        await update(c, key.id, { updateMask: 'status', status: 'ACTIVE' });
        ok(await encryptOn(b, key.id));
        ok(await decryptCall(b, key.id, sealed.ciphertext));
      }
    });

    it('schedule destruction on A: B stops using the version at once; cancel on C: B uses it again', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const old = await encrypt(b, key.id, plaintext);
      await rotate(a, key.id);
      ok(await decryptCall(b, key.id, old.ciphertext)); // cached on B
      ok(await a.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: old.versionId, pendingPeriod: `${DAY_S}s` }));
      fails(await decryptCall(b, key.id, old.ciphertext), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);
      ok(await c.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: old.versionId }));
      ok(await decryptCall(b, key.id, old.ciphertext));
    });

    it('delete on A: B and C answer NOT_FOUND at once', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const sealed = await encrypt(b, key.id, plaintext);
      await encrypt(c, key.id, plaintext);
      ok(await a.call('DELETE', `/kms/v1/keys/${key.id}`));
      for (const other of [b, c]) {
        fails(await encryptOn(other, key.id), 404, 5);
        fails(await decryptCall(other, key.id, sealed.ciphertext), 404, 5);
        fails(await other.call('GET', `/kms/v1/keys/${key.id}`), 404, 5);
      }
    });

    it('bindings, tokens and principals changed on one node take effect on the others at once', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const app = await createPrincipal(a, 'multi-node-app');
      const role = 'kms.keys.encrypterDecrypter';
      const subject = { type: 'serviceAccount', id: app.id };
      const first = await issueToken(a, app.id);
      const asApp = (token: string) => ({ authorization: `Bearer ${token}` });
      const encryptAs = (node: KmsdProcess, token: string) =>
        node.call<EncryptResponse>('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(plaintext) }, asApp(token));

      for (let round = 0; round < 3; round++) {
        await bind(a, { key: key.id }, role, subject);
        ok(await encryptAs(b, first.token)); // B caches the token and the grants
        await bind(a, { key: key.id }, role, subject, 'REMOVE');
        fails(await encryptAs(b, first.token), 403, 7);
        await bind(c, { key: key.id }, role, subject);
        ok(await encryptAs(b, first.token));
      }
      // A folder binding and a removal through the other node.
      await bind(c, { key: key.id }, role, subject, 'REMOVE');
      fails(await encryptAs(b, first.token), 403, 7);
      await bind(a, { folder: key.folderId }, role, subject);
      ok(await encryptAs(b, first.token));

      ok(await a.call('DELETE', `/kmsd/v1/tokens/${first.id}`));
      fails(await encryptAs(b, first.token), 401, 16);
      fails(await encryptAs(c, first.token), 401, 16);

      const second = await issueToken(c, app.id);
      ok(await encryptAs(b, second.token));
      ok(await a.call('DELETE', `/kmsd/v1/principals/${app.id}`));
      fails(await encryptAs(b, second.token), 401, 16);
      fails(await encryptAs(c, second.token), 401, 16);
    });

    it('a node that joins later serves what the others made', async () => {
      const [a] = nodes as [KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const sealed = await encrypt(a, key.id, plaintext);
      const urlOfA = a.options.args![a.options.args!.indexOf('--postgres-url') + 1]!;
      const rootKey = a.options.env!.KMSD_TEST_ROOT_KEY!;
      const late = await startNode(urlOfA, { rootKey, auth: 'iam' });
      try {
        const res = ok(await decryptCall(late, key.id, sealed.ciphertext));
        assert.equal(res.plaintext, b64(plaintext));
      } finally {
        await late.dispose();
      }
    });
  });

  describe('one node with --workers 2: each worker is a node of the change feed', () => {
    let node: KmsdProcess | undefined;
    let w: PinnedConnection[] = [];
    before(async () => {
      const { url } = await db.freshSchema();
      node = await startNode(url, { rootKey: newRootKey(), auth: 'iam', workers: 2, readyTimeoutMs: 60_000 });
      w = await connectionPerWorker(node, 2);
    });
    after(async () => {
      for (const c of w) c.close();
      await node?.dispose();
    });

    it('a rotation or a deactivation through one worker holds for the very next request on the other', async () => {
      const [a, b] = w as [PinnedConnection, PinnedConnection];
      const key = await createKey(a, { folderId: freshFolder() });
      const plaintext = Buffer.from('workers over postgres');
      for (const c of w) assert.equal((await encrypt(c, key.id, plaintext)).versionId, key.primaryVersion.id, 'cached on both workers');
      for (let round = 0; round < 6; round++) {
        const rotated = await rotate(w[round % 2]!, key.id);
        for (const c of w) assert.equal((await encrypt(c, key.id, plaintext)).versionId, rotated.primaryVersion.id, `round ${round}, worker ${c.worker}`);
      }
      await update(b, key.id, { updateMask: 'status', status: 'INACTIVE' });
      for (const c of w) fails(await c.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(plaintext) }), 400, 9, /INACTIVE/);
      await update(a, key.id, { updateMask: 'status', status: 'ACTIVE' });
      for (const c of w) ok(await c.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(plaintext) }));
    });
  });

  describe('background work falls due on every node and is done once', () => {
    let nodes: KmsdProcess[] = [];
    before(async () => {
      const { url } = await db.freshSchema();
      // A long interval: the work below is driven by the test clock alone.
      nodes = await startNodes(3, url, { rootKey: newRootKey(), auth: 'none', testClock: true, args: ['--scheduler-interval-ms', '3600000'] });
    });
    after(() => disposeAll(nodes));

    /** Moves every node's clock by `seconds`, all at once; each call returns after its node's due work. */
    const advanceAll = async (seconds: number) => {
      await Promise.all(nodes.map(async (n) => ok(await n.call('POST', '/kmsd/v1/testing/clock:advance', { duration: `${seconds}s` }))));
    };

    const operationsOf = async (node: KmsdProcess, keyId: string): Promise<Operation<unknown>[]> =>
      ok(await node.call<OperationList>('GET', `/kms/v1/keys/${keyId}/operations?pageSize=1000`)).operations ?? [];

    it('one new version and one operation per due key, then nothing more until it falls due again', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const folderId = freshFolder();
      const keys = await Promise.all(Array.from({ length: 6 }, (_, i) => createKey(nodes[i % 3]!, { folderId, rotationPeriod: `${DAY_S}s` })));
      const idle = await createKey(a, { folderId }); // no rotation period

      const rotations = async (keyId: string) =>
        (await operationsOf(b, keyId)).filter((op) => op.metadata['@type'].endsWith('RotateSymmetricKeyMetadata'));

      await advanceAll(DAY_S + 60);
      for (const key of keys) {
        const versions = await listVersions(c, key.id);
        assert.equal(versions.length, 2, `key ${key.id}: exactly one automatic rotation`);
        const ops = await rotations(key.id);
        assert.equal(ops.length, 1, `key ${key.id}: exactly one rotate operation`);
        assert.equal(ops[0]?.createdBy, 'kmsd-scheduler');
        const primary = versions.find((v) => v.primary);
        assert.equal(primary?.id, ops[0]?.metadata.newPrimaryVersionId, 'the operation names the primary that the key has');
        for (const node of nodes) assert.equal((await encrypt(node, key.id, 'x')).versionId, primary?.id, 'every node encrypts with it');
      }
      assert.equal((await listVersions(a, idle.id)).length, 1);

      await advanceAll(60); // nothing new is due
      for (const key of keys) assert.equal((await listVersions(a, key.id)).length, 2);

      await advanceAll(DAY_S);
      for (const key of keys) {
        assert.equal((await listVersions(a, key.id)).length, 3, `key ${key.id}: due again, rotated once more`);
        assert.equal((await rotations(key.id)).length, 2);
      }
    });

    it('destroys a version once and purges a deleted key once', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const folderId = freshFolder();
      const key = await createKey(a, { folderId });
      const old = key.primaryVersion.id;
      await rotate(b, key.id);
      ok(await c.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: old, pendingPeriod: `${DAY_S}s` }));
      const doomed = await createKey(b, { folderId });
      ok(await c.call('DELETE', `/kms/v1/keys/${doomed.id}`));

      await advanceAll(DAY_S + 60);
      const versions = await listVersions(a, key.id);
      assert.equal(versions.find((v) => v.id === old)?.status, 'DESTROYED');
      assert.equal(versions.length, 2);

      await advanceAll(3 * DAY_S);
      for (const node of nodes) fails(await node.call('GET', `/kms/v1/keys/${doomed.id}`), 404, 5);
      await sleep(300); // logs are written asynchronously
      const purgedBy = nodes.map((n) => purgedCount(n.stderr));
      assert.equal(
        purgedBy.reduce((x, y) => x + y, 0),
        1,
        `purged once in all, by one node (per node: ${purgedBy.join(', ')})`,
      );
    });
  });
});
