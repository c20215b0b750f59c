import type { Logger } from 'pino';
import type { BackgroundWorkLock } from '../ports/store.js';
import type { KeyService } from './keys/key-service.js';

// Runs the key service's due work (automatic rotation, destruction at destroy_at, purging deleted
// keys) every interval, one pass at a time. runNow() lets the test clock finish everything that
// fell due before it answers.
//
// Every node runs a scheduler; the store's lock lets one node's pass run at a time. A tick that
// finds another node's pass running skips (that node does the work); runNow waits for it and then
// runs its own pass, so that what fell due by this node's clock is done when it returns.

/** The name of the background work under the store's lock. */
export const DUE_WORK_JOB = 'key-due-work';

const BATCH = 100;

export interface Scheduler {
  start(): void;
  stop(): Promise<void>;
  /** Runs passes until nothing more is due. */
  runNow(): Promise<void>;
}

export function scheduler(d: { keys: Pick<KeyService, 'runDueWork'>; lock: BackgroundWorkLock; logger: Logger; intervalMs: number }): Scheduler {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  async function drain(): Promise<void> {
    for (let pass = 0; pass < 1000; pass++) {
      const r = await d.keys.runDueWork(BATCH);
      for (const err of r.errors) d.logger.error({ err }, 'background key work failed; will retry');
      if (r.rotated || r.destroyed || r.purged) d.logger.info({ rotated: r.rotated, destroyed: r.destroyed, purged: r.purged }, 'background key work');
      if (r.rotated < BATCH && r.destroyed < BATCH && r.purged < BATCH) return;
    }
  }

  /** Serialises passes: a tick never overlaps another tick or a runNow, here or on another node. */
  function enqueue(wait: boolean): Promise<void> {
    const pass = async () => {
      await d.lock.exclusively(DUE_WORK_JOB, { wait }, drain);
    };
    running = running.then(pass, pass);
    return running;
  }

  return {
    start() {
      timer = setInterval(() => {
        enqueue(false).catch((err: unknown) => d.logger.error({ err }, 'background key work failed'));
      }, d.intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running.catch(() => undefined);
    },
    runNow: () => enqueue(true),
  };
}
