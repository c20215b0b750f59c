import { isKmsdMessage, type Addresses, type FanOutKind, type FanOuts, type PrimaryMessage, type WorkerMessage } from './protocol.js';

// A worker's end of the IPC channel to the supervisor (protocol.ts). Requests carry ids; the
// answers resolve them. If the supervisor goes away, node:cluster ends the worker at once (a
// worker never serves on its own: its caches would stop hearing the other workers' changes).

type TellHandler<K extends FanOutKind> = (body: FanOuts[K]['body']) => FanOuts[K]['reply'] | Promise<FanOuts[K]['reply']>;

export class WorkerLink {
  /** The worker's number, 1..N; a restarted worker takes the number of the one it replaces. */
  readonly slot: number;
  #clockOffsetMs: number;
  #nextId = 1;
  readonly #answers = new Map<number, (replies: readonly unknown[]) => void>();
  readonly #locks = new Map<number, (granted: boolean) => void>();
  readonly #handlers = new Map<FanOutKind, (body: never) => unknown>();

  private constructor(slot: number, clockOffsetMs: number) {
    this.slot = slot;
    this.#clockOffsetMs = clockOffsetMs;
    process.on('message', (m: unknown) => {
      if (isKmsdMessage<PrimaryMessage>(m)) this.#receive(m);
    });
  }

  /**
   * Says hello and waits for the welcome, which comes once the supervisor has prepared the data
   * directory: from then on this worker is told every change.
   */
  static connect(slot: number): Promise<WorkerLink> {
    if (process.send === undefined) return Promise.reject(new Error('not a worker process: there is no IPC channel to a supervisor'));
    return new Promise((resolve) => {
      const onMessage = (m: unknown) => {
        if (!isKmsdMessage<PrimaryMessage>(m) || m.kmsd !== 'welcome') return;
        process.off('message', onMessage);
        resolve(new WorkerLink(slot, m.clockOffsetMs));
      };
      process.on('message', onMessage);
      send({ kmsd: 'hello' });
    });
  }

  /** Where the shared test clock stands (the supervisor keeps it; every worker's copy follows). */
  get clockOffsetMs(): number {
    return this.#clockOffsetMs;
  }

  /** Handles what the supervisor tells this worker of `kind`; until then it replies at once with nothing done. */
  onTell<K extends FanOutKind>(kind: K, handler: TellHandler<K>): void {
    this.#handlers.set(kind, handler as (body: never) => unknown);
  }

  /** Has the supervisor tell the workers (protocol.ts TELLS_ASKER); resolves with their replies. */
  ask<K extends FanOutKind>(kind: K, body: FanOuts[K]['body']): Promise<FanOuts[K]['reply'][]> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#answers.set(id, resolve as (replies: readonly unknown[]) => void);
      send({ kmsd: 'ask', id, kind, body });
    });
  }

  /** Asks for the background-work lock `job`: true once granted; false at once when another worker holds it and `wait` is false. */
  lock(job: string, wait: boolean): Promise<boolean> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#locks.set(id, resolve);
      send({ kmsd: 'lock', id, job, wait });
    });
  }

  unlock(job: string): void {
    send({ kmsd: 'unlock', job });
  }

  listening(addresses: Addresses): void {
    send({ kmsd: 'listening', ...addresses });
  }

  #receive(m: PrimaryMessage): void {
    switch (m.kmsd) {
      case 'answer':
        this.#answers.get(m.id)?.(m.replies);
        this.#answers.delete(m.id);
        return;
      case 'locked':
        this.#locks.get(m.id)?.(m.granted);
        this.#locks.delete(m.id);
        return;
      case 'tell':
        void this.#tell(m.id, m.kind, m.body);
        return;
      case 'welcome':
        return;
    }
  }

  async #tell(id: number, kind: FanOutKind, body: unknown): Promise<void> {
    if (kind === 'clock') this.#clockOffsetMs += (body as FanOuts['clock']['body']).ms;
    const handler = this.#handlers.get(kind);
    let reply: unknown = null;
    try {
      reply = handler === undefined ? null : await handler(body as never);
    } catch (e) {
      // Handlers do not throw (a change feed's cannot); should one, the asker still gets its
      // answer, without this worker's part.
      process.emitWarning(`kmsd worker ${this.slot}: handling "${kind}" failed: ${(e as Error).message}`);
    }
    send({ kmsd: 'reply', id, body: reply ?? null });
  }
}

/** Tells the supervisor why this worker cannot start (it exits next); resolves once the message is on its way. */
export function reportStartFailure(message: string): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) resolve();
    else process.send!({ kmsd: 'start-failed', message } satisfies WorkerMessage, undefined, undefined, () => resolve());
  });
}

function send(message: WorkerMessage): void {
  // A closed channel means the supervisor is gone, and node:cluster is ending this process.
  if (process.connected) process.send!(message);
}
