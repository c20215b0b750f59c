import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
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
  storeContract,
  T0,
} from '../../../test/contract/store.contract.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SchemaVersionError, TABLES } from './migrations.js';
import { openPostgresStore } from './postgres-store.js';

// The store contract and the PostgreSQL-specific behaviour, against the database named by
// KMSD_TEST_POSTGRES_URL (scripts/ensure-postgres.sh provides one). Each test file works in schemas
// of its own, so files running in parallel never see each other's rows. An unreachable database
// fails this file; KMSD_TEST_POSTGRES_URL=skip skips it on purpose.

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/test';
const configured = process.env.KMSD_TEST_POSTGRES_URL || DEFAULT_URL;

/** The URL without its password, for messages. */
function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(a URL that does not parse)';
  }
}

/** `url` with the tables in `schema` and the connections named after it in pg_stat_activity. */
function inSchema(url: string, schema: string): string {
  const u = new URL(url);
  const options = u.searchParams.get('options');
  u.searchParams.set('options', `${options === null ? '' : `${options} `}-c search_path=${schema}`);
  u.searchParams.set('application_name', schema);
  return u.toString();
}

async function unreachable(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message || String((e as { code?: unknown }).code) : String(e);
  } finally {
    await client.end().catch(() => undefined);
  }
}

if (configured === 'skip') {
  it('PostgreSQL store', { skip: 'KMSD_TEST_POSTGRES_URL=skip: the PostgreSQL store is not tested' }, () => {});
} else {
  const problem = await unreachable(configured);
  if (problem === undefined) {
    postgresTests(configured);
  } else {
    it('PostgreSQL store: the test database is reachable', () => {
      throw new Error(
        `PostgreSQL at ${redacted(configured)} is unreachable (${problem}). ` +
          (process.env.CI
            ? 'CI must provide it: .ci/run runs scripts/ensure-postgres.sh and exports KMSD_TEST_POSTGRES_URL.'
            : 'Run scripts/ensure-postgres.sh (it starts or installs one and prints its URL), ' +
              'point KMSD_TEST_POSTGRES_URL at one, or set KMSD_TEST_POSTGRES_URL=skip to skip these tests.'),
      );
    });
  }
}

function postgresTests(url: string): void {
  const admin = new pg.Pool({ connectionString: url, max: 2 });
  const schemas: string[] = [];

  /** A new, empty schema for this file, dropped when the file is done; its URL. */
  async function freshSchema(): Promise<{ schema: string; url: string }> {
    const schema = `kmsd_test_${randomBytes(6).toString('hex')}`;
    await admin.query(`CREATE SCHEMA ${schema}`);
    schemas.push(schema);
    return { schema, url: inSchema(url, schema) };
  }

  after(async () => {
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  const query = async <R extends pg.QueryResultRow>(schema: string, sql: string, values: unknown[] = []): Promise<R[]> => {
    const client = await admin.connect();
    try {
      await client.query(`SET search_path = ${schema}`);
      return (await client.query<R>(sql, values)).rows;
    } finally {
      await client.query('RESET search_path');
      client.release();
    }
  };

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
      const open = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [schema]);
      assert.equal(open.rows[0]?.n, 0, 'the failed open ended its pool');

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
        const terminate = () =>
          admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [schema]);
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

    it('can be closed twice', async () => {
      const { url: schemaUrl } = await freshSchema();
      const store = await openPostgresStore(schemaUrl);
      await store.close();
      await store.close();
    });
  });
}
