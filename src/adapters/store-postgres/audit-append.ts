import pg from 'pg';
import type { AuditHead } from '../../domain/audit.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import type { AuditAppend } from '../../ports/store.js';
import { sealedAuditRows, type AuditRow } from '../store-rows/audit-rows.js';
import { connectionProblem } from './pg-errors.js';
import { TYPE_PARSERS } from './row-mapping.js';
import { onConnection } from './pooled.js';
import { first, run } from './statement.js';
import { BEGIN_AUDIT_APPEND, STATEMENTS as S } from './statements.js';

// The group commit of the crypto calls' audit records on PostgreSQL, on the store's pool or on the
// audit writer thread's own connection (audit-thread.ts). Mutations append their records inside
// their own transactions (PostgresStore.appendAuditRecords), under the same chain lock.

/** Audit records as the parallel arrays of one multi-row insert. */
export function auditColumns(rows: readonly AuditRow[]) {
  return {
    seq: rows.map((r) => r.seq),
    at: rows.map((r) => r.at),
    subject_id: rows.map((r) => r.subject_id),
    key_id: rows.map((r) => r.key_id),
    code: rows.map((r) => r.code),
    body: rows.map((r) => r.body),
    hash: rows.map((r) => r.hash),
  };
}

/** What a connection problem during COMMIT means: the server may have committed or not. */
export const commitOutcomeUnknown = (cause: unknown) =>
  new KmsError(Code.Unavailable, 'the database became unavailable while committing; the change may or may not have been applied', { cause });

/** How long a node appends audit groups under the chain's lock after finding another writer moved the head. */
const CONTENDED_AUDIT_PAUSE_MS = 1000;

export class PostgresAuditAppender {
  /** The head this appender's last group commit wrote; undefined when unknown (see append). */
  private lastAppendedHead: AuditHead | undefined;
  /** After the one-statement append found the head moved, the locked append until then (performance.now()). */
  private lockedAppendsUntil = 0;

  constructor(private readonly pool: pg.Pool) {}

  /**
   * Each round trip of a group commit costs a turn of the event loop that hears the answer, so
   * when this appender wrote the head last it seals after that head and commits in one statement
   * (appendAuditsAfterHead), which writes nothing if another writer moved the head since. Otherwise,
   * or when that finds the head moved, three round trips under the chain's lock: BEGIN with the
   * locks and the head; records and new head; COMMIT.
   */
  async append(append: AuditAppend): Promise<void> {
    if (append.events.length === 0) return;
    const known = this.lastAppendedHead;
    this.lastAppendedHead = undefined;
    if (known !== undefined && performance.now() >= this.lockedAppendsUntil) {
      if (await this.appendAfterHead(known, append)) return;
      // Other writers are appending too (several nodes): for a while, do not spend a round trip
      // on an attempt that is likely to find the head moved again.
      this.lockedAppendsUntil = performance.now() + CONTENDED_AUDIT_PAUSE_MS;
    }
    let written: AuditHead | undefined;
    await onConnection(
      this.pool,
      async (client, discard, committing) => {
        try {
          const results = (await client.query(BEGIN_AUDIT_APPEND)) as unknown as pg.QueryResult<{ seq: number; hash: string; mac: string }>[];
          const head = results.at(-1)?.rows[0];
          const sealed = append.seal(head, append.events);
          await run(client, S.insertAuditsAndHead, { ...auditColumns(sealedAuditRows(sealed, append.events)), head_seq: sealed.head.seq, head_hash: sealed.head.hash, head_mac: sealed.head.mac });
          written = sealed.head;
        } catch (e) {
          await client.query('ROLLBACK').catch(discard);
          if (connectionProblem(e) !== undefined) throw e;
          throw new KmsError(Code.Unavailable, 'the audit log cannot be written; nothing was changed', { cause: e });
        }
        committing();
        try {
          await client.query('COMMIT');
        } catch (e) {
          if (connectionProblem(e) !== undefined) throw commitOutcomeUnknown(e);
          throw e;
        }
      },
      { retry: true },
    );
    this.lastAppendedHead = written;
  }

  /** append's one-statement path: true when it committed, false when the head had moved (nothing written). */
  private async appendAfterHead(known: AuditHead, append: AuditAppend): Promise<boolean> {
    const sealed = append.seal(known, append.events);
    const moved = await onConnection(
      this.pool,
      async (client, _discard, committing) => {
        committing(); // the statement commits by itself: if the connection breaks, the outcome is unknown
        try {
          return (await first(client, S.appendAuditsAfterHead, {
            ...auditColumns(sealedAuditRows(sealed, append.events)),
            head_seq: sealed.head.seq,
            head_hash: sealed.head.hash,
            head_mac: sealed.head.mac,
            expected_seq: known.seq,
            expected_hash: known.hash,
          }))?.moved;
        } catch (e) {
          if (connectionProblem(e) !== undefined) throw commitOutcomeUnknown(e);
          throw new KmsError(Code.Unavailable, 'the audit log cannot be written; nothing was changed', { cause: e });
        }
      },
      { retry: false },
    );
    if (moved !== 1) return false;
    this.lastAppendedHead = sealed.head;
    return true;
  }
}

/** The audit writer thread's appender (audit-thread.ts): one connection of its own, made the way the store's pool makes them. */
export function openPostgresAuditAppender(connectionString: string, connectionTimeoutMs: number): { append(append: AuditAppend): Promise<void>; close(): Promise<void> } {
  const pool = new pg.Pool({ connectionString, connectionTimeoutMillis: connectionTimeoutMs, keepAlive: true, types: TYPE_PARSERS, max: 1 });
  // An idle connection that breaks is dropped by the pool; the next group opens a new one.
  pool.on('error', () => undefined);
  const appender = new PostgresAuditAppender(pool);
  return { append: (a) => appender.append(a), close: () => pool.end() };
}
