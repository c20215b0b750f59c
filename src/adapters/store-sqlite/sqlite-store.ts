import Database from 'better-sqlite3';
import { open, type FileHandle } from 'node:fs/promises';
import type { KeyVersion, SymmetricKey } from '../../domain/key.js';
import type { Operation } from '../../domain/operation.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import type { Principal, TokenRecord } from '../../domain/principal.js';
import { effectiveDeltas, type AccessBinding, type BindingDelta, type Scope, type Subject } from '../../domain/access.js';
import type { AuditFilter, AuditHead, StoredAuditRecord } from '../../domain/audit.js';
import { Code, ERR, KmsError } from '../../errors/kms-error.js';
import type { Change, PublishingFeed } from '../../ports/change-feed.js';
import type { AccessBindingChange, AuditAppend, BackgroundWorkLock, KeyChange, KeyWithVersions, SnapshotRecord, SnapshotRecordType, Store, StoredMaterial, VersionRef } from '../../ports/store.js';
import { InProcessFeed } from '../change-feed/in-process-feed.js';
import { auditPage, auditQuery, auditRow, sealedAuditRows } from '../store-rows/audit-rows.js';
import { versionsUnderTheirKeys } from '../store-rows/row-mapping.js';
import { ANY_ROW_SQL, checkImported, noRecords, recordOfRow, SNAPSHOT_ORDER, snapshotSelect } from '../store-rows/snapshot.js';
import { mapPage } from './keyset-page.js';
import { migrate, schemaVersion } from './migrations.js';
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
  versionToRow,
} from './row-mapping.js';
import { prepareStatements, type Statements } from './statements.js';
import { AuditThread } from '../audit-thread/audit-thread.js';
import type { SecretBytes } from '../../crypto/secret-bytes.js';

// The Store port on one better-sqlite3 connection. better-sqlite3 is synchronous: each method
// does its work before returning, and the port's promises only keep the PostgreSQL adapter
// possible. Several processes may share the file; writes take SQLite's write lock up front. Its
// change feed and background-work lock are in-process unless the opener gives others: the workers
// of `kmsd serve --workers N` share them through their supervisor (src/cluster/); another process
// writing the same file is not heard (its changes reach this one's caches only through their TTL).

/** How long a write waits for another process's write lock before it fails with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

/** Applied in this order when the connection opens. */
const PRAGMAS = [
  // First, so that the pragmas below wait for a lock held by another process instead of failing.
  `busy_timeout = ${BUSY_TIMEOUT_MS}`,
  // Readers never block the writer, and a commit is one append to the WAL.
  'journal_mode = WAL',
  // FULL (not the usual NORMAL for WAL) fsyncs the WAL at every commit: an acknowledged write
  // survives a power loss, not only a process crash.
  'synchronous = FULL',
  'foreign_keys = ON',
  // Deleted rows and freed space are overwritten with zeros, so purged key material does not
  // linger in free pages of the file.
  'secure_delete = ON',
] as const;

/** What the connection really runs with: for the startup log line and the tests. */
export interface SqliteSettings {
  readonly journalMode: string;
  /** 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA. */
  readonly synchronous: number;
  readonly foreignKeys: boolean;
  readonly busyTimeoutMs: number;
  readonly secureDelete: boolean;
  readonly schemaVersion: number;
}

/** Who else hears this store's changes and shares its background work; by default, nobody (one process). */
export interface SqliteSharing {
  readonly feed?: PublishingFeed;
  readonly lock?: BackgroundWorkLock;
}

/** Opens (creating if needed) and migrates the database at `path`; ':memory:' for a private in-memory one. */
export function openSqliteStore(path: string, sharing: SqliteSharing = {}): SqliteStore {
  const db = new Database(path);
  try {
    for (const pragma of PRAGMAS) db.pragma(pragma);
    migrate(db);
    return new SqliteStore(db, sharing);
  } catch (e) {
    db.close();
    throw e;
  }
}

type Constraint = 'PRIMARYKEY' | 'UNIQUE' | 'FOREIGNKEY';
type ErrorFor = (cause: unknown) => KmsError;

/** Runs a write, turning the constraint violations the caller names into KmsErrors. */
function translatingConstraints<T>(write: () => T, errors: Partial<Record<Constraint, ErrorFor>>): T {
  try {
    return write();
  } catch (e) {
    const constraint = e instanceof Database.SqliteError ? (e.code.replace(/^SQLITE_CONSTRAINT_/, '') as Constraint) : undefined;
    const toKmsError = constraint === undefined ? undefined : errors[constraint];
    throw toKmsError === undefined ? e : toKmsError(e);
  }
}

const alreadyExists =
  (what: string): ErrorFor =>
  (cause) =>
    new KmsError(Code.AlreadyExists, `${what} already exists`, { cause });

const ifFound = <R, T>(row: R | undefined, map: (row: R) => T): T | undefined => (row === undefined ? undefined : map(row));

export class SqliteStore implements Store {
  readonly changes: PublishingFeed;
  /** Background jobs running in this process, by name (see exclusively), unless a shared lock was given. */
  private readonly jobs = new Map<string, Promise<unknown>>();
  private readonly sharedLock: BackgroundWorkLock | undefined;
  private readonly s: Statements;
  private readonly commitTransaction: Database.Transaction<(change: KeyChange) => void>;
  private readonly purgeTransaction: Database.Transaction<(keyId: string) => boolean>;
  private readonly auditQueries = new Map<string, Database.Statement<Record<string, string | number>, StoredAuditRecord>>();
  private wal: Promise<FileHandle> | undefined;
  private auditThread: AuditThread | undefined;

  /** Use openSqliteStore: it sets the pragmas and migrates the schema these statements need. */
  constructor(
    private readonly db: Database.Database,
    sharing: SqliteSharing = {},
  ) {
    this.changes = sharing.feed ?? new InProcessFeed();
    this.sharedLock = sharing.lock;
    this.s = prepareStatements(db);
    this.commitTransaction = db.transaction((change: KeyChange) => this.applyKeyChange(change));
    this.purgeTransaction = db.transaction((keyId: string) => this.purge(keyId));
  }

  async getKey(id: string): Promise<SymmetricKey | undefined> {
    return ifFound(this.s.getKey.get({ id }), rowToKey);
  }

  async getKeyWithVersions(id: string): Promise<KeyWithVersions | undefined> {
    return rowsToKeyWithVersions(this.s.getKeyWithVersions.all({ id }));
  }

  async getVersion(keyId: string, versionId: string): Promise<KeyVersion | undefined> {
    return ifFound(this.s.getVersion.get({ key_id: keyId, id: versionId }), rowToVersion);
  }

  async getVersions(refs: readonly VersionRef[]): Promise<KeyVersion[]> {
    if (refs.length === 0) return [];
    const found = this.s.getVersionsByIds.all({ ids: JSON.stringify(refs.map((r) => r.versionId)) }).map(rowToVersion);
    return versionsUnderTheirKeys(refs, found);
  }

  async getWrappedMaterial(keyId: string, versionId: string): Promise<Buffer | undefined> {
    // NULL (destroyed) and no row (unknown version) both answer undefined.
    return this.s.getWrappedMaterial.get({ key_id: keyId, id: versionId }) ?? undefined;
  }

  async listKeys(folderId: string, page: PageRequest, only?: ReadonlySet<string>): Promise<Page<SymmetricKey>> {
    if (only !== undefined) return mapPage(this.s.listKeysAmong.page(folderId, page, { ids: JSON.stringify([...only]) }), rowToKey);
    return mapPage(this.s.listKeys.page(folderId, page), rowToKey);
  }

  async listVersions(keyId: string, page: PageRequest): Promise<Page<KeyVersion>> {
    return mapPage(this.s.listVersions.page(keyId, page), rowToVersion);
  }

  async countLiveVersions(keyId: string): Promise<number> {
    return this.s.countLiveVersions.get({ key_id: keyId }) ?? 0;
  }

  /** Runs `work` in one IMMEDIATE transaction (the write lock up front); nested calls join it. */
  private inTransaction<T>(work: () => T): T {
    if (this.db.inTransaction) return work();
    return this.db.transaction(work).immediate();
  }

  /** Appends audit records and moves the sealed head; call inside a write transaction. */
  private appendAuditRecords(append: AuditAppend | undefined): void {
    if (append === undefined || append.events.length === 0) return;
    try {
      const sealed = append.seal(this.s.getAuditHead.get(), append.events);
      for (const row of sealedAuditRows(sealed, append.events)) this.s.insertAudit.run(row);
      this.s.setAuditHead.run(sealed.head);
    } catch (e) {
      // Fails the whole transaction: a change is never committed without its record.
      throw new KmsError(Code.Unavailable, 'the audit log cannot be written; nothing was changed', { cause: e });
    }
  }

  async commitKeyChange(change: KeyChange): Promise<void> {
    // IMMEDIATE takes the write lock at BEGIN, waiting up to busy_timeout for another process,
    // instead of failing half-way when a read lock cannot be upgraded.
    this.commitTransaction.immediate(change);
    await this.published({ topic: 'key', id: change.key.id });
  }

  async findKeysDueForRotation(now: number, limit: number): Promise<SymmetricKey[]> {
    return this.s.keysDueForRotation.all({ now, limit }).map(rowToKey);
  }

  async findVersionsDueForDestruction(now: number, limit: number): Promise<KeyVersion[]> {
    return this.s.versionsDueForDestruction.all({ now, limit }).map(rowToVersion);
  }

  async findDeletedKeys(deletedBefore: number, limit: number): Promise<SymmetricKey[]> {
    return this.s.deletedKeys.all({ before: deletedBefore, limit }).map(rowToKey);
  }

  async purgeKey(keyId: string): Promise<void> {
    if (this.purgeTransaction.immediate(keyId)) await this.published({ topic: 'key', id: keyId }, { topic: 'binding', id: `key:${keyId}` });
  }

  async getOperation(id: string): Promise<Operation | undefined> {
    return ifFound(this.s.getOperation.get({ id }), rowToOperation);
  }

  async listOperations(resourceId: string, page: PageRequest): Promise<Page<Operation>> {
    return mapPage(this.s.listOperations.page(resourceId, page), rowToOperation);
  }

  async findOperationByIdempotencyKey(createdBy: string, idempotencyKey: string): Promise<Operation | undefined> {
    const row = this.s.operationByIdempotencyKey.get({ created_by: createdBy, idempotency_key: idempotencyKey });
    return ifFound(row, rowToOperation);
  }

  async createPrincipal(p: Principal, audit?: AuditAppend): Promise<void> {
    this.inTransaction(() => {
      translatingConstraints(() => this.s.insertPrincipal.run(principalToRow(p)), {
        PRIMARYKEY: alreadyExists(`principal ${p.id}`),
      });
      this.appendAuditRecords(audit);
    });
    await this.published({ topic: 'principal', id: p.id });
  }

  async listPrincipals(page: PageRequest): Promise<Page<Principal>> {
    return mapPage(this.s.listPrincipals.page('', page), rowToPrincipal);
  }

  async deletePrincipal(id: string, audit?: AuditAppend): Promise<string[] | undefined> {
    const removed = this.inTransaction(() => {
      const found = this.s.getPrincipal.get({ id });
      if (found === undefined) return undefined;
      const tokens = this.s.deleteTokensOfPrincipal.all({ principal_id: id });
      this.s.deleteBindingsOfSubject.run({ subject_type: found.type, subject_id: id });
      this.s.deletePrincipal.run({ id });
      this.appendAuditRecords(audit);
      return tokens;
    });
    if (removed !== undefined) await this.published({ topic: 'principal', id }, ...removed.map((t): Change => ({ topic: 'token', id: t })));
    return removed;
  }

  async listTokens(principalId: string): Promise<TokenRecord[]> {
    return this.s.listTokens.all({ principal_id: principalId }).map(rowToToken);
  }

  async revokeToken(id: string, at: number, audit?: AuditAppend): Promise<boolean> {
    const revoked = this.inTransaction(() => {
      if (this.s.revokeToken.run({ id, at }).changes === 0) return false;
      this.appendAuditRecords(audit);
      return true;
    });
    if (revoked) await this.published({ topic: 'token', id });
    return revoked;
  }

  async listBindings(scope: Scope): Promise<AccessBinding[]> {
    return this.s.listBindings.all({ scope_type: scope.type, scope_id: scope.id }).map((row) => rowToBinding(row).binding);
  }

  async bindingsOfSubjects(subjects: readonly Subject[]): Promise<{ scope: Scope; binding: AccessBinding }[]> {
    return subjects.flatMap((s) => this.s.bindingsOfSubject.all({ subject_type: s.type, subject_id: s.id }).map(rowToBinding));
  }

  async changeBindings(change: AccessBindingChange): Promise<BindingDelta[]> {
    // The write lock of the immediate transaction serialises changes of the same scope.
    const effective = this.inTransaction(() => {
      const { scope } = change;
      const current = this.s.listBindings.all({ scope_type: scope.type, scope_id: scope.id }).map((row) => rowToBinding(row).binding);
      const deltas = effectiveDeltas(current, change);
      for (const d of deltas) {
        const row = bindingToRow(scope, d.binding);
        if (d.action === 'ADD') this.s.insertBinding.run(row);
        else this.s.deleteBinding.run(row);
      }
      if (change.operation !== undefined) this.insertOperation(change.operation);
      this.appendAuditRecords(change.audit);
      return deltas;
    });
    if (effective.length > 0) await this.published({ topic: 'binding', id: `${change.scope.type}:${change.scope.id}` });
    return effective;
  }

  /**
   * A group commit of audit records, every crypto call's wait. better-sqlite3 runs on the event
   * loop, and a FULL commit's fsync of the WAL would stall every other request for as long as the
   * disk takes. So this one commit runs with synchronous = NORMAL (its frames are written to the
   * WAL, not yet synced) and then the WAL is fsynced on libuv's thread pool; the caller, and so the
   * calls whose records these are, hear of success only after that fsync: the same durability as
   * FULL, without the stall. A checkpoint in between is no hazard: in WAL mode SQLite syncs the WAL
   * before copying it into the database and the database after.
   *
   * The workers of --workers make these commits all the time, each over its own connection, so the
   * write lock is often another process's: SQLite's own wait for it (busy_timeout) would stall the
   * event loop too, so it is tried without waiting, and again a millisecond later meanwhile.
   */
  async appendAudit(append: AuditAppend): Promise<void> {
    if (append.events.length === 0) return;
    if (this.db.memory || this.db.inTransaction) {
      this.inTransaction(() => this.appendAuditRecords(append));
      return;
    }
    if (this.auditThread) {
      try {
        await this.auditThread.append(append.events);
      } catch (e) {
        throw new KmsError(Code.Unavailable, 'the audit log cannot be written', { cause: e });
      }
      return;
    }
    await this.whenWriteLockFree(() => {
      // db.pragma, not a statement prepared once: SQLite applies this pragma when it compiles it, so
      // a prepared one does nothing the first time it runs.
      this.db.pragma('synchronous = NORMAL');
      try {
        this.inTransaction(() => this.appendAuditRecords(append));
      } finally {
        this.db.pragma('synchronous = FULL');
      }
    });
    try {
      await (await this.walFile()).datasync();
    } catch (e) {
      throw new KmsError(Code.Unavailable, 'the audit log cannot be made durable', { cause: e });
    }
  }

  /** Runs `write` once SQLite's write lock is free, trying every millisecond for up to the busy timeout. */
  private async whenWriteLockFree(write: () => void): Promise<void> {
    const deadline = Date.now() + BUSY_TIMEOUT_MS;
    for (;;) {
      // db.pragma prepares it each time: SQLite applies this pragma while compiling the
      // statement, so a statement prepared once does not reliably apply it when run again.
      this.db.pragma('busy_timeout = 0');
      try {
        write();
        return;
      } catch (e) {
        if (!(e instanceof Database.SqliteError && e.code === 'SQLITE_BUSY') || Date.now() >= deadline) throw e;
      } finally {
        this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** The WAL, opened once; it exists for as long as this connection is open (WAL mode). */
  private walFile(): Promise<FileHandle> {
    this.wal ??= open(`${this.db.name}-wal`, 'r+');
    return this.wal;
  }

  async getAuditHead(): Promise<AuditHead | undefined> {
    return this.s.getAuditHead.get();
  }

  async scanAudit(afterSeq: number, limit: number): Promise<StoredAuditRecord[]> {
    return this.s.scanAudit.all({ after: afterSeq, limit });
  }

  async queryAudit(filter: AuditFilter, page: PageRequest): Promise<Page<StoredAuditRecord>> {
    const q = auditQuery(filter, page);
    let stmt = this.auditQueries.get(q.sql);
    if (stmt === undefined) {
      stmt = this.db.prepare<Record<string, string | number>, StoredAuditRecord>(q.sql);
      this.auditQueries.set(q.sql, stmt);
    }
    return auditPage(stmt.all(q.params), q.size);
  }

  async getPrincipal(id: string): Promise<Principal | undefined> {
    return ifFound(this.s.getPrincipal.get({ id }), rowToPrincipal);
  }

  async createToken(t: TokenRecord, audit?: AuditAppend): Promise<void> {
    this.inTransaction(() => {
      translatingConstraints(() => this.s.insertToken.run(tokenToRow(t)), {
        PRIMARYKEY: alreadyExists(`token ${t.id}`),
        FOREIGNKEY: (cause) => new KmsError(Code.NotFound, `principal ${t.principalId} not found`, { cause }),
      });
      this.appendAuditRecords(audit);
    });
    await this.published({ topic: 'token', id: t.id });
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    return ifFound(this.s.getToken.get({ id }), rowToToken);
  }

  async getMeta(name: string): Promise<string | undefined> {
    return this.s.getMeta.get({ name });
  }

  async initMeta(name: string, value: string): Promise<string> {
    this.s.insertMetaIfAbsent.run({ name, value });
    // Nothing deletes meta rows, so the row is there now (ours or an earlier one); `?? value` only
    // satisfies the type.
    return this.s.getMeta.get({ name }) ?? value;
  }

  async replaceMeta(name: string, expected: string, next: string): Promise<boolean> {
    return this.s.replaceMeta.run({ name, expected, next }).changes === 1;
  }

  async listStoredMaterial(afterVersionId: string, limit: number): Promise<StoredMaterial[]> {
    return this.s.listStoredMaterial
      .all({ after: afterVersionId, limit })
      .map((r) => ({ keyId: r.key_id, versionId: r.id, material: r.wrapped_material }));
  }

  async replaceStoredMaterial(keyId: string, versionId: string, expected: Buffer, next: Buffer): Promise<boolean> {
    return this.s.replaceStoredMaterial.run({ key_id: keyId, id: versionId, expected, next }).changes === 1;
  }

  /**
   * The shared lock when the opener gave one (the workers of --workers); otherwise one process
   * uses this store, so the lock is in-process: the scheduler's passes and test-clock runs of one
   * node take turns. Other processes on the same file are kept right by the revision-checked,
   * IMMEDIATE commits, not by this.
   */
  async exclusively<T>(job: string, options: { readonly wait: boolean }, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.sharedLock) return this.sharedLock.exclusively(job, options, work);
    const running = this.jobs.get(job);
    if (running !== undefined && !options.wait) return { ran: false };
    const turn = (running ?? Promise.resolve()).catch(() => undefined).then(work);
    this.jobs.set(job, turn);
    try {
      return { ran: true, value: await turn };
    } finally {
      if (this.jobs.get(job) === turn) this.jobs.delete(job);
    }
  }

  async *exportSnapshot(): AsyncIterable<SnapshotRecord> {
    if (this.db.memory) {
      // No second connection can see a private in-memory database: read it all in one go, which
      // nothing can interleave with.
      const rows = this.db.transaction(() => SNAPSHOT_ORDER.map((type) => [type, this.db.prepare(snapshotSelect(type)).all()] as const))();
      for (const [type, list] of rows) for (const row of list) yield recordOfRow(MAPPING, type, row as Record<string, unknown>);
      return;
    }
    // A connection of its own, so the read transaction it holds while the consumer writes the
    // records out cannot take in this connection's writes; in WAL mode it reads one snapshot.
    const reader = new Database(this.db.name, { readonly: true, fileMustExist: true });
    try {
      reader.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      reader.exec('BEGIN');
      for (const type of SNAPSHOT_ORDER) {
        for (const row of reader.prepare(snapshotSelect(type)).iterate()) yield recordOfRow(MAPPING, type, row as Record<string, unknown>);
      }
      reader.exec('COMMIT');
    } finally {
      reader.close();
    }
  }

  async importSnapshot(records: AsyncIterable<SnapshotRecord>): Promise<Readonly<Record<SnapshotRecordType, number>>> {
    // By hand rather than db.transaction(): the records arrive asynchronously.
    this.db.exec('BEGIN IMMEDIATE');
    try {
      if (this.db.prepare(ANY_ROW_SQL).pluck().get() !== 0) {
        throw ERR.failedPrecondition('the store is not empty: a backup is only restored into a store that holds nothing yet');
      }
      const counts = noRecords();
      let previous: SnapshotRecordType | undefined;
      let position = 0;
      for await (const record of records) {
        position++;
        checkImported(record, previous, position);
        previous = record.type;
        try {
          this.insertRecord(record);
        } catch (e) {
          if (e instanceof Database.SqliteError && e.code.startsWith('SQLITE_CONSTRAINT')) {
            throw ERR.invalidArgument(`snapshot record ${position} (${record.type}): ${e.message}`);
          }
          throw e;
        }
        counts[record.type]++;
      }
      this.db.exec('COMMIT');
      return counts;
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw e;
    }
  }

  /**
   * From now on appendAudit (the crypto calls' group commits) seals, commits and fsyncs on a
   * thread of its own with its own connection (audit-thread.ts), keyed by `macKey`, the key the
   * callers' seal uses: the event loop then only hands the records over. Not for an in-memory
   * database, which no other connection can open.
   */
  writeAuditOnThread(macKey: SecretBytes): void {
    if (this.db.memory || this.auditThread) return;
    this.auditThread = new AuditThread({ kind: 'sqlite', path: this.db.name, busyTimeoutMs: BUSY_TIMEOUT_MS }, macKey);
  }

  async close(): Promise<void> {
    await this.auditThread?.close();
    // Before the connection: SQLite deletes the WAL when its last connection closes.
    await (await this.wal?.catch(() => undefined))?.close();
    this.db.close();
  }

  /** Tells this process's caches (and the other workers'), once the change has committed. */
  private async published(...changes: Change[]): Promise<void> {
    await this.changes.publish(changes);
  }

  private insertRecord(r: SnapshotRecord): void {
    switch (r.type) {
      case 'meta':
        this.s.insertMeta.run({ name: r.name, value: r.value });
        return;
      case 'principal':
        this.s.insertPrincipal.run(principalToRow(r.principal));
        return;
      case 'token':
        this.s.insertToken.run(tokenToRow(r.token));
        return;
      case 'key':
        this.s.insertKey.run(keyToRow(r.key));
        return;
      case 'version':
        this.s.insertVersion.run({ ...versionToRow(r.version), wrapped_material: r.wrappedMaterial ?? null });
        return;
      case 'operation':
        this.s.insertOperation.run(operationToRow(r.operation));
        return;
      case 'binding':
        this.s.insertBinding.run(bindingToRow(r.scope, r.binding));
        return;
      case 'audit':
        this.s.insertAudit.run(auditRow(r.record));
        return;
      case 'auditHead':
        this.s.setAuditHead.run(r.head);
        return;
    }
  }

  settings(): SqliteSettings {
    const pragma = (name: string): unknown => this.db.pragma(name, { simple: true });
    return {
      journalMode: String(pragma('journal_mode')),
      synchronous: Number(pragma('synchronous')),
      foreignKeys: pragma('foreign_keys') === 1,
      busyTimeoutMs: Number(pragma('busy_timeout')),
      secureDelete: pragma('secure_delete') === 1,
      schemaVersion: schemaVersion(this.db),
    };
  }

  /** The body of commitKeyChange; runs inside its transaction, so any throw undoes all of it. */
  private applyKeyChange(change: KeyChange): void {
    const { key } = change;
    const versions = [...(change.insertVersions ?? []).map((n) => n.version), ...(change.updateVersions ?? [])];
    // A version of another key would be written without that key's revision check.
    const stray = versions.find((v) => v.keyId !== key.id);
    if (stray !== undefined) {
      throw new Error(`commitKeyChange: version ${stray.id} belongs to key ${stray.keyId}, not to key ${key.id}`);
    }

    const keyRow = keyToRow(key);
    if (change.expectRevision === undefined) {
      translatingConstraints(() => this.s.insertKey.run(keyRow), { PRIMARYKEY: alreadyExists(`key ${key.id}`) });
    } else if (this.s.updateKey.run({ ...keyRow, expect_revision: change.expectRevision }).changes === 0) {
      // Another writer committed first, or the key was purged.
      throw ERR.aborted(`key ${key.id} was changed concurrently`);
    }

    for (const { version, wrappedMaterial } of change.insertVersions ?? []) {
      translatingConstraints(() => this.s.insertVersion.run({ ...versionToRow(version), wrapped_material: wrappedMaterial }), {
        PRIMARYKEY: alreadyExists(`key ${key.id}: version ${version.id}`),
      });
    }
    for (const version of change.updateVersions ?? []) {
      if (this.s.updateVersion.run(versionToRow(version)).changes === 0) {
        throw ERR.aborted(`key ${key.id}: version ${version.id} does not exist`);
      }
    }

    if (change.operation !== undefined) this.insertOperation(change.operation);
    this.appendAuditRecords(change.audit);
  }

  private insertOperation(op: Operation): void {
    translatingConstraints(() => this.s.insertOperation.run(operationToRow(op)), {
      PRIMARYKEY: alreadyExists(`operation ${op.id}`),
      UNIQUE: alreadyExists(`operation with idempotency key ${op.idempotencyKey} of ${op.createdBy}`),
    });
  }

  /** The body of purgeKey, inside its transaction; false when there was nothing to purge. */
  private purge(keyId: string): boolean {
    const deletedAt = this.s.keyDeletedAt.get({ id: keyId });
    if (deletedAt === undefined) return false; // already purged, perhaps by another node
    if (deletedAt === null) throw ERR.failedPrecondition(`key ${keyId} is not deleted and cannot be purged`);
    this.s.deleteVersionsOfKey.run({ key_id: keyId });
    this.s.deleteBindingsOfScope.run({ scope_type: 'key', scope_id: keyId });
    this.s.deleteKey.run({ id: keyId });
    return true;
  }
}
