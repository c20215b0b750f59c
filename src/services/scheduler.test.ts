import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { BackgroundWorkLock } from '../ports/store.js';
import { DUE_WORK_JOB, scheduler } from './scheduler.js';

// The scheduler runs its passes under the store's lock: a periodic tick skips a pass another node
// is running, runNow (the test clock) waits for it and then runs its own.

const logger = pino({ level: 'silent' });
const idle = { rotated: 0, destroyed: 0, purged: 0, errors: [] };

/** A lock held by "another node" while `held` is true; records how it was asked. */
function fakeLock() {
  const asked: { job: string; wait: boolean }[] = [];
  const state = { held: false, release: undefined as undefined | (() => void) };
  const lock: BackgroundWorkLock = {
    async exclusively(job, options, work) {
      asked.push({ job, wait: options.wait });
      if (state.held) {
        if (!options.wait) return { ran: false };
        await new Promise<void>((r) => (state.release = r));
      }
      return { ran: true, value: await work() };
    },
  };
  return { lock, asked, state };
}

describe('scheduler', () => {
  it('a tick skips while another node runs the pass; runNow waits for it, then runs', async () => {
    const { lock, asked, state } = fakeLock();
    let passes = 0;
    const s = scheduler({ keys: { runDueWork: async () => (passes++, idle) }, lock, logger, intervalMs: 20 });
    state.held = true;
    s.start();
    await new Promise((r) => setTimeout(r, 70));
    assert.equal(passes, 0, 'no pass while another node holds the job');
    assert.ok(asked.length >= 2 && asked.every((a) => a.job === DUE_WORK_JOB && !a.wait));
    await s.stop();

    const now = s.runNow();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(passes, 0, 'runNow waits for the other node');
    state.held = false;
    state.release?.();
    await now;
    assert.equal(passes, 1);
    assert.deepEqual(asked.at(-1), { job: DUE_WORK_JOB, wait: true });
  });
});
