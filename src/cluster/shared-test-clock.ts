import type { WorkerLink } from './worker-link.js';

// `--test-clock` with `--workers N`: one clock for all workers. The supervisor keeps how far it
// was moved; each worker reads its copy (worker-link.ts), and moving it tells every worker before
// the move returns, so whichever worker serves the next request has the new time. A worker that
// starts later is welcomed with the offset.

export class SharedTestClock {
  readonly #link: WorkerLink;

  constructor(link: WorkerLink) {
    this.#link = link;
  }

  now(): number {
    return Date.now() + this.#link.clockOffsetMs;
  }

  async advance(ms: number): Promise<number> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('the clock only moves forward');
    await this.#link.ask('clock', { ms });
    return this.now();
  }
}
