import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { DAY_MS } from '../../domain/key.js';
import { Code, isKmsError } from '../../errors/kms-error.js';
import {
  auditChainProblems,
  auditEvent,
  auditSeal,
  createKey,
  makeKey,
  makeOperation,
  makePrincipal,
  makeVersion,
  storeContract,
  T0,
} from '../../../test/contract/store.contract.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SchemaVersionError, TABLES } from './migrations.js';
import { openPostgresStore, type PostgresStore } from './postgres-store.js';
import type { FeedEvent } from '../../ports/change-feed.js';
import { inSchema, withTestPostgres, type TestPostgres } from '../../../test/helpers/postgres.js';

// The store contract and the PostgreSQL-specific behaviour, against the database named by
// KMSD_TEST_POSTGRES_URL (see test/helpers/postgres.ts): each test works in schemas of its own.

await withTestPostgres('PostgreSQL store', (db) => postgresTests(db));

/** Polls `check` until it holds, failing with `what` after 10 s. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function postgresTests(db: TestPostgres): void {
  const { url, freshSchema, query } = db;

  let contract: { schema: string; url: string } | undefined;
  before(async () => {
    contract = await freshSchema();
  });

  storeContract('postgres', async () => {
    assert.ok(contract);
    const store = await openPostgresStore(contract.url, { poolSize: 4 });
    await query(contract.schema, `TRUNCATE ${TABLES.join(', ')}`);
    return store;
  });

  describe('PostgresStore', () => {
    const migrationRows = (schema: string) =>
      query<{ version: number; applied_at: string }>(schema, 'SELECT version, applied_at FROM schema_migrations ORDER BY version');

    it('numbers its migrations 1, 2, … in order', () => {
      assert.deepEqual(
        MIGRATIONS.map((m) => m.version),
        Array.from({ length: MIGRATIONS.length }, (_, i) => i + 1),
      );
      assert.equal(LATEST_SCHEMA_VERSION, MIGRATIONS.length);
    });

    it('records every migration once, and reopening applies nothing', async () => {
      const { schema, url: schemaUrl } = await freshSchema();
      const before = Date.now();
      const first = await openPostgresStore(schemaUrl);
      assert.equal(await first.schemaVersion(), LATEST_SCHEMA_VERSION);
      await first.close();
      const rows = await migrationRows(schema);
      assert.deepEqual(
        rows.map((r) => r.version),
        MIGRATIONS.map((m) => m.version),
      );
      for (const r of rows) assert.ok(Number(r.applied_at) >= before && Number(r.applied_at) <= Date.now());

      const reopened = await openPostgresStore(schemaUrl);
      const { key } = await createKey(reopened);
      await reopened.close();
      assert.deepEqual(await migrationRows(schema), rows);

      const third = await openPostgresStore(schemaUrl);
      try {
        assert.deepEqual(await third.getKey(key.id), key, 'reopening keeps the data');
      } finally {
        await third.close();
      }
    });

    it('migrates once when several nodes start at the same time on an empty schema', async () => {
      const { schema, url: schemaUrl } = await freshSchema();
      const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore(schemaUrl, { poolSize: 2 })));
      try {
        assert.deepEqual(
          (await migrationRows(schema)).map((r) => r.version),
          MIGRATIONS.map((m) => m.version),
        );
        const { key } = await createKey(stores[0]!);
        for (const s of stores) assert.deepEqual(await s.getKey(key.id), key);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    it('refuses a schema written by a newer kmsd, naming both versions, and leaves no connection open', async () => {
      const { schema, url: schemaUrl } = await freshSchema();
      await (await openPostgresStore(schemaUrl)).close();
      const newer = LATEST_SCHEMA_VERSION + 1;
      await query(schema, 'INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)', [newer]);

      await assert.rejects(
        openPostgresStore(schemaUrl),
        (e: unknown) =>
          e instanceof SchemaVersionError &&
          e.message.includes(`schema ${schema}`) &&
          e.message.includes(`version ${newer} is newer than this kmsd supports (${LATEST_SCHEMA_VERSION})`),
      );
      // The server forgets a backend a moment after its client hung up.
      await until('the failed open to end its pool', async () => (await db.connections(schema)) === 0);

      await query(schema, 'DELETE FROM schema_migrations WHERE version = $1', [newer]);
      await (await openPostgresStore(schemaUrl)).close();
    });

    it('names the problem when the search_path schema does not exist', async () => {
      const missing = `kmsd_test_missing_${randomBytes(4).toString('hex')}`;
      await assert.rejects(openPostgresStore(inSchema(url, missing)), /no schema of the search_path exists/);
    });

    it('answers UNAVAILABLE when the database cannot be reached', async () => {
      const down = new URL(url);
      down.hostname = '127.0.0.1';
      down.port = '1'; // nothing listens there
      await assert.rejects(openPostgresStore(down.toString()), (e: unknown) => {
        assert.ok(isKmsError(e), String(e));
        assert.equal(e.code, Code.Unavailable);
        assert.match(e.message, /the database is unavailable \(ECONNREFUSED\)/);
        return true;
      });
    });

    it('answers UNAVAILABLE or the truth while the server drops its connections, and recovers', async () => {
      const { schema, url: schemaUrl } = await freshSchema();
      const store = await openPostgresStore(schemaUrl, { poolSize: 2 });
      try {
        const { key } = await createKey(store);
        const terminate = () => query(schema, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [schema]);
        for (let round = 0; round < 3; round++) {
          await terminate();
          const reads = await Promise.allSettled([store.getKey(key.id), store.getKey(key.id), store.countLiveVersions(key.id)]);
          for (const r of reads) {
            if (r.status === 'rejected') {
              assert.ok(isKmsError(r.reason) && r.reason.code === Code.Unavailable, `expected UNAVAILABLE, got ${String(r.reason)}`);
            }
          }
          const [a, b, live] = reads;
          if (a?.status === 'fulfilled') assert.deepEqual(a.value, key);
          if (b?.status === 'fulfilled') assert.deepEqual(b.value, key);
          if (live?.status === 'fulfilled') assert.equal(live.value, 1);
        }
        // Broken connections were dropped: the store works again.
        assert.deepEqual(await store.getKey(key.id), key);
        const updated = { ...key, name: 'after', revision: 2 };
        await store.commitKeyChange({ key: updated, expectRevision: 1 });
        assert.deepEqual(await store.getKey(key.id), updated);
      } finally {
        await store.close();
      }
    });

    it('lets exactly one of two nodes commit a change made from the same revision', async () => {
      const { url: schemaUrl } = await freshSchema();
      const a = await openPostgresStore(schemaUrl, { poolSize: 2 });
      const b = await openPostgresStore(schemaUrl, { poolSize: 2 });
      try {
        for (let round = 0; round < 10; round++) {
          const { key } = await createKey(a, { rotationPeriodMs: DAY_MS });
          const change = (store: typeof a, name: string) =>
            store.commitKeyChange({
              key: { ...key, name, revision: key.revision + 1 },
              expectRevision: key.revision,
              operation: makeOperation(key.id, { description: name }),
            });
          const results = await Promise.allSettled([change(a, 'by a'), change(b, 'by b')]);
          const won = results.filter((r) => r.status === 'fulfilled');
          const lost = results.filter((r) => r.status === 'rejected');
          assert.equal(won.length, 1, `round ${round}: one commit succeeds`);
          assert.equal(lost.length, 1);
          const reason: unknown = lost[0]?.reason;
          assert.ok(isKmsError(reason) && reason.code === Code.Aborted, `round ${round}: ${String(reason)}`);
          const stored = await b.getKey(key.id);
          assert.equal(stored?.revision, key.revision + 1);
          const ops = await a.listOperations(key.id, { pageSize: 0, pageToken: '' });
          assert.deepEqual(
            ops.items.map((o) => o.description),
            [stored?.name],
            'only the winner’s operation is stored',
          );
        }
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('lets exactly one of two nodes create the same key', async () => {
      const { url: schemaUrl } = await freshSchema();
      const a = await openPostgresStore(schemaUrl);
      const b = await openPostgresStore(schemaUrl);
      try {
        const key = makeKey({ createdAt: T0 });
        const results = await Promise.allSettled([createKey(a, key), createKey(b, key)]);
        const lost = results.filter((r) => r.status === 'rejected');
        assert.equal(lost.length, 1);
        const reason: unknown = lost[0]?.reason;
        assert.ok(isKmsError(reason) && reason.code === Code.AlreadyExists, String(reason));
        assert.deepEqual(await a.getKey(key.id), key);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('migration 2 turns admin principals into global kms.admin bindings and keeps principals and tokens', async () => {
      const { schema, url: schemaUrl } = await freshSchema();
      await query(schema, 'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
      await query(schema, MIGRATIONS[0]!.sql);
      await query(schema, 'INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)');
      const insert = 'INSERT INTO principals (id, type, name, created_at, admin) VALUES ($1, $2, $3, $4, $5)';
      await query(schema, insert, ['ajeadmin', 'userAccount', 'admin', T0, true]);
      await query(schema, insert, ['ajerobot', 'serviceAccount', 'robot', T0 + 1, true]);
      await query(schema, insert, ['ajeplain', 'userAccount', 'plain', T0 + 2, false]);
      await query(schema, 'INSERT INTO tokens (id, principal_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)', ['tok1', 'ajeplain', Buffer.alloc(32, 7), T0]);

      const store = await openPostgresStore(schemaUrl);
      try {
        assert.equal(await store.schemaVersion(), LATEST_SCHEMA_VERSION);
        assert.deepEqual(await store.listBindings({ type: 'global', id: '' }), [
          { roleId: 'kms.admin', subject: { type: 'serviceAccount', id: 'ajerobot' } },
          { roleId: 'kms.admin', subject: { type: 'userAccount', id: 'ajeadmin' } },
        ]);
        assert.deepEqual(await store.bindingsOfSubjects([{ type: 'userAccount', id: 'ajeplain' }]), []);
        assert.deepEqual(await store.getPrincipal('ajeplain'), { id: 'ajeplain', type: 'userAccount', name: 'plain', createdAt: T0 + 2 });
        assert.deepEqual(await store.getToken('tok1'), { id: 'tok1', principalId: 'ajeplain', secretHash: Buffer.alloc(32, 7), createdAt: T0 });
        const columns = await query<{ column_name: string }>(
          schema,
          `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'principals' ORDER BY column_name`,
          [schema],
        );
        assert.deepEqual(columns.map((c) => c.column_name), ['created_at', 'description', 'id', 'name', 'type']);
      } finally {
        await store.close();
      }
    });

    it('numbers one audit chain without gaps while several nodes append to an empty log at once', async () => {
      const { url: schemaUrl } = await freshSchema();
      const nodes = [await openPostgresStore(schemaUrl, { poolSize: 3 }), await openPostgresStore(schemaUrl, { poolSize: 3 })];
      try {
        // Every write starts before any has committed, so many of them find no head row at all.
        const writes = Array.from({ length: 30 }, (_, i) => {
          const node = nodes[i % 2]!;
          const audit = { events: [auditEvent(i)], seal: auditSeal };
          if (i % 3 === 0) return node.createPrincipal(makePrincipal(), audit);
          if (i % 3 === 1) return createKey(node, {}, { audit });
          return node.appendAudit({ events: [auditEvent(i), auditEvent(i + 100)], seal: auditSeal });
        });
        await Promise.all(writes);
        const records = await nodes[1]!.scanAudit(0, 1000);
        assert.deepEqual(
          records.map((r) => r.seq),
          Array.from({ length: 40 }, (_, i) => i + 1),
        );
        assert.equal((await nodes[0]!.getAuditHead())?.seq, 40);
        assert.deepEqual(await auditChainProblems(nodes[0]!), []);
      } finally {
        await Promise.all(nodes.map((n) => n.close()));
      }
    });

    it('keeps one whole chain when each node group-commits after the head it wrote last and others move it meanwhile', async () => {
      const { url: schemaUrl } = await freshSchema();
      const nodes = [await openPostgresStore(schemaUrl, { poolSize: 3 }), await openPostgresStore(schemaUrl, { poolSize: 3 })];
      const [a, b] = nodes as [PostgresStore, PostgresStore];
      let n = 0;
      const group = (size: number) => ({ events: Array.from({ length: size }, () => auditEvent(++n)), seal: auditSeal });
      try {
        // One after another: a's second and third groups go after the head it wrote; b's write and
        // the mutation on a then leave a's known head stale, so its next group must find that out.
        await a.appendAudit(group(2));
        await a.appendAudit(group(3));
        await a.appendAudit(group(1));
        await b.appendAudit(group(2));
        await a.appendAudit(group(2));
        await a.createPrincipal(makePrincipal(), group(1));
        await a.appendAudit(group(4));
        await b.appendAudit(group(1));
        // Then both nodes at once, each one group at a time as its audit log does, with mutations between.
        await Promise.all(
          nodes.map(async (node, i) => {
            for (let round = 0; round < 15; round++) {
              if (round % 5 === i) await createKey(node, {}, { audit: group(1) });
              await node.appendAudit(group(1 + (round % 3)));
            }
          }),
        );
        const records = await b.scanAudit(0, 1000);
        assert.deepEqual(
          records.map((r) => r.seq),
          Array.from({ length: n }, (_, i) => i + 1),
        );
        assert.equal((await a.getAuditHead())?.seq, n);
        assert.deepEqual(await auditChainProblems(a), []);
      } finally {
        await Promise.all(nodes.map((x) => x.close()));
      }
    });

    it('serialises binding changes of one scope across nodes', async () => {
      const { url: schemaUrl } = await freshSchema();
      const nodes = [await openPostgresStore(schemaUrl, { poolSize: 3 }), await openPostgresStore(schemaUrl, { poolSize: 3 })];
      const scope = { type: 'folder' as const, id: 'b1gshared' };
      try {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            nodes[i % 2]!.changeBindings({ scope, replace: [{ roleId: 'kms.viewer', subject: { type: 'serviceAccount', id: `ajenode${i}` } }] }),
          ),
        );
        assert.equal((await nodes[0]!.listBindings(scope)).length, 1, 'the last replacement wins whole');
        const count = (action: string) => results.flat().filter((d) => d.action === action).length;
        assert.deepEqual([count('ADD'), count('REMOVE')], [20, 19]);
      } finally {
        await Promise.all(nodes.map((n) => n.close()));
      }
    });

    it('stores times as BIGINT and reads them back as numbers beyond 2^31', async () => {
      const { url: schemaUrl } = await freshSchema();
      const store = await openPostgresStore(schemaUrl);
      try {
        const far = 4_102_444_800_000; // 2100-01-01
        const { key } = await createKey(store, { createdAt: far, rotationPeriodMs: 3650 * DAY_MS, revision: 2 ** 40 });
        assert.deepEqual(await store.getKey(key.id), key);
        assert.deepEqual(await store.findKeysDueForRotation(far + 3650 * DAY_MS, 10), [key]);
      } finally {
        await store.close();
      }
    });

    describe('change feed across nodes', () => {
      type Heard = { events: FeedEvent[]; changed: () => string[]; stop: () => void };
      async function listening(store: PostgresStore): Promise<Heard> {
        const events: FeedEvent[] = [];
        const stop = store.changes.subscribe((e) => events.push(e));
        await until('the listener', () => store.changes.live);
        return { events, changed: () => events.flatMap((e) => (e.kind === 'changed' ? [`${e.change.topic}:${e.change.id}`] : [])), stop };
      }

      it('one node hears what another commits, when it commits, and nothing of what it rolls back', async () => {
        const { url: schemaUrl } = await freshSchema();
        const a = await openPostgresStore(schemaUrl, { poolSize: 2 });
        const b = await openPostgresStore(schemaUrl, { poolSize: 2 });
        try {
          assert.equal(b.changes.live, false, 'not live before anyone subscribes: nothing is listening yet');
          const heard = await listening(b);
          const { key } = await createKey(a);
          const failed = makeKey();
          await assert.rejects(a.commitKeyChange({ key: failed, insertVersions: [{ version: makeVersion(failed.id, { id: key.primaryVersionId }), wrappedMaterial: Buffer.alloc(40) }] }));
          const { key: last } = await createKey(a);
          await until('the last change', () => heard.changed().includes(`key:${last.id}`));
          assert.deepEqual(heard.changed(), [`key:${key.id}`, `key:${last.id}`]);
          assert.deepEqual(heard.events[0], { kind: 'resync' }, 'listening starts with a resync: what was cached before may be stale');
          heard.stop();
        } finally {
          await a.close();
          await b.close();
        }
      });

      it('answers a write only once every other listening node has heard it', async () => {
        const { url: schemaUrl } = await freshSchema();
        const a = await openPostgresStore(schemaUrl, { poolSize: 2 });
        const b = await openPostgresStore(schemaUrl, { poolSize: 2 });
        const c = await openPostgresStore(schemaUrl, { poolSize: 2 });
        try {
          const [onA, onB, onC] = await Promise.all([listening(a), listening(b), listening(c)]);
          // Each knows the others once it has heard their hellos, answered at once.
          await new Promise((r) => setTimeout(r, 100));
          for (let round = 0; round < 30; round++) {
            const { key } = await createKey(a);
            // No waiting here: the write has returned, so B and C have already dropped the key.
            assert.ok(onB.changed().includes(`key:${key.id}`), `round ${round}: B heard it before A answered`);
            assert.ok(onC.changed().includes(`key:${key.id}`), `round ${round}: C heard it before A answered`);
          }
          for (const h of [onA, onB, onC]) h.stop();
        } finally {
          await Promise.all([a.close(), b.close(), c.close()]);
        }
      });

      it('waits for a node that does not confirm no longer than the timeout, and says so; a goodbye ends the wait', async () => {
        const { schema, url: schemaUrl } = await freshSchema();
        const warnings: unknown[] = [];
        const a = await openPostgresStore(schemaUrl, {
          poolSize: 2,
          listener: { confirmTimeoutMs: 400, onWarning: (message, details) => warnings.push({ message, details }) },
        });
        try {
          const onA = await listening(a);
          const confirms = `'kmsd_confirms_' || substr(md5(current_schema()), 1, 16)`;
          await query(schema, `SELECT pg_notify(${confirms}, 'hello ghostnode')`);
          await new Promise((r) => setTimeout(r, 100));
          const started = Date.now();
          await createKey(a);
          const waited = Date.now() - started;
          assert.ok(waited >= 350, `waited ${waited} ms for the silent node`);
          assert.deepEqual(warnings, [{ message: 'nodes did not confirm a change in time; answering anyway', details: { nodes: ['ghostnode'], timeoutMs: 400 } }]);

          await query(schema, `SELECT pg_notify(${confirms}, 'bye ghostnode')`);
          await new Promise((r) => setTimeout(r, 100));
          const again = Date.now();
          await createKey(a);
          assert.ok(Date.now() - again < 350, 'a node that said goodbye is not waited for');
          assert.equal(warnings.length, 1);
          onA.stop();
        } finally {
          await a.close();
        }
      });

      it('does not hear stores of another schema', async () => {
        const one = await openPostgresStore((await freshSchema()).url, { poolSize: 2 });
        const other = await openPostgresStore((await freshSchema()).url, { poolSize: 2 });
        try {
          const heard = await listening(one);
          const { key: elsewhere } = await createKey(other);
          const { key: here } = await createKey(one);
          await until('its own change', () => heard.changed().includes(`key:${here.id}`));
          assert.ok(!heard.changed().includes(`key:${elsewhere.id}`));
          heard.stop();
        } finally {
          await one.close();
          await other.close();
        }
      });

      it('reports lost when its connection is cut, reconnects by itself, and resyncs', async () => {
        const { schema, url: schemaUrl } = await freshSchema();
        const writer = await openPostgresStore(schemaUrl, { poolSize: 2 });
        const reader = await openPostgresStore(schemaUrl, { poolSize: 2, listener: { helloMs: 200, retryMinMs: 50 } });
        try {
          const heard = await listening(reader);
          // The listening connection: the last thing it ran is a LISTEN or a hello.
          await query(
            schema,
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND (query LIKE 'LISTEN %' OR query = 'SELECT pg_notify($1, $2)')`,
            [schema],
          );
          await until('lost', () => heard.events.some((e) => e.kind === 'lost'));
          await until('live again', () => reader.changes.live);
          assert.deepEqual(
            heard.events.map((e) => e.kind),
            ['resync', 'lost', 'resync'],
          );
          const { key } = await createKey(writer);
          await until('a change after reconnecting', () => heard.changed().includes(`key:${key.id}`));
          heard.stop();
        } finally {
          await writer.close();
          await reader.close();
        }
      });

      it('resyncs on a change of a topic it does not know (one a newer kmsd publishes)', async () => {
        const { schema, url: schemaUrl } = await freshSchema();
        const store = await openPostgresStore(schemaUrl, { poolSize: 2 });
        try {
          const heard = await listening(store);
          await query(schema, `SELECT pg_notify('kmsd_changes_' || substr(md5(current_schema()), 1, 16), 'node.1 binding-of-the-future:abc')`);
          await until('the resync', () => heard.events.length === 2);
          assert.deepEqual(heard.events, [{ kind: 'resync' }, { kind: 'resync' }]);
          heard.stop();
        } finally {
          await store.close();
        }
      });

      it('closes its listening connection with the store', async () => {
        const { schema, url: schemaUrl } = await freshSchema();
        const store = await openPostgresStore(schemaUrl, { poolSize: 2 });
        const heard = await listening(store);
        heard.stop();
        await store.close();
        await until('no connection left', async () => (await db.connections(schema)) === 0);
        assert.equal(store.changes.live, false);
      });
    });

    describe('background work lock across nodes', () => {
      it('lets one node run a job at a time, and frees the job of a node whose connection dies', async () => {
        const { schema, url: schemaUrl } = await freshSchema();
        const a = await openPostgresStore(schemaUrl, { poolSize: 2 });
        const b = await openPostgresStore(schemaUrl, { poolSize: 2 });
        try {
          let release!: () => void;
          const held = new Promise<void>((r) => (release = r));
          let started!: () => void;
          const running = new Promise<void>((r) => (started = r));
          const onA = a.exclusively('due-work', { wait: false }, async () => {
            started();
            await held;
            return 'a';
          });
          try {
            await running;
            assert.deepEqual(await b.exclusively('due-work', { wait: false }, async () => 'b'), { ran: false });
            // The connection holding the lock dies (as when its node is killed): PostgreSQL frees the
            // lock. B's idle connection dies too, so B also shows it takes the lock on a new one.
            await query(schema, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_try_advisory_lock%'`, [schema]);
            await until('the lock to be free', async () => (await b.exclusively('due-work', { wait: false }, async () => 'b')).ran);
          } finally {
            release();
          }
          assert.deepEqual(await onA, { ran: true, value: 'a' }, 'the work itself finished; its unlock failing is not its error');
        } finally {
          await a.close();
          await b.close();
        }
      });
    });

    it('can be closed twice', async () => {
      const { url: schemaUrl } = await freshSchema();
      const store = await openPostgresStore(schemaUrl);
      await store.close();
      await store.close();
    });
  });
}
