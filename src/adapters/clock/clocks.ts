import type { Clock } from '../../ports/clock.js';

export const systemClock: Clock = { now: () => Date.now() };

/**
 * The wall clock plus an offset that only grows: `--test-clock` lets black-box tests move kmsd's
 * time forward so that rotations and destructions fall due at once.
 */
export class AdjustableClock implements Clock {
  #offsetMs = 0;

  now(): number {
    return Date.now() + this.#offsetMs;
  }

  advance(ms: number): number {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('the clock only moves forward');
    this.#offsetMs += ms;
    return this.now();
  }
}
