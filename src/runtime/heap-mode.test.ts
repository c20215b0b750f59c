import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextHeapMode, SIZE_ABOVE_KEYS, SPEED_BELOW_KEYS } from './heap-mode.js';

describe('heap mode', () => {
  it('runs for speed with few cached keys and for size with many, with a gap between so it does not flap', () => {
    assert.equal(nextHeapMode('speed', 0), 'speed');
    assert.equal(nextHeapMode('speed', SIZE_ABOVE_KEYS), 'speed');
    assert.equal(nextHeapMode('speed', SIZE_ABOVE_KEYS + 1), 'size');
    assert.equal(nextHeapMode('size', SIZE_ABOVE_KEYS), 'size');
    assert.equal(nextHeapMode('size', SPEED_BELOW_KEYS), 'size', 'in the gap it stays as it is');
    assert.equal(nextHeapMode('size', SPEED_BELOW_KEYS - 1), 'speed');
    assert.ok(SPEED_BELOW_KEYS < SIZE_ABOVE_KEYS);
  });
});
