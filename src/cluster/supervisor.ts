import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { FAN_OUT_TIMEOUT_MS, isKmsdMessage, TELLS_ASKER, type Addresses, type FanOutKind, type PrimaryMessage, type WorkerMessage } from './protocol.js';

// The primary process of `kmsd serve --workers N`: it forks N workers that each run the whole
// server (node:cluster shares their listening sockets; the primary accepts the connections and
// hands them out round robin), keeps them running, and carries what they must share (protocol.ts):
// changes for the caches, background-work locks, the test clock, metrics. It serves no request.
//
// Start: the workers are forked at once and wait while the supervisor prepares the data directory;
// the start succeeds when every one of them listens, on the same addresses, and fails with the
// first worker's own message when one cannot start (the caller stops the others). After that, a worker that exits is replaced in its slot (logged), at once
// if it had served for a while, else after a delay that doubles up to MAX_RESTART_DELAY_MS, so a
// worker that cannot start any more does not spin. stop() sends every worker SIGTERM, so each
// drains its requests, and resolves once they have all exited.

/** The variable that tells a forked process its slot (1..N); node:cluster sets its own to make it a worker. */
export const WORKER_SLOT_VARIABLE = 'KMSD_WORKER_SLOT';

const MIN_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;
/** A worker that served this long before it exited is restarted at once. */
const STABLE_MS = 10_000;

/** A worker could not start (its own message), or the workers do not share their listeners. */
export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
}

interface Slot {
  readonly number: number;
  worker?: Worker;
  /** When its current worker started listening. */
  listeningSince?: number;
  /** What its current worker said when it could not start. */
  failure?: string;
  restartDelayMs: number;
  restartTimer?: NodeJS.Timeout;
}

interface FanOut {
  readonly kind: FanOutKind;
  readonly waiting: Set<Worker>;
  readonly replies: unknown[];
  finish(): void;
}

interface Lock {
  holder: Worker;
  readonly queue: { readonly worker: Worker; readonly id: number }[];
}

export class Supervisor {
  readonly #logger: Logger;
  readonly #slots: Slot[];
  /** Workers that said hello: they are told every change from then on. */
  readonly #welcomed = new Set<Worker>();
  /** Workers that said hello before the data directory was prepared. */
  readonly #waiting: Worker[] = [];
  #prepared = false;
  readonly #fanOuts = new Map<number, FanOut>();
  readonly #locks = new Map<string, Lock>();
  #nextFanOut = 1;
  #clockOffsetMs = 0;
  #addresses: Addresses | undefined;
  #starting: { resolve(a: Addresses): void; reject(e: Error): void; pending: Set<number> } | undefined;
  #stopping = false;

  constructor(o: { readonly workers: number; readonly logger: Logger }) {
    this.#logger = o.logger;
    this.#slots = Array.from({ length: o.workers }, (_, i) => ({ number: i + 1, restartDelayMs: MIN_RESTART_DELAY_MS }));
  }

  /**
   * Forks every worker, runs `prepare` (the once-only work of a start) meanwhile, and lets the
   * workers start once it is done: their loading overlaps it, and none of them can see a data
   * directory half made. Resolves with the addresses they all listen on; rejects with why
   * `prepare` failed or a worker could not start.
   */
  async start(prepare: () => Promise<void>): Promise<Addresses> {
    const listening = new Promise<Addresses>((resolve, reject) => {
      this.#starting = { resolve, reject, pending: new Set(this.#slots.map((s) => s.number)) };
    });
    // A failure while `prepare` runs is reported by whichever of the two comes first.
    listening.catch(() => undefined);
    for (const slot of this.#slots) this.#fork(slot);
    await Promise.race([prepare(), listening]);
    this.#prepared = true;
    for (const worker of this.#waiting.splice(0)) this.#welcome(worker);
    return listening;
  }

  /** SIGTERM to every worker; resolves once all have exited: true when each exited cleanly (code 0). */
  async stop(): Promise<boolean> {
    this.#stopping = true;
    const exits: Promise<boolean>[] = [];
    for (const slot of this.#slots) {
      clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (worker === undefined) continue;
      exits.push(
        new Promise<boolean>((resolve) => {
          if (worker.process.exitCode !== null || worker.process.signalCode !== null) resolve(worker.process.exitCode === 0);
          else worker.once('exit', (code) => resolve(code === 0));
        }),
      );
      worker.process.kill('SIGTERM');
    }
    return (await Promise.all(exits)).every(Boolean);
  }

  #fork(slot: Slot): void {
    slot.failure = undefined;
    slot.listeningSince = undefined;
    const worker = cluster.fork({ [WORKER_SLOT_VARIABLE]: String(slot.number) });
    slot.worker = worker;
    // A send to a worker that is exiting fails here rather than crashing the supervisor.
    worker.on('error', (err) => this.#logger.warn({ err, worker: slot.number }, 'could not reach a worker'));
    worker.on('message', (m: unknown) => {
      if (isKmsdMessage<WorkerMessage>(m)) this.#receive(slot, worker, m);
    });
    worker.once('exit', (code, signal) => this.#exited(slot, worker, code, signal));
  }

  #receive(slot: Slot, worker: Worker, m: WorkerMessage): void {
    switch (m.kmsd) {
      case 'hello':
        if (this.#prepared) this.#welcome(worker);
        else this.#waiting.push(worker);
        return;
      case 'listening':
        this.#listening(slot, worker, m);
        return;
      case 'start-failed':
        slot.failure = m.message;
        return;
      case 'ask':
        this.#ask(worker, m.id, m.kind, m.body);
        return;
      case 'reply': {
        const fan = this.#fanOuts.get(m.id);
        if (fan?.waiting.delete(worker)) {
          fan.replies.push(m.body);
          if (fan.waiting.size === 0) fan.finish();
        }
        return;
      }
      case 'lock':
        this.#lock(worker, m.id, m.job, m.wait);
        return;
      case 'unlock': {
        const lock = this.#locks.get(m.job);
        if (lock?.holder === worker) this.#handOver(m.job, lock);
        return;
      }
    }
  }

  #welcome(worker: Worker): void {
    if (!worker.isConnected()) return;
    this.#welcomed.add(worker);
    send(worker, { kmsd: 'welcome', clockOffsetMs: this.#clockOffsetMs });
  }

  #listening(slot: Slot, worker: Worker, addresses: Addresses): void {
    slot.listeningSince = Date.now();
    const { rest, grpc } = addresses;
    this.#logger.info({ worker: slot.number, pid: worker.process.pid, rest, grpc }, 'worker listening');
    const first = (this.#addresses ??= addresses);
    if (first.rest !== rest || first.grpc !== grpc) {
      // node:cluster shares one socket per address among the workers; two addresses would mean
      // clients reach only some of them.
      const problem = `worker ${slot.number} listens on ${rest} and ${grpc}, the others on ${first.rest} and ${first.grpc}`;
      if (this.#starting) this.#failStart(problem);
      else this.#logger.error({ worker: slot.number }, problem);
      return;
    }
    if (this.#starting?.pending.delete(slot.number) && this.#starting.pending.size === 0) {
      this.#starting.resolve(first);
      this.#starting = undefined;
    }
  }

  #exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    this.#welcomed.delete(worker);
    if (this.#waiting.includes(worker)) this.#waiting.splice(this.#waiting.indexOf(worker), 1);
    // What it held or was waiting for goes to the others; nobody waits for its replies any more.
    for (const [job, lock] of this.#locks) {
      const mine = lock.queue.filter((q) => q.worker === worker);
      for (const q of mine) lock.queue.splice(lock.queue.indexOf(q), 1);
      if (lock.holder === worker) this.#handOver(job, lock);
    }
    for (const fan of this.#fanOuts.values()) if (fan.waiting.delete(worker) && fan.waiting.size === 0) fan.finish();
    if (slot.worker === worker) slot.worker = undefined;
    if (this.#stopping) return;
    if (this.#starting) {
      this.#failStart(slot.failure ?? `worker ${slot.number} exited (${signal ?? `code ${code}`}) before it was listening`);
      return;
    }
    const served = slot.listeningSince === undefined ? 0 : Date.now() - slot.listeningSince;
    slot.restartDelayMs = served >= STABLE_MS ? MIN_RESTART_DELAY_MS : Math.min(slot.restartDelayMs * 2, MAX_RESTART_DELAY_MS);
    const delay = served >= STABLE_MS ? 0 : slot.restartDelayMs;
    this.#logger.error(
      { worker: slot.number, pid: worker.process.pid, code, signal, ...(slot.failure ? { reason: slot.failure } : {}), restartInMs: delay },
      'a worker exited; starting another in its place',
    );
    slot.restartTimer = setTimeout(() => {
      if (!this.#stopping) this.#fork(slot);
    }, delay);
  }

  #failStart(message: string): void {
    const starting = this.#starting;
    this.#starting = undefined;
    starting?.reject(new WorkerStartError(message));
  }

  /** A worker's request to have the workers do something (protocol.ts); answered with their replies. */
  #ask(asker: Worker, id: number, kind: FanOutKind, body: unknown): void {
    if (kind === 'clock') this.#clockOffsetMs += (body as { ms: number }).ms;
    const targets = [...this.#welcomed].filter((w) => TELLS_ASKER[kind] || w !== asker);
    const fanId = this.#nextFanOut++;
    const fan: FanOut = {
      kind,
      waiting: new Set(targets),
      replies: [],
      finish: () => {
        clearTimeout(timer);
        this.#fanOuts.delete(fanId);
        send(asker, { kmsd: 'answer', id, replies: fan.replies });
      },
    };
    const timer = setTimeout(() => {
      const late = this.#slots.filter((s) => s.worker !== undefined && fan.waiting.has(s.worker)).map((s) => s.number);
      this.#logger.warn({ kind, workers: late, timeoutMs: FAN_OUT_TIMEOUT_MS[kind] }, 'workers did not reply in time; answering without them');
      fan.finish();
    }, FAN_OUT_TIMEOUT_MS[kind]);
    if (targets.length === 0) {
      fan.finish();
      return;
    }
    this.#fanOuts.set(fanId, fan);
    for (const w of targets) send(w, { kmsd: 'tell', id: fanId, kind, body });
  }

  #lock(worker: Worker, id: number, job: string, wait: boolean): void {
    const lock = this.#locks.get(job);
    if (lock === undefined) {
      this.#locks.set(job, { holder: worker, queue: [] });
      send(worker, { kmsd: 'locked', id, granted: true });
    } else if (wait) {
      lock.queue.push({ worker, id });
    } else {
      send(worker, { kmsd: 'locked', id, granted: false });
    }
  }

  #handOver(job: string, lock: Lock): void {
    const next = lock.queue.shift();
    if (next === undefined) {
      this.#locks.delete(job);
      return;
    }
    lock.holder = next.worker;
    send(next.worker, { kmsd: 'locked', id: next.id, granted: true });
  }
}

function send(worker: Worker, message: PrimaryMessage): void {
  // One that is gone is dealt with by its 'exit'.
  if (worker.isConnected()) worker.send(message);
}
