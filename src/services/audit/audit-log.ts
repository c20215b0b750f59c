import type { Logger } from 'pino';
import { sealBatch } from '../../crypto/audit-chain.js';
import type { SecretBytes } from '../../crypto/secret-bytes.js';
import type { AuditEvent, AuditFilter, StoredAuditRecord } from '../../domain/audit.js';
import type { Page, PageRequest } from '../../domain/paging.js';
import { Code, ERR } from '../../errors/kms-error.js';
import type { Clock } from '../../ports/clock.js';
import type { AuditAppend, AuditStore } from '../../ports/store.js';
import type { CallContext } from '../context.js';
import type { AuditTrail } from './trail.js';

// The audit log. A call's record is durable before its response leaves: mutations commit their
// record in the same transaction as their change (forCommit), every other call waits for
// `record`, which groups the records of concurrent calls into one store transaction (one fsync).
// If the record cannot be written the call fails: a result is never returned unaudited.

/** Told about every group commit, for the metrics. */
export type AuditFlushObserver = (records: number, seconds: number, ok: boolean) => void;

interface Pending {
  readonly event: AuditEvent;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

export class AuditLog {
  private queue: Pending[] = [];
  private flushing = false;
  /** Largest batch seen, for the tests and the bench notes. */
  maxBatch = 0;
  #discardCallRecords = false;

  constructor(
    private readonly store: AuditStore,
    private readonly macKey: SecretBytes,
    private readonly clock: Clock,
    private readonly logger?: Logger,
    private readonly onFlush?: AuditFlushObserver,
  ) {}

  /** Benchmarks only (bench-discard.ts): `record` writes nothing from now on. */
  discardCallRecordsForBenchmark(): void {
    this.#discardCallRecords = true;
  }

  /** Records waiting for the next group commit. */
  get queued(): number {
    return this.queue.length;
  }

  readonly seal: AuditAppend['seal'] = (head, events) => sealBatch(this.macKey, head, events);

  event(trail: AuditTrail, code: Code | 0): AuditEvent {
    // Built field by field (every call makes one): absent resources stay absent, not undefined.
    const e: { -readonly [K in keyof AuditEvent]: AuditEvent[K] } = {
      time: this.clock.now(),
      event: trail.event,
      method: trail.method,
      subject: trail.subject,
      code,
      requestId: trail.requestId,
      peer: trail.peer,
      transport: trail.transport,
    };
    if (trail.folderId !== undefined) e.folderId = trail.folderId;
    if (trail.keyId !== undefined) e.keyId = trail.keyId;
    if (trail.versionId !== undefined) e.versionId = trail.versionId;
    if (trail.resourceId !== undefined) e.resourceId = trail.resourceId;
    return e;
  }

  /** The success record of a mutation, for the store to commit with the change. */
  forCommit(ctx: CallContext | undefined): AuditAppend | undefined {
    if (ctx?.trail === undefined) return undefined;
    return { events: [this.event(ctx.trail, 0)], seal: this.seal };
  }

  /** Background work (no caller) is recorded too, with the system subject. */
  systemCommit(event: string, fields: { keyId?: string; folderId?: string; versionId?: string }): AuditAppend {
    const trail: AuditTrail = { event, method: 'kmsd.scheduler', requestId: '', peer: '', transport: 'system', subject: { type: 'system', id: 'kmsd-scheduler' }, written: false, ...fields };
    return { events: [this.event(trail, 0)], seal: this.seal };
  }

  /** Call after the store committed `forCommit`'s append: the runner then does not write it again. */
  committed(ctx: CallContext | undefined): void {
    if (ctx?.trail) ctx.trail.written = true;
  }

  /** Makes the call's record durable (group commit); rejects with UNAVAILABLE if it cannot be written. */
  record(trail: AuditTrail, code: Code | 0): Promise<void> {
    if (trail.written) return Promise.resolve();
    trail.written = true;
    if (this.#discardCallRecords) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queue.push({ event: this.event(trail, code), resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      this.maxBatch = Math.max(this.maxBatch, batch.length);
      const start = performance.now();
      try {
        await this.store.appendAudit({ events: batch.map((p) => p.event), seal: this.seal });
        this.onFlush?.(batch.length, (performance.now() - start) / 1000, true);
        for (const p of batch) p.resolve();
      } catch (e) {
        this.onFlush?.(batch.length, (performance.now() - start) / 1000, false);
        this.logger?.error({ err: e, records: batch.length }, 'audit log write failed; the calls it records fail with UNAVAILABLE');
        const failure = ERR.unavailable('the audit log cannot be written; the call was not completed');
        for (const p of batch) p.reject(failure);
      }
    }
    this.flushing = false;
  }

  query(filter: AuditFilter, page: PageRequest): Promise<Page<StoredAuditRecord>> {
    return this.store.queryAudit(filter, page);
  }
}
