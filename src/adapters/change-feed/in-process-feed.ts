import type { Change, FeedEvent, FeedHandler, PublishingFeed } from '../../ports/change-feed.js';

// The change feed of a store that only one process uses (SQLite): the store publishes each change
// after its commit, and the handlers hear it before the write returns. It never misses a change,
// so it is always live.

export class InProcessFeed implements PublishingFeed {
  readonly live = true;
  readonly #handlers = new Set<FeedHandler>();

  subscribe(handler: FeedHandler): () => void {
    // A wrapper, so subscribing the same function twice gives two independent subscriptions.
    const h: FeedHandler = (e) => handler(e);
    this.#handlers.add(h);
    return () => {
      this.#handlers.delete(h);
    };
  }

  /** Tells every handler; call it only after the change has committed. */
  publish(changes: readonly Change[]): void {
    for (const change of changes) {
      const event: FeedEvent = { kind: 'changed', change };
      for (const h of [...this.#handlers]) h(event);
    }
  }
}
