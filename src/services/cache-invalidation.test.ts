import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InProcessFeed } from '../adapters/change-feed/in-process-feed.js';
import type { ChangeFeed, FeedEvent, FeedHandler } from '../ports/change-feed.js';
import { invalidateOnChanges } from './cache-invalidation.js';

// What each change of the feed drops from this node's caches.

function recordingCaches() {
  const calls: string[] = [];
  return {
    calls,
    caches: {
      keys: { invalidate: (id: string) => calls.push(`key ${id}`), clear: () => calls.push('keys cleared') },
      tokens: { forget: (id: string) => calls.push(`token ${id}`), forgetAll: () => calls.push('tokens cleared') },
    },
  };
}

/** A feed the test drives by hand. */
class ManualFeed implements ChangeFeed {
  live = true;
  handlers: FeedHandler[] = [];
  subscribe(h: FeedHandler) {
    this.handlers.push(h);
    return () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }
  emit(e: FeedEvent) {
    for (const h of this.handlers) h(e);
  }
}

describe('invalidateOnChanges', () => {
  it('drops a changed key, a changed token, and every token of a changed principal', () => {
    const feed = new InProcessFeed();
    const { calls, caches } = recordingCaches();
    invalidateOnChanges(feed, caches);
    feed.publish([
      { topic: 'key', id: 'abjk1' },
      { topic: 'token', id: 'tkn1' },
      { topic: 'principal', id: 'aje1' },
    ]);
    assert.deepEqual(calls, ['key abjk1', 'token tkn1', 'tokens cleared']);
  });

  it('empties every cache when changes may have been missed, and again when listening resumes', () => {
    const feed = new ManualFeed();
    const { calls, caches } = recordingCaches();
    invalidateOnChanges(feed, caches);
    feed.emit({ kind: 'lost', reason: 'ECONNRESET' });
    feed.emit({ kind: 'resync' });
    assert.deepEqual(calls, ['keys cleared', 'tokens cleared', 'keys cleared', 'tokens cleared']);
  });

  it('works without a token cache (--auth none), and stops on unsubscribe', () => {
    const feed = new InProcessFeed();
    const calls: string[] = [];
    const stop = invalidateOnChanges(feed, { keys: { invalidate: (id) => calls.push(id), clear: () => calls.push('clear') } });
    feed.publish([{ topic: 'token', id: 'tkn1' }, { topic: 'key', id: 'abjk1' }]);
    stop();
    feed.publish([{ topic: 'key', id: 'abjk2' }]);
    assert.deepEqual(calls, ['abjk1']);
  });
});
