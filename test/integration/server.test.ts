// The server as an operator sees it (DESIGN.md §2, SPEC.md §2.3, §3.2): authentication, request
// ids, the admin token file, --auth none, seed files, persistence across restarts and crashes,
// the root-key check, and graceful shutdown.
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import {
  b64,
  createKey,
  decrypt,
  decryptCall,
  encrypt,
  fails,
  freshFolder,
  getKey,
  listVersions,
  ok,
  rotate,
  sleep,
  unb64,
  update,
  type KeyList,
  type Operation,
  type OperationList,
  type SymmetricKey,
} from '../helpers/api.js';
import { expectStartFailure, KmsdProcess, tempDir, type KmsdResponse } from '../helpers/kmsd-process.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// ---- ciphertext v1, written from the layout documented in src/crypto/ciphertext-v1.ts ----------

function be32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function v1Header(versionId: string): Buffer {
  const id = Buffer.from(versionId, 'ascii');
  return Buffer.concat([Buffer.of(0x4b, 0x01, id.length), id]);
}

function v1Aad(header: Buffer, keyId: string, aadContext: Buffer): Buffer {
  const kid = Buffer.from(keyId, 'utf8');
  return Buffer.concat([header, be32(kid.length), kid, be32(aadContext.length), aadContext]);
}

const gcm = (material: Buffer) => `aes-${material.length * 8}-gcm` as 'aes-256-gcm';

/** Seals like kmsd would, with node:crypto alone. */
function sealLocally(p: { material: Buffer; keyId: string; versionId: string; plaintext: Buffer; aadContext: Buffer }): Buffer {
  const header = v1Header(p.versionId);
  const nonce = randomBytes(12);
  const cipher = createCipheriv(gcm(p.material), p.material, nonce, { authTagLength: 16 });
  cipher.setAAD(v1Aad(header, p.keyId, p.aadContext));
  return Buffer.concat([header, nonce, cipher.update(p.plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Opens a kmsd ciphertext with node:crypto alone. */
function openLocally(p: { material: Buffer; keyId: string; ciphertext: Buffer; aadContext: Buffer }): { versionId: string; plaintext: Buffer } {
  const ct = p.ciphertext;
  assert.equal(ct[0], 0x4b);
  assert.equal(ct[1], 0x01);
  const versionId = ct.subarray(3, 3 + ct[2]!).toString('ascii');
  const header = v1Header(versionId);
  const nonce = ct.subarray(header.length, header.length + 12);
  const decipher = createDecipheriv(gcm(p.material), p.material, nonce, { authTagLength: 16 });
  decipher.setAAD(v1Aad(header, p.keyId, p.aadContext));
  decipher.setAuthTag(ct.subarray(ct.length - 16));
  return { versionId, plaintext: Buffer.concat([decipher.update(ct.subarray(header.length + 12, ct.length - 16)), decipher.final()]) };
}

// ---- authentication and request ids ---------------------------------------------------------------

describe('authentication and request ids (--auth iam)', () => {
  let kmsd: KmsdProcess;
  let key: SymmetricKey;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    key = await createKey(kmsd, { folderId: freshFolder() });
  });
  after(async () => {
    await kmsd?.dispose();
  });

  const asUnauthenticated = (res: KmsdResponse) => fails(res, 401, 16);

  it('no Authorization header → 401 UNAUTHENTICATED with a RequestInfo detail', async () => {
    for (const [method, path, body] of [
      ['GET', `/kms/v1/keys/${key.id}`],
      ['GET', `/kms/v1/keys?folderId=${key.folderId}`],
      ['POST', '/kms/v1/keys', { folderId: 'b1g', defaultAlgorithm: 'AES_256' }],
      ['POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }],
      ['POST', `/kms/v1/keys/${key.id}:rotate`],
      ['GET', '/operations/abj00000000000000000'],
    ] as const) {
      const res = await kmsd.call(method, path, body, { authorization: '' });
      const err = asUnauthenticated(res);
      assert.match(err.message, /Authorization|token/i);
    }
    assert.equal((await listVersions(kmsd, key.id)).length, 1, 'the unauthenticated rotate did nothing');
  });

  it('a wrong or malformed token → 401 with one message that does not say which check failed', async () => {
    const token = kmsd.token!;
    const m = /^kmsd1\.([0-9a-v]{20})\.([A-Za-z0-9_-]{43})$/.exec(token);
    assert.ok(m, `admin token has the documented shape: ${token.slice(0, 6)}…`);
    const otherSecret = m[2]!.startsWith('A') ? `B${m[2]!.slice(1)}` : `A${m[2]!.slice(1)}`;
    const cases = [
      `Bearer kmsd1.${m[1]}.${otherSecret}`, // right id, wrong secret
      `Bearer kmsd1.abj00000000000000000.${m[2]}`, // unknown id
      'Bearer not-a-token',
      `Bearer ${token}x`,
      'Bearer',
      `Basic ${Buffer.from('admin:admin').toString('base64')}`,
      token, // no scheme
      `Bearer ${token} extra`,
    ];
    const messages = new Set<string>();
    for (const authorization of cases) {
      const res = await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { authorization });
      messages.add(asUnauthenticated(res).message);
    }
    assert.equal(messages.size, 1, [...messages].join(' | '));
    // The scheme is case-insensitive, as HTTP says.
    ok(await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { authorization: `bearer ${token}` }));
  });

  it('echoes the client x-request-id in the header, and in the error details', async () => {
    const id = 'client-req-0001';
    const good = await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { 'x-request-id': id });
    assert.equal(good.status, 200);
    assert.equal(good.headers.get('x-request-id'), id);
    assert.ok(good.headers.get('x-server-trace-id'), 'x-server-trace-id is returned too');

    const notFound = await kmsd.call('GET', '/kms/v1/keys/abj00000000000000000', undefined, { 'x-request-id': id });
    assert.equal(fails(notFound, 404, 5).details[0]!.requestId, id);
    const unauth = await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { 'x-request-id': id, authorization: '' });
    assert.equal(fails(unauth, 401, 16).details[0]!.requestId, id);
    const invalid = await kmsd.call('POST', '/kms/v1/keys', { folderId: 'b1g' }, { 'x-request-id': id });
    assert.equal(fails(invalid, 400, 3).details[0]!.requestId, id);
  });

  it('generates a request id when the client sends none or an unusable one', async () => {
    const none = await kmsd.call('GET', '/kms/v1/keys/abj00000000000000000');
    const generated = none.headers.get('x-request-id');
    assert.match(generated ?? '', UUID_RE);
    assert.equal(fails(none, 404, 5).details[0]!.requestId, generated);
    for (const bad of ['has spaces in it', 'x'.repeat(129), 'quote"d']) {
      const res = await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { 'x-request-id': bad });
      assert.match(res.headers.get('x-request-id') ?? '', UUID_RE);
    }
    const a = (await kmsd.call('GET', `/kms/v1/keys/${key.id}`)).headers.get('x-request-id');
    const b = (await kmsd.call('GET', `/kms/v1/keys/${key.id}`)).headers.get('x-request-id');
    assert.notEqual(a, b);
  });

  it('writes admin.token with mode 0600 in a 0700 data directory and never prints the token', async () => {
    assert.equal(statSync(join(kmsd.dataDir, 'admin.token')).mode & 0o777, 0o600);
    assert.equal(statSync(join(kmsd.dataDir, 'root.key')).mode & 0o777, 0o600);
    assert.equal(statSync(kmsd.dataDir).mode & 0o777, 0o700);
    const secret = kmsd.token!.split('.')[2]!;
    assert.ok(!kmsd.stdout.includes(secret) && !kmsd.stderr.includes(secret), 'the token is not in the output');
    assert.match(kmsd.stderr, /admin\.token/, 'the log says where the token is');
  });

  it('unknown paths → 404; the testing endpoint does not exist without --test-clock', async () => {
    fails(await kmsd.call('GET', '/kms/v1/nothing-here'), 404, 5);
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:explode`, {}), 404, 5);
    fails(await kmsd.call('POST', '/kmsd/v1/testing/clock:advance', { duration: '86400s' }), 404, 5);
  });

  it('malformed bodies → 400 INVALID_ARGUMENT', async () => {
    fails(await kmsd.call('POST', '/kms/v1/keys', '{not json'), 400, 3, /JSON/);
    fails(await kmsd.call('POST', '/kms/v1/keys', '[1,2]'), 400, 3);
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, 'x'.repeat(300 * 1024)), 400, 3, /too large/);
  });
});

describe('--auth none', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'none' });
  });
  after(async () => {
    await kmsd?.dispose();
  });

  it('serves without a token, says so loudly, and writes no admin.token', async () => {
    assert.equal(kmsd.ready.auth, 'none');
    assert.equal(kmsd.token, undefined);
    const key = await createKey(kmsd, { folderId: freshFolder() });
    ok(await kmsd.call('GET', `/kms/v1/keys/${key.id}`));
    ok(await kmsd.call('GET', `/kms/v1/keys/${key.id}`, undefined, { authorization: 'Bearer whatever' }));
    const enc = await encrypt(kmsd, key.id, 'dev');
    assert.equal((await decrypt(kmsd, key.id, enc.ciphertext)).plaintext, b64('dev'));
    assert.match(kmsd.stderr, /DEV/);
    assert.throws(() => statSync(join(kmsd.dataDir, 'admin.token')), /ENOENT/);
  });
});

// ---- seed files ----------------------------------------------------------------------------------

describe('--seed', () => {
  const dir = tempDir();
  const material1 = randomBytes(32);
  const material2a = randomBytes(32);
  const material2b = randomBytes(16);
  const material3 = randomBytes(24);
  const K1 = 'abjseed0000000000001';
  const V1 = 'abjseedver0000000001';
  const K2 = 'seeded-two';
  const V2A = 'v2a';
  const V2B = 'v2b';
  const K3 = 'seeded-json';
  const V3 = 'seeded-json-v1';
  const K4 = 'seeded-random';
  const folderId = 'b1gseedfolder';
  // Made before any server runs: proves the seeded material is exactly these bytes.
  const ahead1 = sealLocally({ material: material1, keyId: K1, versionId: V1, plaintext: Buffer.from('sealed ahead of time'), aadContext: Buffer.from('aad') });
  const ahead2a = sealLocally({ material: material2a, keyId: K2, versionId: V2A, plaintext: Buffer.from('old version'), aadContext: Buffer.alloc(0) });
  const ahead2b = sealLocally({ material: material2b, keyId: K2, versionId: V2B, plaintext: Buffer.from('new version'), aadContext: Buffer.alloc(0) });
  const ahead3 = sealLocally({ material: material3, keyId: K3, versionId: V3, plaintext: Buffer.from('from json'), aadContext: Buffer.from('j') });

  const yamlSeed = join(dir, 'seed.yaml');
  writeFileSync(
    yamlSeed,
    `# keys for the integration tests
keys:
  - id: ${K1}
    folderId: ${folderId}
    name: app
    description: seeded from YAML
    defaultAlgorithm: AES_256
    rotationPeriod: 2592000s
    labels: { env: dev }
    versions:
      - id: ${V1}
        material: ${material1.toString('base64')}
  - id: ${K2}
    folderId: ${folderId}
    defaultAlgorithm: AES_128
    deletionProtection: true
    versions:
      - id: ${V2A}
        algorithm: AES_256
        material: ${material2a.toString('base64')}
      - id: ${V2B}
        material: ${material2b.toString('base64')}
    primaryVersionId: ${V2B}
  - id: ${K4}
    folderId: ${folderId}
    defaultAlgorithm: AES_192
`,
  );
  const jsonSeed = join(dir, 'seed.json');
  writeFileSync(
    jsonSeed,
    JSON.stringify({
      keys: [
        { id: K1, folderId, name: 'would overwrite', defaultAlgorithm: 'AES_128' },
        { id: K3, folder_id: folderId, default_algorithm: 'AES_192', versions: [{ id: V3, material: material3.toString('base64') }] },
      ],
    }),
  );

  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam', seed: yamlSeed, dataDir: join(dir, 'data') });
  });
  after(async () => {
    try {
      await kmsd?.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a YAML seed creates keys with fixed ids, fields and versions', async () => {
    const k1 = await getKey(kmsd, K1);
    assert.deepEqual(k1, {
      id: K1,
      folderId,
      createdAt: k1.createdAt,
      name: 'app',
      description: 'seeded from YAML',
      labels: { env: 'dev' },
      status: 'ACTIVE',
      primaryVersion: { id: V1, keyId: K1, status: 'ACTIVE', algorithm: 'AES_256', createdAt: k1.createdAt, primary: true },
      defaultAlgorithm: 'AES_256',
      rotationPeriod: '2592000s',
    });
    const k2 = await getKey(kmsd, K2);
    assert.equal(k2.primaryVersion.id, V2B);
    assert.equal(k2.primaryVersion.algorithm, 'AES_128');
    assert.equal(k2.deletionProtection, true);
    const v2 = await listVersions(kmsd, K2);
    assert.deepEqual(v2.map((v) => [v.id, v.algorithm, v.primary ?? false]).sort(), [
      [V2A, 'AES_256', false],
      [V2B, 'AES_128', true],
    ]);
    const k4 = await getKey(kmsd, K4);
    assert.equal(k4.primaryVersion.algorithm, 'AES_192');
    const list = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`));
    assert.deepEqual(list.keys?.map((k) => k.id).sort(), [K1, K2, K4].sort());
    // The seeded keys have their Create operation like any other key.
    const ops = ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${K1}/operations`));
    assert.equal(ops.operations?.length, 1);
    assert.equal(ops.operations?.[0]?.description, 'create symmetric key');
  });

  it('the seeded material is the given bytes: ciphertexts made ahead of time decrypt, and kmsd ciphertexts open locally', async () => {
    assert.deepEqual(await decrypt(kmsd, K1, ahead1.toString('base64'), { aadContext: b64('aad') }), {
      keyId: K1,
      versionId: V1,
      plaintext: b64('sealed ahead of time'),
    });
    assert.deepEqual(await decrypt(kmsd, K2, ahead2a.toString('base64')), { keyId: K2, versionId: V2A, plaintext: b64('old version') });
    assert.deepEqual(await decrypt(kmsd, K2, ahead2b.toString('base64')), { keyId: K2, versionId: V2B, plaintext: b64('new version') });
    // And the other way round.
    const enc = await encrypt(kmsd, K1, 'made by kmsd', { aadContext: b64('ctx') });
    const opened = openLocally({ material: material1, keyId: K1, ciphertext: unb64(enc.ciphertext), aadContext: Buffer.from('ctx') });
    assert.equal(opened.versionId, V1);
    assert.equal(opened.plaintext.toString(), 'made by kmsd');
    const enc2 = await encrypt(kmsd, K2, 'primary is v2b');
    assert.equal(openLocally({ material: material2b, keyId: K2, ciphertext: unb64(enc2.ciphertext), aadContext: Buffer.alloc(0) }).plaintext.toString(), 'primary is v2b');
    // The key id is bound: K1's material under another key id does not decrypt.
    const rebound = sealLocally({ material: material1, keyId: K4, versionId: V1, plaintext: Buffer.from('x'), aadContext: Buffer.alloc(0) });
    fails(await decryptCall(kmsd, K1, rebound.toString('base64')), 400, 3);
  });

  it('is idempotent across restarts, leaves existing keys alone, and accepts JSON', async () => {
    const before = await Promise.all([K1, K2, K4].map((id) => getKey(kmsd, id)));
    // A change made through the API survives the seed being applied again.
    await update(kmsd, K1, { updateMask: 'name', name: 'renamed by a test' });
    const rotatedK4 = await rotate(kmsd, K4);

    await kmsd.restart();
    // Logs are written asynchronously; the ready line on stdout may come first.
    for (let i = 0; i < 100 && !/applied seed file/.test(kmsd.stderr); i++) await sleep(20);
    assert.match(kmsd.stderr, /applied seed file/);
    assert.equal((await getKey(kmsd, K1)).name, 'renamed by a test');
    assert.deepEqual(await getKey(kmsd, K2), before[1]);
    assert.deepEqual(await getKey(kmsd, K4), rotatedK4);
    assert.equal(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)).keys?.length, 3);
    assert.equal((await decrypt(kmsd, K1, ahead1.toString('base64'), { aadContext: b64('aad') })).plaintext, b64('sealed ahead of time'));

    // A JSON seed on the same data directory: K1 exists (untouched), K3 is new.
    await kmsd.restart({ seed: jsonSeed });
    const k1 = await getKey(kmsd, K1);
    assert.equal(k1.name, 'renamed by a test');
    assert.equal(k1.defaultAlgorithm, 'AES_256');
    assert.equal(k1.createdAt, before[0]!.createdAt);
    const k3 = await getKey(kmsd, K3);
    assert.equal(k3.primaryVersion.id, V3);
    assert.equal(k3.primaryVersion.algorithm, 'AES_192');
    assert.deepEqual(await decrypt(kmsd, K3, ahead3.toString('base64'), { aadContext: b64('j') }), { keyId: K3, versionId: V3, plaintext: b64('from json') });
    assert.equal(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)).keys?.length, 4);
    assert.equal(ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${K1}/operations`)).operations?.length, 2, 'create + update, no second create');
  });

  it('an invalid seed file stops kmsd with a non-zero exit and a message naming the field', async () => {
    const base = { folderId: 'b1g', defaultAlgorithm: 'AES_256' };
    const cases: [string, string, RegExp][] = [
      ['bad id', `keys:\n  - id: "Not An Id!"\n    folderId: b1g\n    defaultAlgorithm: AES_256\n`, /keys(?:\[0\]|\.0)\.id/],
      ['no defaultAlgorithm', JSON.stringify({ keys: [{ id: 'k1', folderId: 'b1g' }] }), /default_algorithm/],
      ['no folderId', JSON.stringify({ keys: [{ id: 'k1', defaultAlgorithm: 'AES_256' }] }), /folder_id/],
      ['material length', JSON.stringify({ keys: [{ id: 'k1', ...base, versions: [{ id: 'v1', material: randomBytes(16).toString('base64') }] }] }), /material/],
      ['material not base64', JSON.stringify({ keys: [{ id: 'k1', ...base, versions: [{ id: 'v1', material: '***' }] }] }), /material/],
      ['unknown version field', JSON.stringify({ keys: [{ id: 'k1', ...base, versions: [{ id: 'v1', colour: 'red' }] }] }), /colour/],
      ['unknown key field', JSON.stringify({ keys: [{ id: 'k1', ...base, colour: 'red' }] }), /colour/],
      ['label pattern', JSON.stringify({ keys: [{ id: 'k1', ...base, labels: { Env: 'x' } }] }), /labels/],
      ['primaryVersionId', JSON.stringify({ keys: [{ id: 'k1', ...base, versions: [{ id: 'v1' }], primaryVersionId: 'v9' }] }), /primaryVersionId/],
      ['top-level field', JSON.stringify({ keys: [], folders: [] }), /folders/],
      ['not YAML', 'keys: [unclosed', /seed/],
    ];
    // Run the refusals two at a time: each is a process start.
    const results = [];
    for (let i = 0; i < cases.length; i += 2) {
      results.push(
        ...(await Promise.all(
          cases.slice(i, i + 2).map(async ([what, text, field], j) => {
            const file = join(dir, `bad-${i + j}.yaml`);
            writeFileSync(file, text);
            return { what, field, file, result: await expectStartFailure({ auth: 'none', seed: file, dataDir: join(dir, `bad-data-${i + j}`) }) };
          }),
        )),
      );
    }
    for (const { what, field, file, result } of results) {
      assert.notEqual(result.code, 0, `${what}: exit code`);
      assert.equal(result.signal, null, `${what}: exited by itself`);
      assert.ok(result.stderr.includes(file), `${what}: names the file\n${result.stderr}`);
      assert.match(result.stderr, field, `${what}: names the field`);
      assert.ok(!result.stdout.includes('"ready"'), `${what}: never ready`);
    }
    const missing = await expectStartFailure({ auth: 'none', seed: join(dir, 'does-not-exist.yaml'), dataDir: join(dir, 'bad-data-missing') });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /does-not-exist\.yaml/);
  });
});

// ---- persistence ---------------------------------------------------------------------------------

describe('persistence across restarts', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
  });
  after(async () => {
    await kmsd?.dispose();
  });

  it('keys, versions, operations, ciphertexts and the admin token survive a SIGTERM restart', async () => {
    const folderId = freshFolder();
    const a = await createKey(kmsd, { folderId, name: 'a', labels: { x: 'y' }, rotationPeriod: '86400s' });
    const b = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_128' });
    const ctA1 = await encrypt(kmsd, a.id, 'one', { aadContext: b64('ctx') });
    await rotate(kmsd, a.id);
    const ctA2 = await encrypt(kmsd, a.id, 'two');
    const ctB = await encrypt(kmsd, b.id, 'bee');
    ok(await kmsd.call('POST', `/kms/v1/keys/${a.id}:scheduleVersionDestruction`, { versionId: a.primaryVersion.id }));
    await update(kmsd, b.id, { updateMask: 'status', status: 'INACTIVE' });
    const keysBefore = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`));
    const versionsBefore = await listVersions(kmsd, a.id);
    const opsBefore = ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${a.id}/operations`));
    const token = kmsd.token;
    const port = kmsd.ready.rest;

    await kmsd.restart();
    assert.equal(kmsd.token, token, 'the admin token file is kept');
    assert.notEqual(kmsd.ready.rest, undefined);
    void port; // a fresh ephemeral port is fine
    assert.deepEqual(ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}`)), keysBefore);
    assert.deepEqual(await listVersions(kmsd, a.id), versionsBefore);
    assert.deepEqual(ok(await kmsd.call<OperationList>('GET', `/kms/v1/keys/${a.id}/operations`)), opsBefore);
    for (const op of opsBefore.operations ?? []) assert.deepEqual(ok(await kmsd.call('GET', `/operations/${op.id}`)), op);
    // The scheduled version is still scheduled; the other ciphertext still decrypts.
    fails(await decryptCall(kmsd, a.id, ctA1.ciphertext, { aadContext: b64('ctx') }), 400, 9);
    assert.equal((await decrypt(kmsd, a.id, ctA2.ciphertext)).plaintext, b64('two'));
    ok(await kmsd.call('POST', `/kms/v1/keys/${a.id}:cancelVersionDestruction`, { versionId: a.primaryVersion.id }));
    assert.equal((await decrypt(kmsd, a.id, ctA1.ciphertext, { aadContext: b64('ctx') })).plaintext, b64('one'));
    fails(await decryptCall(kmsd, b.id, ctB.ciphertext), 400, 9, /INACTIVE/);
    await update(kmsd, b.id, { updateMask: 'status', status: 'ACTIVE' });
    assert.equal((await decrypt(kmsd, b.id, ctB.ciphertext)).plaintext, b64('bee'));
  });

  it('every Create answered 200 before a SIGKILL is still there after restart', async (t) => {
    const folderId = freshFolder();
    const total = 200;
    const killAfter = 40;
    const succeeded: SymmetricKey[] = [];
    let failed = 0;
    let killing: Promise<unknown> | undefined;
    await Promise.all(
      Array.from({ length: total }, async (_, i) => {
        try {
          const res = await kmsd.call<Operation>('POST', '/kms/v1/keys', { folderId, name: `crash-${i}`, defaultAlgorithm: 'AES_256' });
          if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.text}`);
          succeeded.push(res.json.response as SymmetricKey);
          if (succeeded.length === killAfter) killing = kmsd.kill();
        } catch (e) {
          // Only a request cut off by the kill may fail, never one answered before it.
          if (killing === undefined) throw e;
          failed++;
        }
      }),
    );
    const exit = await killing;
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    assert.ok(succeeded.length >= killAfter);
    assert.ok(failed > 0, `the kill interrupted requests in flight (${succeeded.length} succeeded first)`);
    t.diagnostic(`${succeeded.length} Creates answered 200 before the SIGKILL, ${failed} were cut off`);

    await kmsd.restart();
    for (const key of succeeded) {
      const { '@type': _type, ...expected } = key as SymmetricKey & { '@type'?: string };
      assert.deepEqual(await getKey(kmsd, key.id), expected, `key ${key.id} (answered 200) survived`);
    }
    const listed = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folderId}&pageSize=1000`)).keys ?? [];
    const listedIds = new Set(listed.map((k) => k.id));
    for (const key of succeeded) assert.ok(listedIds.has(key.id), `key ${key.id} is listed`);
    assert.ok(listed.length <= total);
    t.diagnostic(`after restart: ${listed.length} keys listed (${listed.length - succeeded.length} committed without an answer)`);
    // Whatever else committed is whole: every listed key has its version and material.
    for (const key of listed) {
      const enc = await encrypt(kmsd, key.id, 'whole');
      assert.equal(enc.versionId, key.primaryVersion.id);
      assert.equal((await decrypt(kmsd, key.id, enc.ciphertext)).plaintext, b64('whole'));
    }
  });
});

// ---- root key ------------------------------------------------------------------------------------

describe('root key check', () => {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  let kmsd: KmsdProcess | undefined;
  let keyId: string;
  let ciphertext: string;
  before(async () => {
    const first = await KmsdProcess.start({ auth: 'none', dataDir });
    const key = await createKey(first, { folderId: freshFolder() });
    keyId = key.id;
    ciphertext = (await encrypt(first, key.id, 'root-bound')).ciphertext;
    await first.stop();
  });
  after(async () => {
    try {
      await kmsd?.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start with another root key (--root-key file:OTHER or KMSD_ROOT_KEY=env:VAR)', async () => {
    const other = join(dir, 'other.key');
    writeFileSync(other, randomBytes(32), { mode: 0o600 });
    const [viaFile, viaEnv] = await Promise.all([
      expectStartFailure({ auth: 'none', dataDir, rootKey: `file:${other}` }),
      expectStartFailure({ auth: 'none', dataDir, env: { KMSD_ROOT_KEY: 'env:KMSD_IT_OTHER_ROOT', KMSD_IT_OTHER_ROOT: randomBytes(32).toString('base64') } }),
    ]);
    for (const r of [viaFile, viaEnv]) {
      assert.notEqual(r.code, 0);
      assert.equal(r.signal, null);
      assert.match(r.stderr, /root key/);
      assert.match(r.stderr, /refusing to start/);
      assert.ok(!r.stdout.includes('"ready"'));
    }
  });

  it('refuses a missing root key file for existing data, and creates no new key file', async () => {
    const missing = join(dir, 'missing.key');
    const r = await expectStartFailure({ auth: 'none', dataDir, rootKey: `file:${missing}` });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /does not exist/);
    assert.equal(existsSync(missing), false, 'no new root key was generated for data wrapped by another');
  });

  it('refuses a root key file readable by others', async () => {
    const loose = join(dir, 'loose.key');
    writeFileSync(loose, readFileSync(join(dataDir, 'root.key')));
    chmodSync(loose, 0o644);
    const r = await expectStartFailure({ auth: 'none', dataDir, rootKey: `file:${loose}` });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /chmod 600/);
  });

  it('starts with the same root key given through the environment, and decrypts old data', async () => {
    const same = readFileSync(join(dataDir, 'root.key')).toString('base64');
    kmsd = await KmsdProcess.start({ auth: 'none', dataDir, env: { KMSD_ROOT_KEY: 'env:KMSD_IT_ROOT', KMSD_IT_ROOT: same } });
    assert.equal((await decrypt(kmsd, keyId, ciphertext)).plaintext, b64('root-bound'));
  });
});

// ---- shutdown ------------------------------------------------------------------------------------

describe('graceful shutdown', () => {
  it('SIGTERM the moment the ready line appears exits 0 (the handler is installed before the line is printed)', async () => {
    // Regression: kmsd used to print the ready line before installing its SIGTERM handler, so a
    // supervisor that stopped it right away killed it with the default action (signal, no drain).
    for (let i = 0; i < 3; i++) {
      const kmsd = await KmsdProcess.start({ auth: 'none' });
      try {
        await kmsd.stop(); // asserts { code: 0, signal: null }
      } finally {
        await kmsd.dispose();
      }
    }
  });

  it('SIGTERM with requests in flight: answered requests succeed, and kmsd exits 0', async (t) => {
    const kmsd = await KmsdProcess.start({ auth: 'none' });
    try {
      const key = await createKey(kmsd, { folderId: freshFolder() });
      const statuses: number[] = [];
      let refused = 0;
      let stopping: Promise<void> | undefined;
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          try {
            const res = await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(`m${i}`) });
            statuses.push(res.status);
            if (statuses.length === 10) stopping = kmsd.stop(); // asserts exit code 0
          } catch {
            refused++; // connections not yet accepted when the listener closed
          }
        }),
      );
      await stopping;
      t.diagnostic(`${statuses.filter((x) => x === 200).length} × 200, ${statuses.filter((x) => x !== 200).length} × other, ${refused} refused`);
      assert.equal(statuses.length + refused, 100);
      assert.ok(statuses.length >= 10);
      for (const s of statuses) assert.ok(s === 200 || s === 503, `HTTP ${s}`);
      assert.match(kmsd.stderr, /draining/);
    } finally {
      await kmsd.dispose();
    }
  });
});

// ---- REST over HTTPS ------------------------------------------------------------------------------

describe('--rest-tls', () => {
  it('serves REST over HTTPS with the generated certificate, trusted through ca.pem, and refuses plain HTTP', async () => {
    const kmsd = await KmsdProcess.start({ auth: 'none', args: ['--rest-tls'] });
    try {
      assert.equal(kmsd.ready.restTls, true);
      const ca = readFileSync(String(kmsd.ready.caFile));
      const [host, port] = [kmsd.ready.rest.slice(0, kmsd.ready.rest.lastIndexOf(':')), Number(kmsd.ready.rest.split(':').pop())];
      const body = JSON.stringify({ folderId: 'b1ghttps', defaultAlgorithm: 'AES_256' });
      const answer = await new Promise<{ status: number; json: { done?: boolean } }>((resolve, reject) => {
        const req = httpsRequest(
          { host, port, path: '/kms/v1/keys', method: 'POST', ca, servername: 'localhost', headers: { 'content-type': 'application/json' } },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString('utf8')));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as { done?: boolean } }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      assert.equal(answer.status, 200);
      assert.equal(answer.json.done, true);
      // Plain HTTP to the TLS port gets no API answer.
      const plain = await fetch(`http://${kmsd.ready.rest}/kms/v1/keys?folderId=b1ghttps`).then(
        (r) => r.status,
        () => 'refused',
      );
      assert.notEqual(plain, 200);
    } finally {
      await kmsd.dispose();
    }
  });
});
