// `kmsd principals|tokens|bindings` against a running server, as an operator would use them:
// create an application's service account, give it a token and a role on a folder, use it, revoke.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { b64, createKey, fails, freshFolder, ok } from '../helpers/api.js';
import { KMSD_BIN, KmsdProcess } from '../helpers/kmsd-process.js';

describe('kmsd principals, tokens and bindings commands', () => {
  let kmsd: KmsdProcess;
  let cli: (...args: string[]) => { code: number | null; stdout: string; stderr: string };

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    cli = (...args) => {
      const r = spawnSync(process.execPath, [KMSD_BIN, ...args, '--endpoint', kmsd.baseUrl, '--token-file', join(kmsd.dataDir, 'admin.token')], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '' },
      });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
  });
  after(async () => kmsd?.dispose());

  it('creates a service account, issues a token, grants a folder role, and revokes', async () => {
    const created = cli('principals', 'create', '--name', 'billing-app', '--description', 'the billing service');
    assert.equal(created.code, 0, created.stderr);
    const sa = JSON.parse(created.stdout) as { id: string; type: string; name: string };
    assert.equal(sa.type, 'serviceAccount');
    assert.match(sa.id, /^aje[0-9a-v]{17}$/);

    const listed = JSON.parse(cli('principals', 'list').stdout) as { id: string }[];
    assert.ok(listed.some((p) => p.id === sa.id));

    const issued = cli('tokens', 'create', sa.id, '--expires-in', '86400s');
    assert.equal(issued.code, 0, issued.stderr);
    const token = issued.stdout.trim();
    assert.match(token, /^kmsd1\.tkn[0-9a-v]{17}\.[A-Za-z0-9_-]{43}$/);

    const folder = freshFolder();
    const key = await createKey(kmsd, { folderId: folder, defaultAlgorithm: 'AES_256' });
    const asApp = { authorization: `Bearer ${token}` };
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }, asApp), 403, 7);
    const added = cli('bindings', 'add', '--folder', folder, '--role', 'kms.keys.encrypter', '--subject', `serviceAccount:${sa.id}`);
    assert.equal(added.code, 0, added.stderr);
    ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }, asApp));
    assert.deepEqual(JSON.parse(cli('bindings', 'list', '--folder', folder).stdout), [{ roleId: 'kms.keys.encrypter', subject: { id: sa.id, type: 'serviceAccount' } }]);

    const tokens = JSON.parse(cli('tokens', 'list', sa.id).stdout) as { id: string; expiresAt?: string }[];
    assert.equal(tokens.length, 1);
    assert.ok(tokens[0]!.expiresAt);
    assert.ok(!JSON.stringify(tokens).includes(token.split('.')[2]!), 'the secret is never listed');
    assert.equal(cli('tokens', 'revoke', tokens[0]!.id).code, 0);
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }, asApp), 401, 16);

    assert.equal(cli('principals', 'delete', sa.id).code, 0);
    assert.deepEqual(JSON.parse(cli('bindings', 'list', '--folder', folder).stdout), []);
  });

  it('fails with a clear message and exit 1 on a bad request, and never echoes the token', () => {
    const r = cli('bindings', 'add', '--folder', freshFolder(), '--role', 'kms.nosuchrole', '--subject', 'system:allUsers');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HTTP 400: .*unknown role/);
    const bad = cli('principals', 'create', '--name', 'x', '--type', 'robot');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /serviceAccount or userAccount/);
    assert.ok(!`${r.stderr}${bad.stderr}`.includes(kmsd.token!));
  });
});
