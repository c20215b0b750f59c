import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readiness } from './health.js';

describe('Readiness', () => {
  it('is ready only when every check passes and the listeners are up', async () => {
    const r = new Readiness([{ name: 'store', run: async () => undefined }]);
    assert.deepEqual(await r.probe(), { ready: false, checks: { store: 'ok', listeners: 'not listening' } });
    r.setListening(true);
    assert.deepEqual(await r.probe(), { ready: true, checks: { store: 'ok', listeners: 'ok' } });
    r.setListening(false);
    assert.equal((await r.probe()).ready, false, 'draining: not ready');
  });

  it('a failing check fails the probe with a fixed word, never its message', async () => {
    const r = new Readiness([
      { name: 'store', run: async () => Promise.reject(new Error('password=hunter2 connection refused')) },
      { name: 'rootKey', run: async () => undefined },
    ]);
    r.setListening(true);
    const report = await r.probe();
    assert.deepEqual(report, { ready: false, checks: { store: 'failed', rootKey: 'ok', listeners: 'ok' } });
    assert.ok(!JSON.stringify(report).includes('hunter2'));
  });

  it('a check that hangs fails after the timeout instead of hanging the probe', async () => {
    const r = new Readiness([{ name: 'store', run: () => new Promise<void>(() => undefined) }], undefined, 50);
    r.setListening(true);
    const started = Date.now();
    assert.deepEqual((await r.probe()).checks, { store: 'failed', listeners: 'ok' });
    assert.ok(Date.now() - started < 2_000);
  });

  it('concurrent probes share one run of the checks', async () => {
    let runs = 0;
    const r = new Readiness([{ name: 'store', run: async () => void runs++ }]);
    await Promise.all([r.probe(), r.probe(), r.probe()]);
    assert.equal(runs, 1);
    await r.probe();
    assert.equal(runs, 2, 'a later probe runs the checks again');
  });
});
