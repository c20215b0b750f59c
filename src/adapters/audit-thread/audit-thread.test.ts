import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Code, isKmsError } from '../../errors/kms-error.js';
import type { AuditAppend, Store } from '../../ports/store.js';
import { AUDIT_KEY, auditChainProblems, auditEvent, auditSeal, createKey, makePrincipal } from '../../../test/contract/store.contract.js';
import { withTestPostgres } from '../../../test/helpers/postgres.js';
import { openSqliteStore } from '../store-sqlite/sqlite-store.js';
import { openPostgresStore } from '../store-postgres/postgres-store.js';

// The audit writer thread: crypto calls' group commits sealed and written on a thread with its own
// connection, into the same chain as the mutations the store's own connection commits.

/** A seal the thread must not call: it seals with the key it was given. */
const notCalled: AuditAppend['seal'] = () => assert.fail('the caller’s seal ran on the event loop');

/** Group commits on the thread interleaved with mutations on the store's connection, then the whole chain checked. */
async function interleave(store: Store): Promise<number> {
  store.writeAuditOnThread!(AUDIT_KEY);
  let n = 0;
  const group = (size: number) => Array.from({ length: size }, () => auditEvent(++n));
  await Promise.all([
    (async () => {
      for (let round = 0; round < 20; round++) await store.appendAudit({ events: group(1 + (round % 4)), seal: notCalled });
    })(),
    (async () => {
      for (let round = 0; round < 6; round++) {
        if (round % 2 === 0) await store.createPrincipal(makePrincipal(), { events: group(1), seal: auditSeal });
        else await createKey(store, {}, { audit: { events: group(1), seal: auditSeal } });
      }
    })(),
  ]);
  const records = await store.scanAudit(0, 1000);
  assert.deepEqual(
    records.map((r) => r.seq),
    Array.from({ length: n }, (_, i) => i + 1),
  );
  assert.equal((await store.getAuditHead())?.seq, n);
  assert.deepEqual(await auditChainProblems(store), [], 'one chain, sealed with the same key on both connections');
  return n;
}

describe('audit writer thread, SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kmsd-audit-thread-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one chain with the mutations of the store’s connection, and closes its connection with the store', async () => {
    const path = join(dir, 'interleave.db');
    const store = openSqliteStore(path);
    try {
      await interleave(store);
    } finally {
      await store.close();
    }
    // SQLite removes the WAL when the last connection closes: the thread's is closed too.
    assert.equal(existsSync(`${path}-wal`), false);
  });

  it('fails a group it cannot write with UNAVAILABLE, writes nothing of it, and writes the next one', async () => {
    const path = join(dir, 'failing.db');
    const store = openSqliteStore(path);
    const other = new Database(path);
    try {
      store.writeAuditOnThread!(AUDIT_KEY);
      await store.appendAudit({ events: [auditEvent(1)], seal: notCalled });
      other.exec(`CREATE TRIGGER audit_fails BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END`);
      await assert.rejects(store.appendAudit({ events: [auditEvent(2), auditEvent(3)], seal: notCalled }), (e: unknown) => {
        assert.ok(isKmsError(e) && e.code === Code.Unavailable, String(e));
        assert.match(String((e.cause as Error).message), /disk full \(test\)/);
        return true;
      });
      other.exec('DROP TRIGGER audit_fails');
      await store.appendAudit({ events: [auditEvent(4)], seal: notCalled });
      assert.deepEqual((await store.scanAudit(0, 100)).map((r) => JSON.parse(r.body).requestId), ['r1', 'r4']);
      assert.deepEqual(await auditChainProblems(store), []);
    } finally {
      other.close();
      await store.close();
    }
  });

  it('waits on its own thread for a write lock another process holds, while the event loop runs', async () => {
    const path = join(dir, 'locked.db');
    const store = openSqliteStore(path);
    const other = new Database(path);
    try {
      store.writeAuditOnThread!(AUDIT_KEY);
      other.exec('BEGIN IMMEDIATE');
      let appended = false;
      const append = store.appendAudit({ events: [auditEvent(1)], seal: notCalled }).then(() => (appended = true));
      const ticks = await new Promise<number>((resolve) => {
        let count = 0;
        const timer = setInterval(() => {
          if (++count === 10) {
            clearInterval(timer);
            resolve(count);
          }
        }, 5);
      });
      assert.equal(ticks, 10);
      assert.equal(appended, false, 'still waiting for the lock');
      other.exec('COMMIT');
      await append;
      assert.equal((await store.getAuditHead())?.seq, 1);
    } finally {
      other.close();
      await store.close();
    }
  });
});

await withTestPostgres('audit writer thread, PostgreSQL', (db) => {
  describe('audit writer thread, PostgreSQL', () => {
    it('writes one chain with the mutations of the store’s pool on one connection of its own, closed with the store', async () => {
      const { schema, url } = await db.freshSchema();
      const store = await openPostgresStore(url, { poolSize: 2 });
      try {
        await interleave(store);
        assert.ok((await db.connections(schema)) <= 3, 'the pool’s two connections and the thread’s one');
      } finally {
        await store.close();
      }
      assert.equal(await db.connections(schema), 0);
    });
  });
});
