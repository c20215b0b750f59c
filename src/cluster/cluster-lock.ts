import type { BackgroundWorkLock } from '../ports/store.js';
import type { WorkerLink } from './worker-link.js';

// Background work (the scheduler's passes) exclusive across the workers of `kmsd serve --workers
// N` over SQLite: the supervisor holds the locks, grants each job to one worker at a time, queues
// those that wait, and releases a lock the moment its holder dies, so no lease has to expire and
// no database row is left held. (Over PostgreSQL the store's advisory locks do it, across nodes.)

export function clusterLock(link: WorkerLink): BackgroundWorkLock {
  return {
    async exclusively(job, options, work) {
      if (!(await link.lock(job, options.wait))) return { ran: false };
      try {
        return { ran: true, value: await work() };
      } finally {
        link.unlock(job);
      }
    },
  };
}
