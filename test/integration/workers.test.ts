// `kmsd serve --workers N` (issue #7): one supervisor, N worker processes sharing the REST and gRPC
// listeners. A change committed through any worker is dropped from every worker's caches before
// it is answered, so the next request on any worker sees it; background work falls due on every
// worker and is done once; the audit chain stays one valid chain; a worker that dies is replaced;
// SIGTERM stops them all. Calls are pinned to a worker through their connection (helpers/workers.ts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { readFileSync, rmSync } from 'node:fs';
import {
  b64,
  createKey,
  DAY_S,
  decryptCall,
  encrypt,
  fails,
  freshFolder,
  listVersions,
  ok,
  rotate,
  sleep,
  update,
  type EncryptResponse,
  type Operation,
  type OperationList,
} from '../helpers/api.js';
import { logLines, purgedCount } from '../helpers/logs.js';
import { bind, createPrincipal, issueToken } from '../helpers/identity.js';
import { expectStartFailure, KMSD_BIN, KmsdProcess, tempDir, type Caller } from '../helpers/kmsd-process.js';
import { sample, scrape, type Sample } from '../helpers/metrics.js';
import { RPC, viaGrpc } from '../helpers/rpc.js';
import { connectionPerWorker, PinnedConnection, workerPids } from '../helpers/workers.js';

const WORKERS = 2;
/** Three processes load kmsd at once on a machine whose two cores the other suites share. */
const READY_TIMEOUT_MS = 60_000;
const plaintext = Buffer.from('workers');
const encryptOn = (c: Caller, keyId: string) => c.call<EncryptResponse>('POST', `/kms/v1/keys/${keyId}:encrypt`, { plaintext: b64(plaintext) });
const workerCalls = (s: readonly Sample[], worker: number) => sample(s, 'kmsd_worker_requests_total', { worker: String(worker) });

/** Polls `check` until it returns something, for at most `ms`. */
async function eventually<T>(what: string, check: () => T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe(`kmsd serve --workers ${WORKERS} over SQLite`, () => {
  let kmsd: KmsdProcess;
  /** One connection held by each worker, in worker order. */
  let w: PinnedConnection[] = [];

  before(async () => {
    // A short scheduler interval: every worker's scheduler ticks while the test clock moves.
    kmsd = await KmsdProcess.start({ auth: 'iam', testClock: 'force', workers: WORKERS, args: ['--scheduler-interval-ms', '100'], readyTimeoutMs: READY_TIMEOUT_MS });
    w = await connectionPerWorker(kmsd, WORKERS);
  });
  after(async () => {
    for (const c of w) c.close();
    await kmsd?.dispose();
  });

  it('prints one ready line, once every worker listens on the addresses it names', () => {
    const ready = kmsd.stdout.split('\n').filter((l) => l.includes('"event":"ready"'));
    assert.equal(ready.length, 1);
    assert.equal(kmsd.ready.workers, WORKERS);
    const listening = logLines(kmsd.stderr).filter((l) => l.msg === 'worker listening');
    assert.deepEqual(listening.map((l) => l.worker).sort(), [1, 2]);
    for (const l of listening) assert.deepEqual([l.rest, l.grpc], [kmsd.ready.rest, kmsd.ready.grpc], 'port 0 resolved to one shared port per listener');
    assert.equal(new Set(listening.map((l) => l.pid)).size, WORKERS);
    assert.ok(!listening.some((l) => l.pid === kmsd.pid), 'the supervisor serves nothing itself');
  });

  it('new REST and gRPC connections reach every worker', async () => {
    const key = await createKey(w[0]!, { folderId: freshFolder() });
    const before = (await scrape(kmsd)).samples;
    const address = kmsd.ready.grpc as string;
    const ca = readFileSync(kmsd.ready.caFile as string);
    const calls = 8;
    for (let i = 0; i < calls; i++) {
      // A channel of its own (not grpc-js's shared subchannel pool), so a connection of its own.
      const client = new grpc.Client(address, grpc.credentials.createSsl(ca), { 'grpc.use_local_subchannel_pool': 1 });
      try {
        const res = await viaGrpc(client, RPC['Crypto.Encrypt'], { keyId: key.id, plaintext: b64(plaintext) }, `Bearer ${kmsd.token}`);
        assert.equal(res.code, 0, res.message);
      } finally {
        client.close();
      }
    }
    const after = (await scrape(kmsd)).samples;
    const served = [1, 2].map((n) => workerCalls(after, n) - workerCalls(before, n));
    assert.equal(served[0]! + served[1]!, calls);
    assert.ok(served.every((n) => n > 0), `gRPC calls per worker: ${served.join(', ')}`);
  });

  it('a rotation through one worker: the very next Encrypt on every worker uses the new primary', async () => {
    const key = await createKey(w[0]!, { folderId: freshFolder() });
    const old = await encrypt(w[1]!, key.id, plaintext);
    for (const c of w) assert.equal((await encrypt(c, key.id, plaintext)).versionId, key.primaryVersion.id, 'cached on every worker');
    for (let round = 0; round < 10; round++) {
      const rotated = await rotate(w[round % WORKERS]!, key.id);
      for (const c of w) {
        assert.equal(ok(await encryptOn(c, key.id)).versionId, rotated.primaryVersion.id, `round ${round}, worker ${c.worker}`);
        ok(await decryptCall(c, key.id, old.ciphertext));
      }
    }
  });

  it('setPrimaryVersion, deactivation and scheduled destruction through one worker hold on every worker at once', async () => {
    const [a, b] = w as [PinnedConnection, PinnedConnection];
    const key = await createKey(a, { folderId: freshFolder() });
    const second = await rotate(a, key.id);
    const sealed = await encrypt(b, key.id, plaintext);
    ok(await b.call('POST', `/kms/v1/keys/${key.id}:setPrimaryVersion`, { versionId: key.primaryVersion.id }));
    for (const c of w) assert.equal(ok(await encryptOn(c, key.id)).versionId, key.primaryVersion.id);

    await update(a, key.id, { updateMask: 'status', status: 'INACTIVE' });
    for (const c of w) {
      fails(await encryptOn(c, key.id), 400, 9, /INACTIVE/);
      fails(await decryptCall(c, key.id, sealed.ciphertext), 400, 9, /INACTIVE/);
    }
    await update(b, key.id, { updateMask: 'status', status: 'ACTIVE' });
    for (const c of w) ok(await decryptCall(c, key.id, sealed.ciphertext));

    ok(await b.call('POST', `/kms/v1/keys/${key.id}:scheduleVersionDestruction`, { versionId: second.primaryVersion.id, pendingPeriod: `${DAY_S}s` }));
    for (const c of w) fails(await decryptCall(c, key.id, sealed.ciphertext), 400, 9, /SCHEDULED_FOR_DESTRUCTION/);
    ok(await a.call('POST', `/kms/v1/keys/${key.id}:cancelVersionDestruction`, { versionId: second.primaryVersion.id }));
    for (const c of w) ok(await decryptCall(c, key.id, sealed.ciphertext));
  });

  it('a binding removed or a token revoked through one worker is refused by every worker at once', async () => {
    const [a, b] = w as [PinnedConnection, PinnedConnection];
    const key = await createKey(a, { folderId: freshFolder() });
    const app = await createPrincipal(a, 'workers-app');
    const token = await issueToken(b, app.id);
    const subject = { type: 'serviceAccount', id: app.id };
    const asApp = { authorization: `Bearer ${token.token}` };
    const encryptAsApp = (c: Caller) => c.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(plaintext) }, asApp);
    for (let round = 0; round < 3; round++) {
      await bind(w[round % WORKERS]!, { key: key.id }, 'kms.keys.encrypterDecrypter', subject);
      for (const c of w) ok(await encryptAsApp(c)); // every worker caches the token and the grant
      await bind(w[(round + 1) % WORKERS]!, { key: key.id }, 'kms.keys.encrypterDecrypter', subject, 'REMOVE');
      for (const c of w) fails(await encryptAsApp(c), 403, 7);
    }
    await bind(b, { key: key.id }, 'kms.keys.encrypterDecrypter', subject);
    for (const c of w) ok(await encryptAsApp(c));
    ok(await a.call('DELETE', `/kmsd/v1/tokens/${token.id}`));
    for (const c of w) fails(await encryptAsApp(c), 401, 16);
  });

  it('the test clock is one clock for all workers, and due background work is done once', async () => {
    const [a, b] = w as [PinnedConnection, PinnedConnection];
    const folderId = freshFolder();
    // Enough keys that a pass takes longer than the schedulers' interval: without one lock for all
    // workers, another worker's pass would run into it.
    const keys = await Promise.all(Array.from({ length: 60 }, (_, i) => createKey(w[i % WORKERS]!, { folderId, rotationPeriod: `${DAY_S}s` })));
    const doomed = await Promise.all(Array.from({ length: 20 }, (_, i) => createKey(w[i % WORKERS]!, { folderId })));
    for (const key of doomed) ok(await a.call('DELETE', `/kms/v1/keys/${key.id}`));
    const advance = async (c: Caller, seconds: number) => Date.parse(ok(await c.call<{ now: string }>('POST', '/kmsd/v1/testing/clock:advance', { duration: `${seconds}s` })).now);

    const moved = await advance(a, DAY_S + 60);
    const seenByB = await advance(b, 0);
    assert.ok(seenByB >= moved && seenByB - moved < 60_000, `worker ${b.worker} has the time worker ${a.worker} moved to`);
    for (const key of keys) assert.equal((await listVersions(b, key.id)).length, 2, `key ${key.id}: exactly one automatic rotation`);
    for (const key of keys.slice(0, 6)) {
      const versions = await listVersions(b, key.id);
      const ops = (ok(await a.call<OperationList>('GET', `/kms/v1/keys/${key.id}/operations?pageSize=1000`)).operations ?? []) as Operation<unknown>[];
      const rotations = ops.filter((op) => op.metadata['@type'].endsWith('RotateSymmetricKeyMetadata'));
      assert.equal(rotations.length, 1, `key ${key.id}: exactly one rotate operation`);
      const primary = versions.find((v) => v.primary)!.id;
      for (const c of w) assert.equal((await encrypt(c, key.id, plaintext)).versionId, primary, 'every worker encrypts with the new primary');
    }
    await advance(b, 60); // nothing new is due
    for (const key of keys) assert.equal((await listVersions(a, key.id)).length, 2);

    await advance(b, 3 * DAY_S);
    for (const key of doomed) for (const c of w) fails(await c.call('GET', `/kms/v1/keys/${key.id}`), 404, 5);
    await sleep(300); // logs are written asynchronously
    // (A rotation found done by another pass is skipped as no longer due; a purge is counted.)
    assert.equal(purgedCount(kmsd.stderr), doomed.length, 'each deleted key purged once, by one worker');
    const failed = logLines(kmsd.stderr).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('background key work failed'));
    assert.deepEqual(failed, [], 'no pass ran into another');
  });

  it('/metrics sums the workers, and shows how many calls each one answered', async () => {
    const [a, b] = w as [PinnedConnection, PinnedConnection];
    const key = await createKey(a, { folderId: freshFolder() });
    const before = (await scrape(kmsd)).samples;
    for (let i = 0; i < 3; i++) ok(await encryptOn(a, key.id));
    for (let i = 0; i < 5; i++) ok(await encryptOn(b, key.id));
    const after = (await scrape(kmsd)).samples;
    const encrypts = (s: readonly Sample[]) =>
      sample(s, 'kmsd_requests_total', { transport: 'rest', method: 'yandex.cloud.kms.v1.SymmetricCryptoService/Encrypt', code: 'OK' });
    assert.equal(encrypts(after) - encrypts(before), 8, 'one series over all workers');
    assert.equal(workerCalls(after, a.worker) - workerCalls(before, a.worker), 3);
    assert.equal(workerCalls(after, b.worker) - workerCalls(before, b.worker), 5);
  });

  it('the audit log stays one valid chain under concurrent calls through every worker', async () => {
    const key = await createKey(w[0]!, { folderId: freshFolder() });
    const lanes = await Promise.all(Array.from({ length: 16 }, () => PinnedConnection.open(kmsd)));
    try {
      assert.deepEqual(new Set(lanes.map((l) => l.worker)), new Set([1, 2]), 'the lanes reach every worker');
      await Promise.all(
        lanes.map(async (lane, i) => {
          for (let n = 0; n < 25; n++) {
            if (n % 10 === 0) await rotate(lane, key.id);
            else if (n % 10 === 5) await createKey(lane, { folderId: freshFolder() });
            else ok(await encryptOn(lane, key.id));
          }
          return i;
        }),
      );
    } finally {
      for (const l of lanes) l.close();
    }
    const r = spawnSync(process.execPath, [KMSD_BIN, 'audit', 'verify', '--data-dir', kmsd.dataDir], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /OK/);
  });

  it('a worker that dies is replaced, and the others serve meanwhile', async () => {
    const [a, b] = w as [PinnedConnection, PinnedConnection];
    const key = await createKey(a, { folderId: freshFolder() });
    const victim = workerPids(kmsd.stderr).get(a.worker)!;
    process.kill(victim, 'SIGKILL');
    // The survivor writes without waiting for the dead worker, and serves what it wrote.
    const rotated = await rotate(b, key.id);
    assert.equal(ok(await encryptOn(b, key.id)).versionId, rotated.primaryVersion.id);
    await eventually('the supervisor to log the death', () =>
      logLines(kmsd.stderr).find((l) => l.msg === 'a worker exited; starting another in its place' && l.pid === victim && l.signal === 'SIGKILL'),
    );
    const replacement = await eventually('a new worker in its slot', () => {
      const pid = workerPids(kmsd.stderr).get(a.worker);
      return pid !== victim ? pid : undefined;
    });
    assert.notEqual(replacement, victim);
    a.close();
    w = await connectionPerWorker(kmsd, WORKERS);
    for (const c of w) assert.equal(ok(await encryptOn(c, key.id)).versionId, rotated.primaryVersion.id);
    const again = await rotate(w[1]!, key.id);
    for (const c of w) assert.equal(ok(await encryptOn(c, key.id)).versionId, again.primaryVersion.id, `worker ${c.worker} after the restart`);
  });

  it('SIGTERM drains and stops every worker, and kmsd exits 0', async () => {
    const pids = [...workerPids(kmsd.stderr).values()];
    for (const c of w) c.close();
    await kmsd.stop();
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} is gone`);
  });
});

describe('kmsd serve --workers 2 when a worker cannot start', () => {
  let busy: Server;
  let port: number;
  before(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    port = (busy.address() as { port: number }).port;
  });
  after(() => busy.close());

  it('exits 1 with the worker’s own message instead of waiting', async () => {
    const dir = tempDir();
    try {
      const r = await expectStartFailure({ dataDir: `${dir}/data`, auth: 'none', workers: 2, args: ['--rest-addr', `127.0.0.1:${port}`] }, READY_TIMEOUT_MS);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`kmsd: .*(EADDRINUSE|address already in use).*${port}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
