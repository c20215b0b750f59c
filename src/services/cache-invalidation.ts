import type { ChangeFeed, ChangeTopic } from '../ports/change-feed.js';

// Keeps this node's caches consistent with changes made through any node (DESIGN.md §7): the
// store's change feed names what changed, and this drops it from the cache that holds it. The
// caches also ask the feed whether it is live before they use an entry, so while it may be missing
// changes they read the store instead.

export interface InvalidatedCaches {
  readonly keys: { invalidate(keyId: string): void; clear(): void };
  /** Grants cached per caller, from access bindings. */
  readonly authorizer?: { invalidate(): void };
  /** Absent with --auth none (no tokens). */
  readonly tokens?: { forget(tokenId: string): void; forgetAll(): void };
}

/** What each topic's change drops. A new topic needs an entry here: the type asks for it. */
const ON_CHANGE: { readonly [T in ChangeTopic]: (caches: InvalidatedCaches, id: string) => void } = {
  key: (c, id) => c.keys.invalidate(id),
  token: (c, id) => {
    c.tokens?.forget(id);
    c.authorizer?.invalidate();
  },
  // The token cache holds each token's principal; which tokens belong to it is not tracked.
  principal: (c) => {
    c.tokens?.forgetAll();
    c.authorizer?.invalidate();
  },
  // Grants are cached per caller, not per scope: any binding change drops them all.
  binding: (c) => c.authorizer?.invalidate(),
};

function clearAll(caches: InvalidatedCaches): void {
  caches.keys.clear();
  caches.tokens?.forgetAll();
  caches.authorizer?.invalidate();
}

/** Subscribes `caches` to `feed`; returns the unsubscribe. */
export function invalidateOnChanges(feed: ChangeFeed, caches: InvalidatedCaches): () => void {
  return feed.subscribe((event) => {
    switch (event.kind) {
      case 'changed':
        ON_CHANGE[event.change.topic](caches, event.change.id);
        return;
      case 'lost':
      case 'resync':
        // Lost: what is cached may be overtaken unseen from now on. Resync: it may have been.
        clearAll(caches);
        return;
    }
  });
}
