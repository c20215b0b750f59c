// What changed in the store, told to every kmsd node that shares it, so each node drops what it
// cached about it (DESIGN.md §7). The store publishes: every write that commits publishes its
// changes (PostgreSQL: pg_notify inside the writing transaction, delivered on commit and only on
// commit; SQLite: in-process, after the commit). Caches subscribe.
//
// A feed can miss changes while it is disconnected. It then says so ('lost') and stays `live =
// false` until it listens again ('resync'); a cache must not trust anything it holds across that
// gap, nor cache anything during it.

/**
 * The kinds of things that change. To add one: a member here, a handler for it in
 * src/services/cache-invalidation.ts (the compiler asks for it), and a publish in every store
 * write of that kind.
 */
export const CHANGE_TOPICS = ['key', 'principal', 'token', 'binding'] as const;
export type ChangeTopic = (typeof CHANGE_TOPICS)[number];

export interface Change {
  readonly topic: ChangeTopic;
  /** The id of what changed: a key id for 'key', a principal id, a token id, a scope (`type:id`) for 'binding'. */
  readonly id: string;
}

export type FeedEvent =
  | { readonly kind: 'changed'; readonly change: Change }
  /** Changes may go unseen from now on: drop everything cached and cache nothing until 'resync'. */
  | { readonly kind: 'lost'; readonly reason: string }
  /** Listening again (or for the first time): anything cached before may be stale; drop it all. */
  | { readonly kind: 'resync' };

export type FeedHandler = (event: FeedEvent) => void;

export interface ChangeFeed {
  /** True while every change committed from now on reaches the handlers. */
  readonly live: boolean;
  /** Handlers run synchronously, in subscription order; a handler must not throw. */
  subscribe(handler: FeedHandler): () => void;
}

/** A feed that a store tells its committed changes (SQLite: in-process, or to the other workers of `--workers`). */
export interface PublishingFeed extends ChangeFeed {
  /**
   * Call only after the changes committed. This process's handlers have heard them when it
   * returns; a returned promise resolves once every other process sharing the store has too.
   */
  publish(changes: readonly Change[]): void | Promise<void>;
}
