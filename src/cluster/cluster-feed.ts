import { InProcessFeed } from '../adapters/change-feed/in-process-feed.js';
import type { Change } from '../ports/change-feed.js';
import type { WorkerLink } from './worker-link.js';

// The change feed of a SQLite store shared by the workers of `kmsd serve --workers N`: what one
// worker commits, every worker's caches drop before the writer answers (DESIGN.md §7), as the
// PostgreSQL feed's confirmations do between nodes. The writer's own caches hear it at once; the
// supervisor relays it to every other worker, each drops it and replies, and only then does the
// writer's publish resolve (or after the relay's timeout, which the supervisor logs).
//
// It is live from the start: it is made after the supervisor welcomed this worker, so no change
// committed from then on bypasses it, and the caches were empty until then. Losing the supervisor
// ends the worker (worker-link.ts), so it is never live while deaf.

export class ClusterFeed extends InProcessFeed {
  readonly #link: WorkerLink;

  constructor(link: WorkerLink) {
    super();
    this.#link = link;
    link.onTell('changes', (changes) => {
      super.publish(changes);
      return null;
    });
  }

  override async publish(changes: readonly Change[]): Promise<void> {
    super.publish(changes);
    await this.#link.ask('changes', changes);
  }
}
