import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DAY_MS, destroy, scheduleDestruction } from '../../domain/key.js';
import { Code, isKmsError } from '../../errors/kms-error.js';
import type { AuditAppend } from '../../ports/store.js';
import {
  auditEvent,
  auditSeal,
  createKey,
  makeKey,
  makeOperation,
  makeVersion,
  storeContract,
  T0,
} from '../../../test/contract/store.contract.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SchemaVersionError } from './migrations.js';
import { openSqliteStore } from './sqlite-store.js';
import { SQL } from './statements.js';

const dirs: string[] = [];
function tempDbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kmsd-sqlite-'));
  dirs.push(dir);
  return join(dir, 'kmsd.db');
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Runs `fn` on a plain connection to the file, as an operator's sqlite3 shell would. */
function withRawDb<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

const migrationRows = (path: string) =>
  withRawDb(path, (db) => db.prepare('SELECT version, applied_at FROM schema_migrations ORDER BY version').all());

storeContract('sqlite', async () => openSqliteStore(tempDbPath()));

describe('SqliteStore', () => {
  it('numbers its migrations 1, 2, … in order', () => {
    assert.deepEqual(
      MIGRATIONS.map((m) => m.version),
      Array.from({ length: MIGRATIONS.length }, (_, i) => i + 1),
    );
    assert.equal(LATEST_SCHEMA_VERSION, MIGRATIONS.length);
  });

  it('records every migration once, and reopening applies nothing', async () => {
    const path = tempDbPath();
    const before = Date.now();
    await openSqliteStore(path).close();
    const rows = migrationRows(path) as { version: number; applied_at: number }[];
    assert.deepEqual(
      rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    for (const r of rows) assert.ok(r.applied_at >= before && r.applied_at <= Date.now());

    const reopened = openSqliteStore(path);
    assert.equal(reopened.settings().schemaVersion, LATEST_SCHEMA_VERSION);
    await reopened.close();
    assert.deepEqual(migrationRows(path), rows);
  });

  it('keeps everything across reopening the file', async () => {
    const path = tempDbPath();
    const first = openSqliteStore(path);
    const { key, primary } = await createKey(first, { rotationPeriodMs: DAY_MS });
    const op = makeOperation(key.id, { idempotencyKey: 'retry-1' });
    await first.commitKeyChange({ key: { ...key, revision: 2 }, expectRevision: 1, operation: op });
    await first.createPrincipal({ id: 'ajeadmin', type: 'userAccount', name: 'admin', createdAt: T0 });
    await first.changeBindings({ scope: { type: 'global', id: '' }, replace: [{ roleId: 'kms.admin', subject: { type: 'userAccount', id: 'ajeadmin' } }] });
    await first.createToken({ id: 'tok1', principalId: 'ajeadmin', secretHash: Buffer.alloc(32, 7), createdAt: T0 });
    await first.initMeta('root-key-check', 'abc');
    await first.close();

    const second = openSqliteStore(path);
    try {
      assert.deepEqual(await second.getKey(key.id), { ...key, revision: 2 });
      assert.deepEqual(await second.getVersion(key.id, primary.id), primary);
      assert.ok((await second.getWrappedMaterial(key.id, primary.id))?.length);
      assert.deepEqual(await second.getOperation(op.id), op);
      assert.deepEqual(await second.findOperationByIdempotencyKey(op.createdBy, 'retry-1'), op);
      assert.equal((await second.getPrincipal('ajeadmin'))?.name, 'admin');
      assert.deepEqual(await second.listBindings({ type: 'global', id: '' }), [{ roleId: 'kms.admin', subject: { type: 'userAccount', id: 'ajeadmin' } }]);
      assert.deepEqual((await second.getToken('tok1'))?.secretHash, Buffer.alloc(32, 7));
      assert.equal(await second.getMeta('root-key-check'), 'abc');
      assert.deepEqual(await second.findKeysDueForRotation(T0 + DAY_MS, 10), [{ ...key, revision: 2 }]);
    } finally {
      await second.close();
    }
  });

  it('migration 2 turns admin principals into global kms.admin bindings and keeps principals and tokens', async () => {
    const path = tempDbPath();
    withRawDb(path, (db) => {
      db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT');
      db.exec(MIGRATIONS[0]!.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)').run();
      const insert = db.prepare('INSERT INTO principals (id, type, name, created_at, admin) VALUES (?, ?, ?, ?, ?)');
      insert.run('ajeadmin', 'userAccount', 'admin', T0, 1);
      insert.run('ajerobot', 'serviceAccount', 'robot', T0 + 1, 1);
      insert.run('ajeplain', 'userAccount', 'plain', T0 + 2, 0);
      db.prepare('INSERT INTO tokens (id, principal_id, secret_hash, created_at) VALUES (?, ?, ?, ?)').run('tok1', 'ajeplain', Buffer.alloc(32, 7), T0);
    });

    const store = openSqliteStore(path);
    try {
      assert.equal(store.settings().schemaVersion, LATEST_SCHEMA_VERSION);
      assert.deepEqual(await store.listBindings({ type: 'global', id: '' }), [
        { roleId: 'kms.admin', subject: { type: 'serviceAccount', id: 'ajerobot' } },
        { roleId: 'kms.admin', subject: { type: 'userAccount', id: 'ajeadmin' } },
      ]);
      assert.deepEqual(await store.bindingsOfSubjects([{ type: 'userAccount', id: 'ajeplain' }]), []);
      assert.deepEqual(await store.getPrincipal('ajeplain'), { id: 'ajeplain', type: 'userAccount', name: 'plain', createdAt: T0 + 2 });
      assert.deepEqual(await store.getToken('tok1'), { id: 'tok1', principalId: 'ajeplain', secretHash: Buffer.alloc(32, 7), createdAt: T0 });
    } finally {
      await store.close();
    }
    const columns = withRawDb(path, (db) => db.prepare(`SELECT name FROM pragma_table_info('principals') ORDER BY name`).all() as { name: string }[]);
    assert.deepEqual(columns.map((c) => c.name), ['created_at', 'description', 'id', 'name', 'type']);
  });

  it('refuses a database written by a newer kmsd, naming both versions', async () => {
    const path = tempDbPath();
    await openSqliteStore(path).close();
    const newer = LATEST_SCHEMA_VERSION + 1;
    withRawDb(path, (db) => db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(newer, 0));

    assert.throws(
      () => openSqliteStore(path),
      (e: unknown) =>
        e instanceof SchemaVersionError &&
        e.message.includes(path) &&
        e.message.includes(`version ${newer} is newer than this kmsd supports (${LATEST_SCHEMA_VERSION})`),
    );
    // The failed open closed its connection: the file is not left locked or changed.
    withRawDb(path, (db) => db.prepare('DELETE FROM schema_migrations WHERE version = ?').run(newer));
    await openSqliteStore(path).close();
  });

  it('runs with WAL, synchronous=FULL, foreign keys, a busy timeout and secure delete', async () => {
    const store = openSqliteStore(tempDbPath());
    try {
      assert.deepEqual(store.settings(), {
        journalMode: 'wal',
        synchronous: 2,
        foreignKeys: true,
        busyTimeoutMs: 5000,
        secureDelete: true,
        schemaVersion: LATEST_SCHEMA_VERSION,
      });
    } finally {
      await store.close();
    }
  });

  it('commits audit groups for another connection to read, and stays at synchronous=FULL for every other write', async () => {
    const path = tempDbPath();
    const store = openSqliteStore(path);
    try {
      await Promise.all([1, 3, 5].map((i) => store.appendAudit({ events: [auditEvent(i), auditEvent(i + 1)], seal: auditSeal })));
      assert.equal(store.settings().synchronous, 2);
      const failing: AuditAppend['seal'] = () => {
        throw new Error('seal failed');
      };
      await assert.rejects(store.appendAudit({ events: [auditEvent(7)], seal: failing }), (e: unknown) => isKmsError(e) && e.code === Code.Unavailable);
      assert.equal(store.settings().synchronous, 2, 'a failed append must not leave the connection at NORMAL');
      withRawDb(path, (db) => assert.equal(db.prepare('SELECT count(*) FROM audit_log').pluck().get(), 6));
    } finally {
      await store.close();
    }
    const reopened = openSqliteStore(path);
    try {
      assert.equal((await reopened.getAuditHead())?.seq, 6);
    } finally {
      await reopened.close();
    }
  });

  it('works in memory', async () => {
    const store = openSqliteStore(':memory:');
    try {
      const { key } = await createKey(store);
      assert.deepEqual(await store.getKey(key.id), key);
      assert.equal(store.settings().journalMode, 'memory');
    } finally {
      await store.close();
    }
  });

  it('shares one file between connections, with revision checks across them', async () => {
    const path = tempDbPath();
    const a = openSqliteStore(path);
    const b = openSqliteStore(path);
    try {
      const { key } = await createKey(a);
      assert.deepEqual(await b.getKey(key.id), key);
      await b.commitKeyChange({ key: { ...key, name: 'by b', revision: 2 }, expectRevision: 1 });
      await assert.rejects(
        a.commitKeyChange({ key: { ...key, name: 'by a', revision: 2 }, expectRevision: 1 }),
        (e: unknown) => isKmsError(e) && e.code === Code.Aborted,
      );
      assert.equal((await a.getKey(key.id))?.name, 'by b');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('waits for another process’s write lock to append audit records without stopping the event loop', async () => {
    const path = tempDbPath();
    const store = openSqliteStore(path);
    const other = new Database(path);
    try {
      other.exec('BEGIN IMMEDIATE'); // as another worker's commit holds it
      let appended = false;
      const append = store.appendAudit({ events: [auditEvent(1)], seal: auditSeal }).then(() => (appended = true));
      // SQLite's own wait would hold the event loop until its busy timeout, then fail.
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(appended, false, 'still waiting for the lock');
      other.exec('COMMIT');
      await append;
      assert.equal((await store.getAuditHead())?.seq, 1);
      assert.equal(store.settings().busyTimeoutMs, 5000, 'other writes still wait for the lock');
    } finally {
      other.close();
      await store.close();
    }
  });

  it('answers the listing and background queries with index searches, never a scan or a sort', async () => {
    const path = tempDbPath();
    await openSqliteStore(path).close(); // creates the schema
    const queries: Record<string, string> = {
      keysDueForRotation: SQL.keysDueForRotation,
      deletedKeys: SQL.deletedKeys,
      versionsDueForDestruction: SQL.versionsDueForDestruction,
      countLiveVersions: SQL.countLiveVersions,
      operationByIdempotencyKey: SQL.operationByIdempotencyKey,
      getWrappedMaterial: SQL.getWrappedMaterial,
    };
    for (const list of ['listKeys', 'listVersions', 'listOperations'] as const) {
      queries[`${list}.firstPage`] = SQL[list].firstPage;
      queries[`${list}.nextPage`] = SQL[list].nextPage;
    }
    withRawDb(path, (db) => {
      for (const [name, sql] of Object.entries(queries)) {
        const params = Object.fromEntries([...sql.matchAll(/@(\w+)/g)].map((m) => [m[1], 0]));
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[]).map((r) => r.detail);
        assert.ok(plan.length > 0, name);
        for (const step of plan) {
          assert.match(step, /^SEARCH .* USING (COVERING )?INDEX /, `${name}: ${plan.join(' | ')}`);
        }
      }
    });
  });

  it('leaves no trace of destroyed or purged material in the database file', async () => {
    const path = tempDbPath();
    const probe = (what: string) => Buffer.from(`kmsd-probe-${what}-0123456789abcdef`);
    const fileHolds = (bytes: Buffer) =>
      [path, `${path}-wal`].some((f) => existsSync(f) && readFileSync(f).includes(bytes));

    const store = openSqliteStore(path);
    const kept = makeKey();
    const doomed = makeVersion(kept.id);
    await createKey(store, kept, { insertVersions: [{ version: doomed, wrappedMaterial: probe('destroyed') }] });
    const deleted = makeKey({ deletedAt: T0 });
    const live = makeVersion(deleted.id);
    await createKey(store, deleted, { insertVersions: [{ version: live, wrappedMaterial: probe('purged') }] });
    assert.ok(fileHolds(probe('destroyed')) && fileHolds(probe('purged')), 'the probes were written');

    const gone = destroy(scheduleDestruction(kept, doomed, T0, DAY_MS));
    await store.commitKeyChange({ key: { ...kept, revision: 2 }, expectRevision: 1, updateVersions: [gone] });
    await store.purgeKey(deleted.id);
    await store.close(); // checkpoints the WAL into the file

    assert.equal(fileHolds(probe('destroyed')), false, 'destroyed material is overwritten');
    assert.equal(fileHolds(probe('purged')), false, 'purged material is overwritten');
  });
});
