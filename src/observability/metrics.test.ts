import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code } from '../errors/kms-error.js';
import { codeName, Metrics, timedStore } from './metrics.js';

describe('metrics', () => {
  it('names codes as gRPC does', () => {
    assert.equal(codeName(0), 'OK');
    assert.equal(codeName(Code.InvalidArgument), 'INVALID_ARGUMENT');
    assert.equal(codeName(Code.Unauthenticated), 'UNAUTHENTICATED');
    assert.equal(codeName(Code.DataLoss), 'DATA_LOSS');
  });

  it('times store calls by operation, failures counted, other properties untouched', async () => {
    const m = new Metrics();
    const store = {
      changes: { live: true },
      async getKey(id: string) {
        return id === 'boom' ? Promise.reject(new Error('x')) : { id };
      },
      *walk() {
        yield 1;
      },
    };
    const timed = timedStore(store, m);
    assert.equal(timed.changes, store.changes);
    assert.deepEqual(await timed.getKey('a'), { id: 'a' });
    await assert.rejects(timed.getKey('boom'));
    assert.deepEqual([...timed.walk()], [1]);
    assert.equal(timed.getKey, timed.getKey, 'one wrapper per method');
    const text = (await m.scrape()).body;
    assert.match(text, /kmsd_store_call_duration_seconds_count\{operation="getKey"\} 2/);
    assert.match(text, /kmsd_store_call_failures_total\{operation="getKey"\} 1/);
    assert.match(text, /kmsd_store_call_duration_seconds_count\{operation="walk"\} 1/);
  });

  it('counts cache lookups from the totals the cache keeps, across scrapes', async () => {
    const m = new Metrics();
    const stats = { keyHits: 3, keyMisses: 1, versionHits: 2, versionMisses: 1, unwraps: 1, size: 1 };
    m.watchKeyCache(() => stats);
    const first = (await m.scrape()).body;
    assert.match(first, /kmsd_key_cache_lookups_total\{kind="key",result="hit"\} 3/);
    assert.match(first, /kmsd_key_cache_unwraps_total 1/);
    stats.keyHits = 10;
    stats.unwraps = 4;
    const text = (await m.scrape()).body;
    assert.match(text, /kmsd_key_cache_lookups_total\{kind="key",result="hit"\} 10/);
    assert.match(text, /kmsd_key_cache_lookups_total\{kind="version",result="miss"\} 1/);
    assert.match(text, /kmsd_key_cache_unwraps_total 4/);
  });
});
