import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PooledRandom } from './random.js';

describe('PooledRandom', () => {
  it('returns exactly the bytes asked for, every draw different, across many block refills', () => {
    const random = new PooledRandom();
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const n = [12, 16, 32, 64, 17][i % 5]!;
      const b = random.bytes(n);
      assert.equal(b.length, n);
      const hex = b.toString('hex');
      assert.ok(!seen.has(hex), `draw ${i} repeated an earlier one`);
      seen.add(hex);
    }
  });

  it('hands out buffers of their own: wiping one leaves the others and the next draws intact', () => {
    const random = new PooledRandom();
    const a = random.bytes(32);
    const b = random.bytes(32);
    const bCopy = Buffer.from(b);
    assert.equal(a.byteOffset, 0);
    assert.equal(a.buffer.byteLength, 32, 'a draw must not share memory with the pool or another draw');
    a.fill(0);
    assert.deepEqual(b, bCopy);
    assert.notDeepEqual(random.bytes(32), Buffer.alloc(32));
  });

  it('serves requests larger than the pooled size directly, and empty requests', () => {
    const random = new PooledRandom();
    assert.equal(random.bytes(0).length, 0);
    const big = random.bytes(10_000);
    assert.equal(big.length, 10_000);
    // 10 000 random bytes hold every byte value with overwhelming probability; zeros would not.
    assert.ok(new Set(big).size > 200);
  });

  it('draws look uniform: every byte value turns up about equally often', () => {
    const random = new PooledRandom();
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 4096; i++) for (const v of random.bytes(64)) counts[v]!++;
    // 262 144 bytes: 1 024 expected per value; ±30 % is far outside chance (σ ≈ 32).
    for (const c of counts) assert.ok(c > 716 && c < 1332, `a byte value appeared ${c} times`);
  });
});
