import { Worker } from 'node:worker_threads';
import type { SecretBytes } from '../../crypto/secret-bytes.js';
import type { AuditEvent } from '../../domain/audit.js';

// The audit writer thread. A crypto call's audit record must be durable before its answer leaves,
// and the records of concurrent calls are committed in groups (AuditLog). Sealing a group into the
// hash chain (canonical JSON, one HMAC per record), inserting it and waiting for the database are
// done on this thread, with a connection of its own (thread-main.ts), so the event loop that serves
// requests only hands the records over. One group is in flight at a time (the audit log sends the
// next when this one is done): records queue up on the event loop meanwhile and make the next group.

/** Where the thread writes: the store's own database, over a connection of the thread's own. */
export type AuditThreadTarget =
  | { readonly kind: 'sqlite'; readonly path: string; readonly busyTimeoutMs: number }
  | { readonly kind: 'postgres'; readonly connectionString: string; readonly connectionTimeoutMs: number };

export interface AuditThreadData {
  readonly target: AuditThreadTarget;
  /** A copy for the thread, which wipes it once it holds the key. */
  readonly macKey: Uint8Array;
}
export type AuditThreadRequest = { readonly id: number; readonly events: readonly AuditEvent[]; readonly close?: undefined } | { readonly close: true };
export type AuditThreadReply = { readonly id: number; readonly ok: true } | { readonly id: number; readonly ok: false; readonly message: string };

interface Waiting {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

/**
 * The thread's entry. Under tsx (the tests) this module is TypeScript, and so is the entry next to
 * it: the thread then registers tsx itself first (Node 20 does not carry --import hooks into threads).
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const ENTRY = new URL(`./thread-main${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url);
const SOURCE_BOOTSTRAP = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(ENTRY.href)}); })`;

export class AuditThread {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly target: AuditThreadTarget,
    private readonly macKey: SecretBytes,
  ) {
    // Started now rather than at the first call: the thread loads its modules on another core
    // while the server finishes starting.
    this.started();
  }

  /** Seals, commits and makes durable `events`; rejects when the thread could not (nothing was written then, or the outcome is unknown). */
  append(events: readonly AuditEvent[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the audit writer thread is closed'));
    const worker = this.started();
    const id = this.nextId++;
    // Pending groups keep the process alive until the thread answers; an idle thread does not.
    if (this.waiting.size === 0) worker.ref();
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, events } satisfies AuditThreadRequest);
    });
  }

  /** Lets the thread close its connection; call when no append is pending, before the store's own connections close. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (worker === undefined) return;
    this.worker = undefined;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    // Until it has closed its connection, even if nothing else keeps the process alive.
    worker.ref();
    worker.postMessage({ close: true } satisfies AuditThreadRequest);
    await exited;
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const data: AuditThreadData = { target: this.target, macKey: Uint8Array.from(this.macKey.exposeSecret()) };
    const options = { workerData: data, transferList: [data.macKey.buffer as ArrayBuffer] };
    const worker = FROM_SOURCE ? new Worker(SOURCE_BOOTSTRAP, { ...options, eval: true }) : new Worker(ENTRY, options);
    worker.on('message', (reply: AuditThreadReply) => {
      const w = this.waiting.get(reply.id);
      if (w === undefined) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      if (reply.ok) w.resolve();
      else w.reject(new Error(reply.message));
    });
    // A thread that failed or exited takes its pending groups with it; the next append starts another.
    const failAll = (e: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    worker.on('error', (e) => failAll(e));
    worker.on('exit', (code) => failAll(new Error(`the audit writer thread exited (code ${code})`)));
    worker.unref();
    this.worker = worker;
    return worker;
  }
}
