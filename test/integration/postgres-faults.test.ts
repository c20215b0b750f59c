// Faults of a multi-node deployment over PostgreSQL:
//  - the database goes away under load and comes back: every request meanwhile fails with
//    UNAVAILABLE (503, code 14), none with a wrong answer or INTERNAL; nothing is half-written; the
//    nodes serve again by themselves once it is back;
//  - a node is killed (SIGKILL) in the middle of a burst of rotations: the others carry on and the
//    key stays consistent (its versions, primary and operations agree).
//
// The database is taken away by a TCP proxy between the nodes and the shared PostgreSQL (see
// test/helpers/tcp-proxy.ts), not by stopping the server, which other tests and other people use:
// cutting the proxy drops every connection and refuses new ones, which is what the nodes see of a
// server that stops or a network that fails. The server-side path (a backend terminated with
// 57P01) is covered in postgres-store.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { b64, createKey, decrypt, freshFolder, listVersions, ok, rotate, sleep, type EncryptResponse, type Operation, type OperationList } from '../helpers/api.js';
import { disposeAll, newRootKey, startNode, startNodes } from '../helpers/cluster.js';
import type { KmsdProcess, KmsdResponse } from '../helpers/kmsd-process.js';
import { viaAddress, withTestPostgres } from '../helpers/postgres.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

interface Outcome {
  readonly op: 'encrypt' | 'rotate';
  readonly node: number;
  readonly started: number;
  readonly ended: number;
  readonly status: number;
  readonly code?: number;
  readonly message?: string;
  /** encrypt: the version used and the ciphertext; rotate: the new primary. */
  readonly versionId?: string;
  readonly ciphertext?: string;
}

async function timed(op: Outcome['op'], node: number, call: () => Promise<KmsdResponse>): Promise<Outcome> {
  const started = Date.now();
  let res: KmsdResponse;
  try {
    res = await call();
  } catch (e) {
    // The node itself did not answer (killed): not an answer of kmsd.
    return { op, node, started, ended: Date.now(), status: 0, message: e instanceof Error ? e.message : String(e) };
  }
  const ended = Date.now();
  const body = res.json as { code?: number; message?: string; versionId?: string; ciphertext?: string; metadata?: { newPrimaryVersionId?: string } } | undefined;
  return {
    op,
    node,
    started,
    ended,
    status: res.status,
    ...(body?.code === undefined ? {} : { code: body.code }),
    ...(body?.message === undefined ? {} : { message: body.message }),
    ...(op === 'encrypt' && res.status === 200 ? { versionId: body?.versionId, ciphertext: body?.ciphertext } : {}),
    ...(op === 'rotate' && res.status === 200 ? { versionId: body?.metadata?.newPrimaryVersionId } : {}),
  };
}

const PLAINTEXT = Buffer.from('under load');

/**
 * Checks that the key's stored history is whole: every version but the first was made by exactly
 * one rotate operation, the primary is the newest version, and every rotation a client was told
 * succeeded is among them.
 */
async function assertConsistent(node: KmsdProcess, keyId: string, firstVersionId: string, outcomes: readonly Outcome[]): Promise<string[]> {
  const versions = await listVersions(node, keyId);
  const ops = ok(await node.call<OperationList>('GET', `/kms/v1/keys/${keyId}/operations?pageSize=1000`)).operations ?? [];
  const rotations = (ops as Operation<unknown>[]).filter((op) => op.metadata['@type'].endsWith('RotateSymmetricKeyMetadata'));
  const made = rotations.map((op) => op.metadata.newPrimaryVersionId!);
  assert.equal(new Set(made).size, made.length, 'no version is named by two rotate operations');
  assert.deepEqual(
    versions.map((v) => v.id).sort(),
    [firstVersionId, ...made].sort(),
    'the versions are exactly the first one and one per rotate operation: nothing half-written',
  );
  const primary = versions.filter((v) => v.primary);
  assert.equal(primary.length, 1);
  assert.equal(primary[0]!.id, versions.at(-1)!.id, 'the primary is the newest version');
  for (const o of outcomes) if (o.op === 'rotate' && o.status === 200) assert.ok(made.includes(o.versionId!), `acknowledged rotation to ${o.versionId} is stored`);
  return versions.map((v) => v.id);
}

/** No encrypt started after a rotation was acknowledged may use a version older than that rotation's. */
function assertNoStaleEncrypt(order: readonly string[], outcomes: readonly Outcome[]): void {
  const rank = (versionId: string) => {
    const i = order.indexOf(versionId);
    assert.ok(i >= 0, `version ${versionId} is one of the key's`);
    return i;
  };
  const acknowledged = outcomes.filter((o) => o.op === 'rotate' && o.status === 200);
  for (const e of outcomes) {
    if (e.op !== 'encrypt' || e.status !== 200) continue;
    for (const r of acknowledged) {
      if (e.started > r.ended) assert.ok(rank(e.versionId!) >= rank(r.versionId!), `an encrypt started after the rotation to ${r.versionId} used the older ${e.versionId}`);
    }
  }
}

await withTestPostgres('kmsd nodes when PostgreSQL or a node fails', (db) => {
  describe('PostgreSQL goes away under load and comes back', () => {
    let proxy: TcpProxy;
    let nodes: KmsdProcess[] = [];
    let schema: string;
    before(async () => {
      const fresh = await db.freshSchema();
      schema = fresh.schema;
      const url = fresh.url;
      const server = new URL(db.url);
      proxy = await TcpProxy.start({ host: server.hostname, port: Number(server.port || 5432) });
      nodes = await startNodes(2, viaAddress(url, '127.0.0.1', proxy.port), { rootKey: newRootKey(), auth: 'iam' });
    });
    after(async () => {
      await proxy?.restore();
      await disposeAll(nodes);
      await proxy?.close();
    });

    it('requests fail with UNAVAILABLE meanwhile, nothing is half-written, and service resumes by itself', async () => {
      const [a, b] = nodes as [KmsdProcess, KmsdProcess];
      const key = await createKey(a, { folderId: freshFolder() });
      const outcomes: Outcome[] = [];
      let stop = false;
      const encryptLoop = async (node: number) => {
        const n = nodes[node]!;
        while (!stop) {
          outcomes.push(await timed('encrypt', node, () => n.call<EncryptResponse>('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(PLAINTEXT) })));
        }
      };
      const rotateLoop = async () => {
        while (!stop) {
          outcomes.push(await timed('rotate', 0, () => a.call('POST', `/kms/v1/keys/${key.id}:rotate`)));
          await sleep(50);
        }
      };
      const load = Promise.all([encryptLoop(0), encryptLoop(1), encryptLoop(0), encryptLoop(1), rotateLoop()]);

      await sleep(1000);
      const cutAt = Date.now();
      await proxy.cut();
      await sleep(2500);
      const restoreAt = Date.now();
      await proxy.restore();
      // Back by itself: wait for both nodes to answer an encrypt again.
      let recoveredAt = 0;
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(50)) {
        const after = outcomes.filter((o) => o.started > restoreAt && o.status === 200 && o.op === 'encrypt');
        if (new Set(after.map((o) => o.node)).size === 2) {
          recoveredAt = Math.max(...after.map((o) => o.ended));
          break;
        }
      }
      await sleep(1000);
      stop = true;
      await load;
      assert.ok(recoveredAt > 0, 'both nodes serve again within 20 s of the database coming back');

      const statuses = new Map<number, number>();
      for (const o of outcomes) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1);
      const report = JSON.stringify(Object.fromEntries(statuses));
      for (const o of outcomes) {
        assert.ok(o.status === 200 || o.status === 503, `only answers or UNAVAILABLE, got ${o.status} ${o.message ?? ''} (all: ${report})`);
        if (o.status === 503) {
          assert.equal(o.code, 14);
          // The database itself, or the audit log (a call is not answered without its record).
          assert.match(o.message ?? '', /database|audit log/);
        }
      }
      // Well inside the outage (the nodes have noticed it): nothing is served, from cache or otherwise.
      const during = outcomes.filter((o) => o.started > cutAt + 1000 && o.ended < restoreAt);
      assert.ok(during.length > 20, `load went on during the outage (${during.length} requests)`);
      assert.deepEqual(
        [...new Set(during.map((o) => o.status))],
        [503],
        'every request during the outage failed with UNAVAILABLE',
      );
      const later = outcomes.filter((o) => o.started > recoveredAt + 500);
      assert.ok(later.length > 0 && later.every((o) => o.status === 200), 'everything succeeds once recovered');

      const order = await assertConsistent(b, key.id, key.primaryVersion.id, outcomes);
      assertNoStaleEncrypt(order, outcomes);
      // Every ciphertext a client was given decrypts, on either node.
      const sealed = outcomes.filter((o) => o.op === 'encrypt' && o.status === 200);
      for (const [i, o] of sealed.entries()) {
        const plain = await decrypt(nodes[i % 2]!, key.id, o.ciphertext!);
        assert.equal(plain.plaintext, b64(PLAINTEXT));
      }
      const rows = await db.query<{ n: number }>(schema, 'SELECT count(*)::int AS n FROM key_versions WHERE key_id = $1', [key.id]);
      assert.equal(rows[0]?.n, order.length, 'the database holds what the API lists');
      process.stderr.write(`# outage: ${report} over ${outcomes.length} requests; recovered ${recoveredAt - restoreAt} ms after the database came back\n`);
    });
  });

  describe('a node killed in the middle of a burst of rotations', () => {
    let nodes: KmsdProcess[] = [];
    let url: string;
    const rootKey = newRootKey();
    before(async () => {
      ({ url } = await db.freshSchema());
      nodes = await startNodes(3, url, { rootKey, auth: 'iam' });
    });
    after(() => disposeAll(nodes));

    it('the other nodes carry on, and the key is consistent', async () => {
      const [a, b, c] = nodes as [KmsdProcess, KmsdProcess, KmsdProcess];
      const key = await createKey(b, { folderId: freshFolder() });
      const outcomes: Outcome[] = [];
      // 24 rotations in flight on A, 8 on B; A is killed as soon as one of its rotations is done,
      // with the others at every stage between reading the key and answering.
      let firstOnA!: () => void;
      const oneDoneOnA = new Promise<void>((r) => (firstOnA = r));
      const record = (o: Outcome) => {
        outcomes.push(o);
        if (o.node === 0 && o.status === 200) firstOnA();
      };
      const burst = [
        ...Array.from({ length: 24 }, () => timed('rotate', 0, () => a.call('POST', `/kms/v1/keys/${key.id}:rotate`)).then(record)),
        ...Array.from({ length: 8 }, () => timed('rotate', 1, () => b.call('POST', `/kms/v1/keys/${key.id}:rotate`)).then(record)),
      ];
      await Promise.race([oneDoneOnA, sleep(5000)]);
      await a.kill();
      await Promise.all(burst);
      assert.ok(outcomes.some((o) => o.node === 0 && o.status === 200), 'A finished a rotation before it died');

      const answered = outcomes.filter((o) => o.status !== 0);
      for (const o of answered) assert.ok(o.status === 200 || o.status === 409, `a rotation either succeeds or loses a race (ABORTED): ${o.status} ${o.message ?? ''}`);
      assert.ok(outcomes.some((o) => o.node === 0 && o.status === 0), 'some of A’s calls were cut off by its death');
      const tally = (node: number) => JSON.stringify(Object.fromEntries([0, 200, 409].map((st) => [st, outcomes.filter((o) => o.node === node && o.status === st).length])));
      process.stderr.write(`# rotations by status (0 = no answer, the node died): on A ${tally(0)}, on B ${tally(1)}\n`);

      // The others carry on: B and C rotate and encrypt with the new primary at once.
      const rotated = await rotate(c, key.id);
      outcomes.push({ op: 'rotate', node: 2, started: 0, ended: Date.now(), status: 200, versionId: rotated.primaryVersion.id });
      for (const n of [b, c]) {
        const res = ok(await n.call<EncryptResponse>('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(PLAINTEXT) }));
        assert.equal(res.versionId, rotated.primaryVersion.id);
      }
      await assertConsistent(b, key.id, key.primaryVersion.id, outcomes);

      // A comes back on the same data directory and agrees.
      const back = await startNode(url, { rootKey, auth: 'iam', poolSize: 3 });
      try {
        assert.equal((await listVersions(back, key.id)).find((v) => v.primary)?.id, rotated.primaryVersion.id);
      } finally {
        await back.dispose();
      }
    });
  });
});
