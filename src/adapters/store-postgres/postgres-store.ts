import pg from 'pg';
import type { KeyVersion, SymmetricKey } from '../../domain/key.js';
import type { Operation } from '../../domain/operation.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import type { Principal, TokenRecord } from '../../domain/principal.js';
import { effectiveDeltas, type AccessBinding, type BindingDelta, type Scope, type Subject } from '../../domain/access.js';
import type { AuditFilter, AuditHead, StoredAuditRecord } from '../../domain/audit.js';
import { Code, ERR, KmsError } from '../../errors/kms-error.js';
import type { Change } from '../../ports/change-feed.js';
import type { AccessBindingChange, AuditAppend, KeyChange, KeyWithVersions, SnapshotRecord, VersionRef, SnapshotRecordType, Store, StoredMaterial } from '../../ports/store.js';
import { auditPage, auditQuery, auditRow, sealedAuditRows } from '../store-rows/audit-rows.js';
import { versionsUnderTheirKeys } from '../store-rows/row-mapping.js';
import { ANY_ROW_SQL, checkImported, noRecords, recordOfRow, SNAPSHOT_ORDER, SNAPSHOT_TABLES, snapshotSelect } from '../store-rows/snapshot.js';
import { CHANNELS_SQL, encodeChange, PostgresChangeListener, type Channels, type Confirmations, type ListenerOptions } from './change-listener.js';
import { mapPage } from './keyset-page.js';
import { migrate, schemaVersion } from './migrations.js';
import { connectionProblem, translateDriverError, translatingConstraints, type ErrorFor } from './pg-errors.js';
import {
  MAPPING,
  bindingToRow,
  keyToRow,
  rowToBinding,
  operationToRow,
  principalToRow,
  rowToKey,
  rowsToKeyWithVersions,
  rowToOperation,
  rowToPrincipal,
  rowToToken,
  rowToVersion,
  tokenToRow,
  TYPE_PARSERS,
  versionToRow,
} from './row-mapping.js';
import { all, first, run, statement, type Queryable, type Statement } from './statement.js';
import { auditColumns, commitOutcomeUnknown, PostgresAuditAppender } from './audit-append.js';
import { ATTEMPTS, onConnection } from './pooled.js';
import { AuditThread } from '../audit-thread/audit-thread.js';
import type { SecretBytes } from '../../crypto/secret-bytes.js';
import { STATEMENTS as S } from './statements.js';

// The Store port on a pg connection pool, for several kmsd nodes sharing one database. A read is
// one statement on any pooled connection; every write (commitKeyChange, purgeKey, the principal,
// token and binding changes, appendAudit) is one transaction on one connection, with its audit
// records if it has any. Transactions run at READ COMMITTED: the revision check is the UPDATE's own
// WHERE, which PostgreSQL re-evaluates on the newest row version after waiting for a concurrent
// writer, so of two commits from the same revision exactly one matches and the other is ABORTED.
// Every write locks the key row before any of its versions, and takes the audit chain's lock last
// (after which it waits for nothing but its commit), so two writers never deadlock.
//
// Every write transaction pg_notify()s what it changed on the schema's channel just before COMMIT,
// so the other nodes hear of a change exactly when it commits, and answers only once they have
// confirmed it (change-listener.ts). A statement that fails because its connection broke is run
// again once on a new connection, unless it was the COMMIT itself (the outcome is then unknown): a
// lost connection is UNAVAILABLE, never a wrong answer. When a connection cannot be had at all:
// UNAVAILABLE at once, without waiting to retry.

export interface PostgresStoreOptions {
  /** Connections in the pool; pg's default is 10. */
  readonly poolSize?: number;
  /**
   * How long to wait for a connection (a new one, or a free one of a busy pool) before the call
   * fails with UNAVAILABLE. Default 5000.
   */
  readonly connectionTimeoutMs?: number;
  /** The change feed's listening connection (one more connection, opened on the first subscription). */
  readonly listener?: ListenerOptions;
}

/** First key of the two-int advisory locks of background work; the migration lock uses 0x6b6d7364. */
const JOB_LOCK_CLASS = 0x6b6d736a; // "kmsj"
/** The lock of one job in the connection's schema; $1 is JOB_LOCK_CLASS, $2 the job's name. */
const JOB_LOCK = `$1::int, hashtext(current_schema() || ':' || $2::text)`;

/**
 * Connects to the database at `url` (a libpq-style URL; `?options=-c search_path=NAME` puts the
 * tables in schema NAME) and migrates its schema. UNAVAILABLE when the database cannot be reached;
 * SchemaVersionError when a newer kmsd wrote it.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const connection: pg.ClientConfig = {
    connectionString: url,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    keepAlive: true,
    types: TYPE_PARSERS,
  };
  const pool = new pg.Pool({ ...connection, max: options.poolSize ?? 10 });
  // An idle connection that breaks (a server restart, a terminated backend) is reported here and
  // dropped by the pool; the next call opens a new one or fails with UNAVAILABLE. Without a
  // listener the error would crash the process.
  pool.on('error', () => undefined);
  try {
    const channels = await withClient(pool, async (client) => {
      await migrate(client);
      return (await client.query<Channels>(CHANNELS_SQL)).rows[0]!;
    });
    return new PostgresStore(pool, channels, new PostgresChangeListener(connection, channels, options.listener), connection);
  } catch (e) {
    await pool.end();
    throw translateDriverError(e);
  }
}

/**
 * Runs `work` on one connection of the pool and always gives it back. A connection that broke, or
 * that `work` reports as unusable through `discard`, is closed rather than reused.
 */
async function withClient<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient, discard: (why: Error) => void) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const discard = (why: Error) => {
    broken ??= why;
  };
  // A connection that breaks while checked out reports it here as well as to the running query;
  // without a listener the error would crash the process.
  client.on('error', discard);
  try {
    return await work(client, discard);
  } catch (e) {
    if (connectionProblem(e) !== undefined) discard(e as Error);
    throw e;
  } finally {
    client.removeListener('error', discard);
    client.release(broken);
  }
}

const alreadyExists =
  (what: string): ErrorFor =>
  (cause) =>
    new KmsError(Code.AlreadyExists, `${what} already exists`, { cause });

const ifFound = <R, T>(row: R | undefined, map: (row: R) => T): T | undefined => (row === undefined ? undefined : map(row));

type Publish = (change: Change) => void;

export class PostgresStore implements Store {
  private closed = false;
  /** The crypto calls' group commits: here, or on a thread of their own once writeAuditOnThread was called. */
  private readonly auditAppender: PostgresAuditAppender;
  private auditThread: AuditThread | undefined;
  private readonly auditQueries = new Map<string, Statement<Record<string, string | number>, StoredAuditRecord>>();

  /** Use openPostgresStore: it migrates the schema these statements need and finds the channels. */
  constructor(
    private readonly pool: pg.Pool,
    private readonly channels: Channels,
    readonly changes: PostgresChangeListener,
    /** How the pool connects: the audit writer thread connects the same way. */
    private readonly connection: pg.ClientConfig,
  ) {
    this.auditAppender = new PostgresAuditAppender(pool);
  }

  async getKey(id: string): Promise<SymmetricKey | undefined> {
    return this.read(async (db) => ifFound(await first(db, S.getKey, { id }), rowToKey));
  }

  async getKeyWithVersions(id: string): Promise<KeyWithVersions | undefined> {
    return this.read(async (db) => rowsToKeyWithVersions(await all(db, S.getKeyWithVersions, { id })));
  }

  async getVersion(keyId: string, versionId: string): Promise<KeyVersion | undefined> {
    return this.read(async (db) => ifFound(await first(db, S.getVersion, { key_id: keyId, id: versionId }), rowToVersion));
  }

  async getVersions(refs: readonly VersionRef[]): Promise<KeyVersion[]> {
    if (refs.length === 0) return [];
    const found = await this.read(async (db) => (await all(db, S.getVersionsByIds, { ids: refs.map((r) => r.versionId) })).map(rowToVersion));
    return versionsUnderTheirKeys(refs, found);
  }

  async getWrappedMaterial(keyId: string, versionId: string): Promise<Buffer | undefined> {
    // NULL (destroyed) and no row (unknown version) both answer undefined.
    return this.read(async (db) => {
      const row = await first(db, S.getWrappedMaterial, { key_id: keyId, id: versionId });
      return row?.wrapped_material ?? undefined;
    });
  }

  async listKeys(folderId: string, page: PageRequest, only?: ReadonlySet<string>): Promise<Page<SymmetricKey>> {
    if (only !== undefined) return this.read(async (db) => mapPage(await S.listKeysAmong.page(db, folderId, page, { ids: [...only] }), rowToKey));
    return this.read(async (db) => mapPage(await S.listKeys.page(db, folderId, page), rowToKey));
  }

  async listVersions(keyId: string, page: PageRequest): Promise<Page<KeyVersion>> {
    return this.read(async (db) => mapPage(await S.listVersions.page(db, keyId, page), rowToVersion));
  }

  async countLiveVersions(keyId: string): Promise<number> {
    return this.read(async (db) => (await first(db, S.countLiveVersions, { key_id: keyId }))?.live ?? 0);
  }

  async commitKeyChange(change: KeyChange): Promise<void> {
    await this.transaction(async (db, publish) => {
      await this.applyKeyChange(db, change);
      publish({ topic: 'key', id: change.key.id });
    });
  }

  async findKeysDueForRotation(now: number, limit: number): Promise<SymmetricKey[]> {
    return this.read(async (db) => (await all(db, S.keysDueForRotation, { now, limit })).map(rowToKey));
  }

  async findVersionsDueForDestruction(now: number, limit: number): Promise<KeyVersion[]> {
    return this.read(async (db) => (await all(db, S.versionsDueForDestruction, { now, limit })).map(rowToVersion));
  }

  async findDeletedKeys(deletedBefore: number, limit: number): Promise<SymmetricKey[]> {
    return this.read(async (db) => (await all(db, S.deletedKeys, { before: deletedBefore, limit })).map(rowToKey));
  }

  async purgeKey(keyId: string): Promise<void> {
    await this.transaction(async (db, publish) => {
      if (await this.purge(db, keyId)) {
        publish({ topic: 'key', id: keyId });
        publish({ topic: 'binding', id: `key:${keyId}` });
      }
    });
  }

  async getOperation(id: string): Promise<Operation | undefined> {
    return this.read(async (db) => ifFound(await first(db, S.getOperation, { id }), rowToOperation));
  }

  async listOperations(resourceId: string, page: PageRequest): Promise<Page<Operation>> {
    return this.read(async (db) => mapPage(await S.listOperations.page(db, resourceId, page), rowToOperation));
  }

  async findOperationByIdempotencyKey(createdBy: string, idempotencyKey: string): Promise<Operation | undefined> {
    return this.read(async (db) => {
      const row = await first(db, S.operationByIdempotencyKey, { created_by: createdBy, idempotency_key: idempotencyKey });
      return ifFound(row, rowToOperation);
    });
  }

  async createPrincipal(p: Principal, audit?: AuditAppend): Promise<void> {
    await this.transaction(async (db, publish) => {
      await translatingConstraints(() => run(db, S.insertPrincipal, principalToRow(p)), {
        principals_pkey: alreadyExists(`principal ${p.id}`),
      });
      await this.appendAuditRecords(db, audit);
      publish({ topic: 'principal', id: p.id });
    });
  }

  async getPrincipal(id: string): Promise<Principal | undefined> {
    return this.read(async (db) => ifFound(await first(db, S.getPrincipal, { id }), rowToPrincipal));
  }

  async listPrincipals(page: PageRequest): Promise<Page<Principal>> {
    return this.read(async (db) => mapPage(await S.listPrincipals.page(db, '', page), rowToPrincipal));
  }

  async deletePrincipal(id: string, audit?: AuditAppend): Promise<string[] | undefined> {
    let removed: string[] | undefined;
    await this.transaction(async (db, publish) => {
      const found = await first(db, S.lockPrincipal, { id });
      if (found === undefined) return;
      removed = (await all(db, S.deleteTokensOfPrincipal, { principal_id: id })).map((r) => r.id);
      await run(db, S.deleteBindingsOfSubject, { subject_type: found.type, subject_id: id });
      await run(db, S.deletePrincipal, { id });
      await this.appendAuditRecords(db, audit);
      publish({ topic: 'principal', id });
      for (const token of removed) publish({ topic: 'token', id: token });
    });
    return removed;
  }

  async createToken(t: TokenRecord, audit?: AuditAppend): Promise<void> {
    await this.transaction(async (db, publish) => {
      await translatingConstraints(() => run(db, S.insertToken, tokenToRow(t)), {
        tokens_pkey: alreadyExists(`token ${t.id}`),
        tokens_principal_id_fkey: (cause) => new KmsError(Code.NotFound, `principal ${t.principalId} not found`, { cause }),
      });
      await this.appendAuditRecords(db, audit);
      publish({ topic: 'token', id: t.id });
    });
  }

  async listTokens(principalId: string): Promise<TokenRecord[]> {
    return this.read(async (db) => (await all(db, S.listTokens, { principal_id: principalId })).map(rowToToken));
  }

  async revokeToken(id: string, at: number, audit?: AuditAppend): Promise<boolean> {
    let found = false;
    await this.transaction(async (db, publish) => {
      found = (await run(db, S.revokeToken, { id, at })) > 0;
      if (found) {
        await this.appendAuditRecords(db, audit);
        publish({ topic: 'token', id });
      }
    });
    return found;
  }

  async listBindings(scope: Scope): Promise<AccessBinding[]> {
    return this.read(async (db) => (await all(db, S.listBindings, { scope_type: scope.type, scope_id: scope.id })).map((r) => rowToBinding(r).binding));
  }

  async bindingsOfSubjects(subjects: readonly Subject[]): Promise<{ scope: Scope; binding: AccessBinding }[]> {
    if (subjects.length === 0) return [];
    // One statement: one round trip on the authorizer's path, and one snapshot of the bindings.
    const params = { subject_types: subjects.map((s) => s.type), subject_ids: subjects.map((s) => s.id) };
    return this.read(async (db) => (await all(db, S.bindingsOfSubjects, params)).map(rowToBinding));
  }

  async changeBindings(change: AccessBindingChange): Promise<BindingDelta[]> {
    let effective: BindingDelta[] = [];
    await this.transaction(async (db, publish) => {
      const ref = { scope_type: change.scope.type, scope_id: change.scope.id };
      await first(db, S.lockScope, ref);
      const current = (await all(db, S.listBindings, ref)).map((r) => rowToBinding(r).binding);
      effective = effectiveDeltas(current, change);
      for (const d of effective) await run(db, d.action === 'ADD' ? S.insertBinding : S.deleteBinding, bindingToRow(change.scope, d.binding));
      if (change.operation !== undefined) await this.insertOperation(db, change.operation);
      await this.appendAuditRecords(db, change.audit);
      if (effective.length > 0) publish({ topic: 'binding', id: `${change.scope.type}:${change.scope.id}` });
    });
    return effective;
  }

  /** A group commit of audit records, every crypto call's wait (audit-append.ts). Nothing any node caches changes: nothing is published. */
  async appendAudit(append: AuditAppend): Promise<void> {
    if (append.events.length === 0) return;
    if (this.auditThread === undefined) return this.auditAppender.append(append);
    try {
      await this.auditThread.append(append.events);
    } catch (e) {
      throw e instanceof KmsError ? e : new KmsError(Code.Unavailable, 'the audit log cannot be written', { cause: e });
    }
  }

  /**
   * From now on appendAudit seals and commits on a thread of its own with one connection of its own
   * (audit-thread.ts), keyed by `macKey`, the key the callers' seal uses: this event loop then only
   * hands the records over, and the thread's answers from PostgreSQL do not wait behind requests.
   */
  writeAuditOnThread(macKey: SecretBytes): void {
    this.auditThread ??= new AuditThread({ kind: 'postgres', connectionString: this.connection.connectionString!, connectionTimeoutMs: this.connection.connectionTimeoutMillis ?? 5000 }, macKey);
  }

  async getAuditHead(): Promise<AuditHead | undefined> {
    return this.read((db) => first(db, S.getAuditHead, {}));
  }

  async scanAudit(afterSeq: number, limit: number): Promise<StoredAuditRecord[]> {
    return this.read((db) => all(db, S.scanAudit, { after: afterSeq, limit }));
  }

  async queryAudit(filter: AuditFilter, page: PageRequest): Promise<Page<StoredAuditRecord>> {
    const q = auditQuery(filter, page);
    let stmt = this.auditQueries.get(q.sql);
    if (stmt === undefined) {
      stmt = statement<Record<string, string | number>, StoredAuditRecord>(q.sql);
      this.auditQueries.set(q.sql, stmt);
    }
    const compiled = stmt;
    return this.read(async (db) => auditPage(await all(db, compiled, q.params), q.size));
  }

  /** Appends audit records and moves the sealed head, inside the caller's transaction. */
  private async appendAuditRecords(db: pg.PoolClient, append: AuditAppend | undefined): Promise<void> {
    if (append === undefined || append.events.length === 0) return;
    try {
      // Under READ COMMITTED each statement sees what committed before it began, so the head read
      // after the lock is the one the previous appender committed.
      await first(db, S.lockAuditChain, {});
      const sealed = append.seal(await first(db, S.lockAuditHead, {}), append.events);
      // One statement for the whole group: each round trip here is spent holding the chain's lock.
      await run(db, S.insertAudits, auditColumns(sealedAuditRows(sealed, append.events)));
      await run(db, S.setAuditHead, sealed.head);
    } catch (e) {
      if (connectionProblem(e) !== undefined) throw e;
      // Fails the whole transaction: a change is never committed without its record.
      throw new KmsError(Code.Unavailable, 'the audit log cannot be written; nothing was changed', { cause: e });
    }
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    return this.read(async (db) => ifFound(await first(db, S.getToken, { id }), rowToToken));
  }

  async getMeta(name: string): Promise<string | undefined> {
    return this.read(async (db) => (await first(db, S.getMeta, { name }))?.value);
  }

  async initMeta(name: string, value: string): Promise<string> {
    return this.read(async (db) => {
      await run(db, S.insertMetaIfAbsent, { name, value });
      // A second statement, so that at READ COMMITTED it sees a row another node committed while
      // the insert waited. Nothing deletes meta rows, so the row is there now (ours or an earlier
      // one); `?? value` only satisfies the type.
      return (await first(db, S.getMeta, { name }))?.value ?? value;
    });
  }

  async replaceMeta(name: string, expected: string, next: string): Promise<boolean> {
    return this.read(async (db) => (await run(db, S.replaceMeta, { name, expected, next })) === 1);
  }

  async listStoredMaterial(afterVersionId: string, limit: number): Promise<StoredMaterial[]> {
    return this.read(async (db) =>
      (await all(db, S.listStoredMaterial, { after: afterVersionId, limit })).map((r) => ({ keyId: r.key_id, versionId: r.id, material: r.wrapped_material })),
    );
  }

  async replaceStoredMaterial(keyId: string, versionId: string, expected: Buffer, next: Buffer): Promise<boolean> {
    return this.read(async (db) => (await run(db, S.replaceStoredMaterial, { key_id: keyId, id: versionId, expected, next })) === 1);
  }

  async exclusively<T>(job: string, options: { readonly wait: boolean }, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    // A session-level advisory lock on a connection held for the whole pass: PostgreSQL releases
    // it when that connection ends, so a node that dies mid-pass never leaves it held.
    const args = [JOB_LOCK_CLASS, job];
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw translateDriverError(e);
      }
      let broken: Error | undefined;
      const discard = (why: Error) => {
        broken ??= why;
      };
      client.on('error', discard);
      let locked = false;
      try {
        if (options.wait) {
          await client.query(`SELECT pg_advisory_lock(${JOB_LOCK})`, args);
          locked = true;
        } else {
          const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${JOB_LOCK}) AS locked`, args);
          if (rows[0]?.locked !== true) return { ran: false };
          locked = true;
        }
        try {
          return { ran: true, value: await work() };
        } finally {
          await client.query(`SELECT pg_advisory_unlock(${JOB_LOCK})`, args).catch(discard);
        }
      } catch (e) {
        const lost = connectionProblem(e) !== undefined;
        if (lost) discard(e as Error);
        // Taking the lock may be tried again on a new connection (the first may have been a stale
        // pooled one); the work, once started, is not run twice.
        if (lost && !locked && attempt < ATTEMPTS) continue;
        throw translateDriverError(e);
      } finally {
        client.removeListener('error', discard);
        // A broken connection is closed, which releases the lock if the unlock did not.
        client.release(broken);
      }
    }
  }

  async *exportSnapshot(): AsyncIterable<SnapshotRecord> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw translateDriverError(e);
    }
    let broken: Error | undefined;
    const discard = (why: Error) => {
      broken ??= why;
    };
    client.on('error', discard);
    let done = false;
    try {
      // REPEATABLE READ: every table is read as of the same moment. A cursor per table keeps memory
      // flat however large the tables are.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      for (const type of SNAPSHOT_ORDER) {
        await client.query(`DECLARE snapshot_rows NO SCROLL CURSOR FOR ${snapshotSelect(type)}`);
        for (;;) {
          const { rows } = await client.query<Record<string, unknown>>('FETCH 500 FROM snapshot_rows');
          if (rows.length === 0) break;
          for (const row of rows) yield recordOfRow(MAPPING, type, row);
        }
        await client.query('CLOSE snapshot_rows');
      }
      await client.query('COMMIT');
      done = true;
    } catch (e) {
      if (connectionProblem(e) !== undefined) discard(e as Error);
      throw translateDriverError(e);
    } finally {
      // Also when the consumer stopped early: the read transaction must not stay open.
      if (!done) await client.query('ROLLBACK').catch(discard);
      client.removeListener('error', discard);
      client.release(broken);
    }
  }

  async importSnapshot(records: AsyncIterable<SnapshotRecord>): Promise<Readonly<Record<SnapshotRecordType, number>>> {
    // Not retried on a broken connection: the records cannot be read a second time.
    return this.transaction(
      async (db) => {
        // Keeps a node that starts meanwhile from writing its first rows between the check and the import.
        await db.query(`LOCK TABLE ${SNAPSHOT_TABLES.join(', ')} IN EXCLUSIVE MODE`);
        const { rows } = await db.query<{ found: boolean }>(ANY_ROW_SQL);
        if (rows[0]?.found !== false) throw ERR.failedPrecondition('the store is not empty: a backup is only restored into a store that holds nothing yet');
        const counts = noRecords();
        let previous: SnapshotRecordType | undefined;
        let position = 0;
        for await (const record of records) {
          position++;
          checkImported(record, previous, position);
          previous = record.type;
          try {
            await this.insertRecord(db, record);
          } catch (e) {
            if (e instanceof pg.DatabaseError && e.code?.startsWith('23')) {
              throw ERR.invalidArgument(`snapshot record ${position} (${record.type}): ${e.message}`);
            }
            throw e;
          }
          counts[record.type]++;
        }
        return counts;
      },
      { retry: false },
    );
  }

  /** Ends the listener and the pool once its connections are idle; calling it again does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.auditThread?.close();
    await this.changes.close();
    await this.pool.end();
  }

  /** The schema version the database is at, for the startup log line and the tests. */
  async schemaVersion(): Promise<number> {
    try {
      return await withClient(this.pool, (client) => schemaVersion(client));
    } catch (e) {
      throw translateDriverError(e);
    }
  }

  /** Statements outside a transaction, on one pooled connection. */
  private read<T>(work: (db: Queryable) => Promise<T>): Promise<T> {
    return onConnection(this.pool, (client) => work(client), { retry: true });
  }

  /**
   * `work` inside BEGIN … COMMIT on one connection; any error rolls all of it back. What `work`
   * publishes is pg_notify()ed in the same transaction, so it is heard only if the COMMIT is; and
   * the call returns only once the other nodes have confirmed hearing it (change-listener.ts).
   */
  private async transaction<T>(work: (db: pg.PoolClient, publish: Publish) => Promise<T>, options = { retry: true }): Promise<T> {
    let confirmations: Confirmations | undefined;
    const value = await onConnection(this.pool, async (client, discard, committing) => {
      const tag = this.changes.newTag();
      const changes = new Set<string>();
      await client.query('BEGIN');
      let result: T;
      try {
        result = await work(client, (change) => changes.add(encodeChange(tag, change)));
        if (changes.size > 0) {
          await client.query('SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload', [this.channels.changes, [...changes]]);
        }
      } catch (e) {
        // A connection that cannot roll back is in an unknown state and must not be reused; the
        // server rolls back when it closes. The original error is what the caller needs to know.
        await client.query('ROLLBACK').catch(discard);
        throw e;
      }
      committing();
      // Expected before the COMMIT, so that no confirmation can come before it is awaited.
      const expected = changes.size > 0 ? this.changes.expectConfirmations(tag) : undefined;
      try {
        await client.query('COMMIT');
      } catch (e) {
        expected?.cancel();
        if (connectionProblem(e) !== undefined) throw commitOutcomeUnknown(e);
        throw e;
      }
      confirmations = expected;
      return result;
    }, options);
    // With the connection back in the pool.
    await confirmations?.done;
    return value;
  }

  /** One record of importSnapshot, inserted as it is. */
  private async insertRecord(db: pg.PoolClient, r: SnapshotRecord): Promise<void> {
    switch (r.type) {
      case 'meta':
        await run(db, S.insertMeta, { name: r.name, value: r.value });
        return;
      case 'principal':
        await run(db, S.insertPrincipal, principalToRow(r.principal));
        return;
      case 'token':
        await run(db, S.insertToken, tokenToRow(r.token));
        return;
      case 'key':
        await run(db, S.insertKey, keyToRow(r.key));
        return;
      case 'version':
        await run(db, S.insertVersion, { ...versionToRow(r.version), wrapped_material: r.wrappedMaterial ?? null });
        return;
      case 'operation':
        await run(db, S.insertOperation, operationToRow(r.operation));
        return;
      case 'binding':
        await run(db, S.insertBinding, bindingToRow(r.scope, r.binding));
        return;
      case 'audit':
        await run(db, S.insertAudit, auditRow(r.record));
        return;
      case 'auditHead':
        await run(db, S.setAuditHead, r.head);
        return;
    }
  }

  /** The body of commitKeyChange; runs inside its transaction, so any throw undoes all of it. */
  private async applyKeyChange(db: pg.PoolClient, change: KeyChange): Promise<void> {
    const { key } = change;
    const versions = [...(change.insertVersions ?? []).map((n) => n.version), ...(change.updateVersions ?? [])];
    // A version of another key would be written without that key's revision check.
    const stray = versions.find((v) => v.keyId !== key.id);
    if (stray !== undefined) {
      throw new Error(`commitKeyChange: version ${stray.id} belongs to key ${stray.keyId}, not to key ${key.id}`);
    }

    const keyRow = keyToRow(key);
    if (change.expectRevision === undefined) {
      await translatingConstraints(() => run(db, S.insertKey, keyRow), { keys_pkey: alreadyExists(`key ${key.id}`) });
    } else if ((await run(db, S.updateKey, { ...keyRow, expect_revision: change.expectRevision })) === 0) {
      // Another writer committed first, or the key was purged.
      throw ERR.aborted(`key ${key.id} was changed concurrently`);
    }

    for (const { version, wrappedMaterial } of change.insertVersions ?? []) {
      await translatingConstraints(() => run(db, S.insertVersion, { ...versionToRow(version), wrapped_material: wrappedMaterial }), {
        key_versions_pkey: alreadyExists(`key ${key.id}: version ${version.id}`),
      });
    }
    for (const version of change.updateVersions ?? []) {
      if ((await run(db, S.updateVersion, versionToRow(version))) === 0) {
        throw ERR.aborted(`key ${key.id}: version ${version.id} does not exist`);
      }
    }

    if (change.operation !== undefined) await this.insertOperation(db, change.operation);
    await this.appendAuditRecords(db, change.audit);
  }

  private async insertOperation(db: pg.PoolClient, op: Operation): Promise<void> {
    await translatingConstraints(() => run(db, S.insertOperation, operationToRow(op)), {
      operations_pkey: alreadyExists(`operation ${op.id}`),
      operations_by_idempotency_key: alreadyExists(`operation with idempotency key ${op.idempotencyKey} of ${op.createdBy}`),
    });
  }

  /** The body of purgeKey, inside its transaction; false when there was nothing to purge. */
  private async purge(db: pg.PoolClient, keyId: string): Promise<boolean> {
    const row = await first(db, S.lockKeyDeletedAt, { id: keyId });
    if (row === undefined) return false; // already purged, perhaps by another node
    if (row.deleted_at === null) throw ERR.failedPrecondition(`key ${keyId} is not deleted and cannot be purged`);
    await run(db, S.deleteVersionsOfKey, { key_id: keyId });
    await run(db, S.deleteBindingsOfScope, { scope_type: 'key', scope_id: keyId });
    await run(db, S.deleteKey, { id: keyId });
    return true;
  }
}
