import Database from 'better-sqlite3';
import { closeSync, fdatasyncSync, openSync } from 'node:fs';
import type { AuditEvent } from '../../domain/audit.js';
import type { AuditAppend } from '../../ports/store.js';
import { sealedAuditRows } from '../store-rows/audit-rows.js';
import { SQL } from './statements.js';

/**
 * The audit writer thread's connection to the SQLite database (audit-thread.ts). It shares the
 * chain with the store's connection, whose mutations append their records in their own
 * transactions, and with the other processes of --workers: every appender reads the head inside a
 * write transaction, and SQLite's write lock orders them. Waiting for that lock (busy_timeout)
 * blocks only this thread.
 */
export class SqliteAuditAppender {
  private readonly db: Database.Database;
  private readonly write: Database.Transaction<(append: AuditAppend) => void>;
  private readonly wal: number;

  constructor(path: string, busyTimeoutMs: number) {
    this.db = new Database(path, { fileMustExist: true });
    this.db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    // A commit writes its frames to the WAL without syncing them; append syncs the WAL before it
    // returns, which makes the group as durable as FULL would, and outside the write lock, so the
    // other writers do not wait for the disk.
    this.db.pragma('synchronous = NORMAL');
    const getHead = this.db.prepare<[], { seq: number; hash: string; mac: string }>(SQL.getAuditHead);
    const setHead = this.db.prepare<{ seq: number; hash: string; mac: string }>(SQL.setAuditHead);
    const insert = this.db.prepare(SQL.insertAudit);
    this.write = this.db.transaction((append: AuditAppend) => {
      const events: readonly AuditEvent[] = append.events;
      const sealed = append.seal(getHead.get(), events);
      for (const row of sealedAuditRows(sealed, events)) insert.run(row);
      setHead.run(sealed.head);
    });
    // The store's connection put the database in WAL mode; the WAL exists while a connection is open.
    this.wal = openSync(`${path}-wal`, 'r+');
  }

  append(append: AuditAppend): void {
    this.write.immediate(append);
    fdatasyncSync(this.wal);
  }

  close(): void {
    closeSync(this.wal);
    this.db.close();
  }
}
