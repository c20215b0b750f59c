// Identity and access end to end (issue 4): key-level and folder-level bindings, the system
// subjects, revoked / expired / orphaned tokens, the Api-Key scheme, no existence leak to callers
// without access, the admin API's own permissions, and the limit on failed authentications.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { JsonObject } from '@bufbuild/protobuf';
import { b64, createKey, encrypt, fails, freshFolder, ok, type KeyList } from '../helpers/api.js';
import { bind, createPrincipal, issueToken, newCaller } from '../helpers/identity.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';
import { RPC, viaGrpc, viaRest, type RpcName } from '../helpers/rpc.js';

const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;

describe('access bindings and credentials', () => {
  let kmsd: KmsdProcess;
  let client: grpc.Client;

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam', testClock: 'force' });
    const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
    client = new grpc.Client(ready.grpc, grpc.credentials.createSsl(readFileSync(ready.caFile)));
  });
  after(async () => {
    client?.close();
    await kmsd?.dispose();
  });

  const as = (authorization: string | undefined) => (method: string, path: string, body?: unknown) => kmsd.call<JsonObject>(method, path, body, { authorization: authorization ?? '' });

  it('a role on one key works on that key only; List shows the caller only the keys it holds a role on', async () => {
    const folder = freshFolder();
    const mine = await createKey(kmsd, { folderId: folder, defaultAlgorithm: 'AES_256' });
    const other = await createKey(kmsd, { folderId: folder, defaultAlgorithm: 'AES_256' });
    const app = await newCaller(kmsd, 'key-scoped');
    await bind(kmsd, { key: mine.id }, 'kms.keys.encrypter', { type: 'serviceAccount', id: app.principal.id });
    const call = as(app.authorization);

    ok(await call('POST', `/kms/v1/keys/${mine.id}:encrypt`, { plaintext: b64('x') }));
    fails(await call('POST', `/kms/v1/keys/${other.id}:encrypt`, { plaintext: b64('x') }), 403, PERMISSION_DENIED);
    fails(await call('POST', `/kms/v1/keys/${mine.id}:decrypt`, { ciphertext: (await encrypt(kmsd, mine.id, 'y')).ciphertext }), 403, PERMISSION_DENIED);
    fails(await call('POST', '/kms/v1/keys', { folderId: folder, defaultAlgorithm: 'AES_256' }), 403, PERMISSION_DENIED);
    const listed = ok(await call('GET', `/kms/v1/keys?folderId=${folder}`)) as unknown as KeyList;
    assert.deepEqual((listed.keys ?? []).map((k) => k.id), [mine.id]);
    // Another folder: nothing of it is visible to this caller.
    assert.deepEqual(ok(await call('GET', `/kms/v1/keys?folderId=${freshFolder()}`)), {});
    const nobody = await newCaller(kmsd, 'no-roles-at-all');
    fails(await as(nobody.authorization)('GET', `/kms/v1/keys?folderId=${folder}`), 403, PERMISSION_DENIED);

    // Revoking the role takes effect at the very next request.
    await bind(kmsd, { key: mine.id }, 'kms.keys.encrypter', { type: 'serviceAccount', id: app.principal.id }, 'REMOVE');
    fails(await call('POST', `/kms/v1/keys/${mine.id}:encrypt`, { plaintext: b64('x') }), 403, PERMISSION_DENIED);
  });

  it('a folder binding covers keys created in the folder later, and not other folders', async () => {
    const folder = freshFolder();
    const app = await newCaller(kmsd, 'folder-scoped');
    await bind(kmsd, { folder }, 'kms.keys.encrypterDecrypter', { type: 'serviceAccount', id: app.principal.id });
    const later = await createKey(kmsd, { folderId: folder, defaultAlgorithm: 'AES_128' });
    const elsewhere = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_128' });
    const call = as(app.authorization);
    const ct = ok(await call('POST', `/kms/v1/keys/${later.id}:encrypt`, { plaintext: b64('later') })).ciphertext as string;
    assert.equal(ok(await call('POST', `/kms/v1/keys/${later.id}:decrypt`, { ciphertext: ct })).plaintext, b64('later'));
    fails(await call('POST', `/kms/v1/keys/${elsewhere.id}:encrypt`, { plaintext: b64('x') }), 403, PERMISSION_DENIED);
    const listed = ok(await kmsd.call<{ accessBindings: unknown[] }>('GET', `/kmsd/v1/folders/${folder}:listAccessBindings`));
    assert.deepEqual(listed.accessBindings, [{ roleId: 'kms.keys.encrypterDecrypter', subject: { id: app.principal.id, type: 'serviceAccount' } }]);
  });

  it('system:allAuthenticatedUsers grants every valid token and nobody without one; system:allUsers grants anonymous callers too', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_256' });
    const anyone = await newCaller(kmsd, 'no-roles');
    fails(await as(anyone.authorization)('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }), 403, PERMISSION_DENIED);
    await bind(kmsd, { key: key.id }, 'kms.keys.encrypter', { type: 'system', id: 'allAuthenticatedUsers' });
    ok(await as(anyone.authorization)('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }));
    fails(await as(undefined)('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }), 401, UNAUTHENTICATED);
    await bind(kmsd, { key: key.id }, 'kms.keys.encrypter', { type: 'system', id: 'allUsers' });
    ok(await as(undefined)('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }));
    fails(await as(undefined)('GET', `/kms/v1/keys/${key.id}:listAccessBindings`), 401, UNAUTHENTICATED);
  });

  it('binding validation: unknown roles, unknown subject types and principals that do not exist are INVALID_ARGUMENT, and change nothing', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_256' });
    const set = (bindings: unknown[]) => kmsd.call('POST', `/kms/v1/keys/${key.id}:setAccessBindings`, { accessBindings: bindings });
    fails(await set([{ roleId: 'kms.superuser', subject: { type: 'system', id: 'allUsers' } }]), 400, 3, /unknown role/);
    fails(await set([{ roleId: 'kms.viewer', subject: { type: 'group', id: 'x' } }]), 400, 3, /subject type/);
    fails(await set([{ roleId: 'kms.viewer', subject: { type: 'serviceAccount', id: 'ajenosuchaccount0000' } }]), 400, 3, /does not exist/);
    fails(await set([{ roleId: 'kms.viewer', subject: { type: 'system', id: 'everyone' } }]), 400, 3, /system subject/);
    const user = await createPrincipal(kmsd, 'a-user', 'userAccount');
    fails(await set([{ roleId: 'kms.viewer', subject: { type: 'serviceAccount', id: user.id } }]), 400, 3, /does not exist/);
    assert.deepEqual(ok(await kmsd.call<JsonObject>('GET', `/kms/v1/keys/${key.id}:listAccessBindings`)), {});
  });

  it('the installation keeps at least one administrator', async () => {
    const bindings = ok(await kmsd.call<{ accessBindings: JsonObject[] }>('GET', '/kmsd/v1/installation:listAccessBindings')).accessBindings;
    fails(await kmsd.call('POST', '/kmsd/v1/installation:setAccessBindings', { accessBindings: [] }), 400, 9, /administrator/);
    assert.deepEqual(ok(await kmsd.call<{ accessBindings: JsonObject[] }>('GET', '/kmsd/v1/installation:listAccessBindings')).accessBindings, bindings);
  });

  it('a revoked token, an expired token and a token of a deleted principal are UNAUTHENTICATED at once, over REST and gRPC', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_256' });
    const p = await createPrincipal(kmsd, 'short-lived');
    await bind(kmsd, { key: key.id }, 'kms.keys.encrypter', { type: 'serviceAccount', id: p.id });
    const revoked = await issueToken(kmsd, p.id);
    const expiring = await issueToken(kmsd, p.id, { expiresIn: '3600s' });
    const kept = await issueToken(kmsd, p.id);
    const encryptWith = async (token: string) => {
      const request = { keyId: key.id, plaintext: b64('x') };
      const rest = await viaRest(kmsd, RPC['Crypto.Encrypt'], request, `Bearer ${token}`);
      const overGrpc = await viaGrpc(client, RPC['Crypto.Encrypt'], request, `Bearer ${token}`);
      return [rest.code, overGrpc.code];
    };
    for (const t of [revoked, expiring, kept]) assert.deepEqual(await encryptWith(t.token), [0, 0]);

    ok(await kmsd.call('DELETE', `/kmsd/v1/tokens/${revoked.id}`));
    assert.deepEqual(await encryptWith(revoked.token), [UNAUTHENTICATED, UNAUTHENTICATED]);
    const listed = ok(await kmsd.call<{ tokens: { id: string; revokedAt?: string; expiresAt?: string }[] }>('GET', `/kmsd/v1/principals/${p.id}/tokens`)).tokens;
    assert.ok(listed.find((t) => t.id === revoked.id)?.revokedAt, 'the revocation is listed');
    assert.ok(!JSON.stringify(listed).includes(revoked.token.split('.')[2]!), 'no secret is ever listed');

    ok(await kmsd.call('POST', '/kmsd/v1/testing/clock:advance', { duration: '3601s' }));
    assert.deepEqual(await encryptWith(expiring.token), [UNAUTHENTICATED, UNAUTHENTICATED]);
    assert.deepEqual(await encryptWith(kept.token), [0, 0]);

    ok(await kmsd.call('DELETE', `/kmsd/v1/principals/${p.id}`));
    assert.deepEqual(await encryptWith(kept.token), [UNAUTHENTICATED, UNAUTHENTICATED]);
    assert.deepEqual(ok(await kmsd.call<JsonObject>('GET', `/kms/v1/keys/${key.id}:listAccessBindings`)), {}, 'bindings of a deleted principal go with it');
    fails(await kmsd.call('GET', `/kmsd/v1/principals/${p.id}`), 404, 5);
  });

  it('accepts Authorization: Api-Key <token> as well as Bearer, on both transports', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_256' });
    const app = await newCaller(kmsd, 'api-key');
    await bind(kmsd, { key: key.id }, 'kms.keys.encrypter', { type: 'serviceAccount', id: app.principal.id });
    const request = { keyId: key.id, plaintext: b64('x') };
    assert.equal((await viaRest(kmsd, RPC['Crypto.Encrypt'], request, `Api-Key ${app.token}`)).code, 0);
    assert.equal((await viaGrpc(client, RPC['Crypto.Encrypt'], request, `Api-Key ${app.token}`)).code, 0);
  });

  it('a caller without access gets the same answer for a key that exists and one that does not, on every key method and both transports', async () => {
    const key = await createKey(kmsd, { folderId: freshFolder(), defaultAlgorithm: 'AES_256' });
    const ciphertext = (await encrypt(kmsd, key.id, 'probe')).ciphertext;
    const stranger = await newCaller(kmsd, 'stranger');
    // A role elsewhere must not change the answer either.
    await bind(kmsd, { folder: freshFolder() }, 'kms.admin', { type: 'serviceAccount', id: stranger.principal.id });
    const MISSING = 'abj0000000000000000x';
    const requests: [RpcName, (id: string) => JsonObject][] = [
      ['Key.Get', (id) => ({ keyId: id })],
      ['Key.ListVersions', (id) => ({ keyId: id })],
      ['Key.ListOperations', (id) => ({ keyId: id })],
      ['Key.Update', (id) => ({ keyId: id, updateMask: 'name', name: 'x' })],
      ['Key.Rotate', (id) => ({ keyId: id })],
      ['Key.Delete', (id) => ({ keyId: id })],
      ['Key.SetPrimaryVersion', (id) => ({ keyId: id, versionId: key.primaryVersion.id })],
      ['Key.ScheduleVersionDestruction', (id) => ({ keyId: id, versionId: key.primaryVersion.id })],
      ['Key.CancelVersionDestruction', (id) => ({ keyId: id, versionId: key.primaryVersion.id })],
      ['Key.ListAccessBindings', (id) => ({ resourceId: id })],
      ['Key.SetAccessBindings', (id) => ({ resourceId: id, accessBindings: [] })],
      ['Crypto.Encrypt', (id) => ({ keyId: id, plaintext: b64('x') })],
      ['Crypto.GenerateDataKey', (id) => ({ keyId: id })],
      ['Crypto.Decrypt', (id) => ({ keyId: id, ciphertext })],
      ['Crypto.ReEncrypt', (id) => ({ keyId: id, sourceKeyId: id, ciphertext })],
    ];
    for (const [name, req] of requests) {
      for (const via of ['rest', 'grpc'] as const) {
        const run = (id: string) => (via === 'rest' ? viaRest(kmsd, RPC[name], req(id), stranger.authorization) : viaGrpc(client, RPC[name], req(id), stranger.authorization));
        const existing = await run(key.id);
        const missing = await run(MISSING);
        assert.equal(existing.code, PERMISSION_DENIED, `${name} over ${via}: ${existing.message}`);
        assert.deepEqual(
          { code: missing.code, message: missing.message?.replaceAll(MISSING, '<id>') },
          { code: existing.code, message: existing.message?.replaceAll(key.id, '<id>') },
          `${name} over ${via}`,
        );
      }
    }
    assert.equal((await viaRest(kmsd, RPC['Key.Get'], { keyId: MISSING }, `Bearer ${kmsd.token}`)).code, 5, 'an administrator of the installation learns NOT_FOUND');

    // Operations: the same answer for one that exists and one that does not, naming neither's key.
    const ops = ok(await kmsd.call<{ operations: { id: string }[] }>('GET', `/kms/v1/keys/${key.id}/operations`)).operations;
    for (const via of ['rest', 'grpc'] as const) {
      const run = (id: string) => (via === 'rest' ? viaRest(kmsd, RPC['Operation.Get'], { operationId: id }, stranger.authorization) : viaGrpc(client, RPC['Operation.Get'], { operationId: id }, stranger.authorization));
      const existing = await run(ops[0]!.id);
      const missing = await run(MISSING);
      assert.equal(existing.code, PERMISSION_DENIED);
      assert.ok(!existing.message?.includes(key.id), 'the key of the operation is not named');
      assert.deepEqual({ code: missing.code, message: missing.message?.replaceAll(MISSING, '<id>') }, { code: existing.code, message: existing.message?.replaceAll(ops[0]!.id, '<id>') }, `Operation.Get over ${via}`);
    }
  });

  it("kmsd's admin API needs kms.admin on the installation; an auditor there may read the audit log and nothing else", async () => {
    const folderAdmin = await newCaller(kmsd, 'folder-admin');
    const folder = freshFolder();
    await bind(kmsd, { folder }, 'kms.admin', { type: 'serviceAccount', id: folderAdmin.principal.id });
    const call = as(folderAdmin.authorization);
    fails(await call('POST', '/kmsd/v1/principals', { type: 'serviceAccount', name: 'x' }), 403, PERMISSION_DENIED);
    fails(await call('GET', '/kmsd/v1/principals'), 403, PERMISSION_DENIED);
    fails(await call('GET', '/kmsd/v1/audit'), 403, PERMISSION_DENIED);
    fails(await call('POST', '/kmsd/v1/installation:updateAccessBindings', { accessBindingDeltas: [{ action: 'ADD', accessBinding: { roleId: 'kms.admin', subject: { type: 'serviceAccount', id: folderAdmin.principal.id } } }] }), 403, PERMISSION_DENIED);
    // A folder administrator manages its own folder's bindings.
    const helper = await createPrincipal(kmsd, 'helper');
    ok(await call('POST', `/kmsd/v1/folders/${folder}:updateAccessBindings`, { accessBindingDeltas: [{ action: 'ADD', accessBinding: { roleId: 'kms.viewer', subject: { type: 'serviceAccount', id: helper.id } } }] }));
    fails(await call('POST', `/kmsd/v1/folders/${freshFolder()}:updateAccessBindings`, { accessBindingDeltas: [{ action: 'ADD', accessBinding: { roleId: 'kms.viewer', subject: { type: 'serviceAccount', id: helper.id } } }] }), 403, PERMISSION_DENIED);

    const auditor = await newCaller(kmsd, 'auditor');
    await bind(kmsd, 'installation', 'kms.auditor', { type: 'serviceAccount', id: auditor.principal.id });
    const records = ok(await as(auditor.authorization)('GET', '/kmsd/v1/audit?pageSize=5'));
    assert.equal((records.records as unknown[]).length, 5);
    fails(await as(auditor.authorization)('POST', '/kmsd/v1/principals', { type: 'serviceAccount', name: 'x' }), 403, PERMISSION_DENIED);
    fails(await as(auditor.authorization)('POST', '/kms/v1/keys', { folderId: folder, defaultAlgorithm: 'AES_256' }), 403, PERMISSION_DENIED);
  });
});

/** One REST call from a chosen local address (all of 127.0.0.0/8 is loopback), with its own token. */
function fromPeer(kmsd: KmsdProcess, localAddress: string, authorization: string): Promise<number> {
  const [host, port] = kmsd.ready.rest.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path: '/kms/v1/keys?folderId=b1gprobe', method: 'GET', localAddress, headers: { authorization } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('failed authentications are limited per peer', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
  });
  after(async () => kmsd?.dispose());

  it('one peer guessing tokens gets 429 after 20 failures; another peer and the administrator are served normally', async () => {
    const guess = () => `Bearer kmsd1.tkn${'0'.repeat(17)}.${'A'.repeat(43)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push(await fromPeer(kmsd, '127.0.0.2', guess()));
    assert.deepEqual(statuses.slice(0, 20), Array(20).fill(401));
    assert.deepEqual(statuses.slice(20), Array(10).fill(429));
    assert.equal(await fromPeer(kmsd, '127.0.0.3', guess()), 401, 'another peer is judged on its own');
    assert.equal(await fromPeer(kmsd, '127.0.0.3', `Bearer ${kmsd.token}`), 200);
    const body = fails(await kmsd.call('GET', '/kms/v1/keys?folderId=b1gprobe', undefined, { authorization: guess() }), 401, UNAUTHENTICATED);
    assert.ok(body);
  });
});
