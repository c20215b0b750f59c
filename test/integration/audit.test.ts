// The audit log end to end (issue 4): `kmsd audit verify` finds an edited, removed, reordered or
// truncated record in a real data directory and says where; an export verifies and a tampered one
// does not; no record and no log line of a run holds plaintext, key material, AAD or a token; and
// when the audit log cannot be written, calls fail with UNAVAILABLE and change nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { b64, createKey, encrypt, fails, freshFolder, ok, type DataKeyResponse, type KeyList, type Operation } from '../helpers/api.js';
import { bind, newCaller } from '../helpers/identity.js';
import { KMSD_BIN, KmsdProcess, tempDir } from '../helpers/kmsd-process.js';

function verify(dataDir: string, ...extra: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [KMSD_BIN, 'audit', 'verify', '--data-dir', dataDir, ...extra], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A copy of the data directory with `edit` applied to its database. */
function tampered(dataDir: string, edit: (db: Database.Database) => void): string {
  const copy = join(tempDir('kmsd-audit-'), 'data');
  cpSync(dataDir, copy, { recursive: true });
  const db = new Database(join(copy, 'kmsd.db'));
  try {
    edit(db);
  } finally {
    db.close();
  }
  return copy;
}

describe('kmsd audit verify', () => {
  let kmsd: KmsdProcess;
  const secrets: string[] = [];

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    const folder = freshFolder();
    const key = await createKey(kmsd, { folderId: folder, defaultAlgorithm: 'AES_256' });
    const app = await newCaller(kmsd, 'audited-app');
    secrets.push(kmsd.token!, app.token);
    await bind(kmsd, { key: key.id }, 'kms.keys.encrypterDecrypter', { type: 'serviceAccount', id: app.principal.id });
    const plaintext = `TOP-SECRET-${Math.random().toString(36).slice(2)}`;
    const aad = `AAD-SECRET-${Math.random().toString(36).slice(2)}`;
    secrets.push(plaintext, b64(plaintext), aad, b64(aad));
    const call = (m: string, p: string, body?: unknown) => kmsd.call<Record<string, string>>(m, p, body, { authorization: app.authorization });
    const ct = ok(await call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(plaintext), aadContext: b64(aad) })).ciphertext!;
    ok(await call('POST', `/kms/v1/keys/${key.id}:decrypt`, { ciphertext: ct, aadContext: b64(aad) }));
    const dk = ok(await call('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { aadContext: b64(aad) })) as unknown as DataKeyResponse;
    secrets.push(dk.dataKeyPlaintext!);
    fails(await call('POST', `/kms/v1/keys/${key.id}:rotate`), 403, 7);
    fails(await kmsd.call('GET', '/kms/v1/keys?folderId=x', undefined, { authorization: `Bearer ${app.token}x` }), 401, 16);
    for (let i = 0; i < 5; i++) await encrypt(kmsd, key.id, `more ${i}`);
    await kmsd.stop();
  });
  after(async () => kmsd?.dispose());

  it('says OK for an untouched log', () => {
    const r = verify(kmsd.dataDir);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /OK, \d+ records/);
  });

  it('an edited record: exit 1, naming its seq', () => {
    const dir = tampered(kmsd.dataDir, (db) => db.prepare(`UPDATE audit_log SET body = replace(body, '"outcome":"PERMISSION_DENIED","code":7', '"outcome":"OK","code":0') WHERE code = 7`).run());
    const r = verify(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /record seq \d+ .*was altered/);
  });

  it('a removed record: exit 1, naming the gap', () => {
    const dir = tampered(kmsd.dataDir, (db) => db.prepare('DELETE FROM audit_log WHERE seq = 4').run());
    const r = verify(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /records between seq 3 and seq 5 .* are missing/);
  });

  it('two records swapped: exit 1', () => {
    const dir = tampered(kmsd.dataDir, (db) => {
      const [a, b] = db.prepare('SELECT seq, at, subject_id, key_id, code, body, hash FROM audit_log WHERE seq IN (5, 6) ORDER BY seq').all() as { seq: number; body: string; hash: string }[];
      const set = db.prepare('UPDATE audit_log SET body = ?, hash = ? WHERE seq = ?');
      set.run(b!.body, b!.hash, a!.seq);
      set.run(a!.body, a!.hash, b!.seq);
    });
    const r = verify(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /seq 5/);
  });

  it('records cut off the end (and a re-sealed head is not possible without the key): exit 1', () => {
    const dir = tampered(kmsd.dataDir, (db) => db.prepare('DELETE FROM audit_log WHERE seq > 6').run());
    const r = verify(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /ends at seq 6 but the sealed head says \d+/);
    const forged = tampered(dir, (db) => db.prepare("UPDATE audit_head SET seq = 6, hash = (SELECT hash FROM audit_log WHERE seq = 6)").run());
    const r2 = verify(forged);
    assert.equal(r2.code, 1, r2.out);
    assert.match(r2.out, /sealed head was altered/);
  });

  it('a rewritten chain (records edited and all hashes recomputed without the key) is caught', () => {
    const dir = tampered(kmsd.dataDir, (db) => db.prepare(`UPDATE audit_log SET hash = lower(hex(randomblob(32))) WHERE seq >= 3`).run());
    const r = verify(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /record seq 3 /);
  });

  it('an export verifies, and the same export with one line edited, removed or moved does not', async () => {
    await kmsd.restart();
    const res = await fetch(`${kmsd.baseUrl}/kmsd/v1/audit:export`, { headers: { authorization: `Bearer ${kmsd.token}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /ndjson/);
    const lines = (await res.text()).trimEnd().split('\n');
    await kmsd.stop();
    const file = join(tempDir('kmsd-export-'), 'audit.jsonl');
    const check = (content: string[]) => {
      writeFileSync(file, `${content.join('\n')}\n`);
      return verify(kmsd.dataDir, '--in', file);
    };
    const good = check(lines);
    assert.equal(good.code, 0, good.out);
    const edited = [...lines];
    edited[2] = edited[2]!.replace('"transport":"rest"', '"transport":"grpc"');
    assert.equal(check(edited).code, 1);
    assert.match(check([...lines.slice(0, 3), ...lines.slice(4)]).out, /missing/);
    assert.match(check([lines[0]!, lines[2]!, lines[1]!, ...lines.slice(3)]).out, /out of order|missing|altered/);
    assert.equal(check([lines[0]!, lines[2]!, lines[1]!, ...lines.slice(3)]).code, 1);
  });

  it('no audit record and no log line of the run holds a plaintext, an AAD, a data key or a token', async () => {
    const db = new Database(join(kmsd.dataDir, 'kmsd.db'), { readonly: true });
    const bodies = (db.prepare('SELECT body FROM audit_log').pluck().all() as string[]).join('\n');
    db.close();
    assert.ok(bodies.length > 0);
    for (const haystack of [bodies, kmsd.stderr, kmsd.stdout]) {
      for (const secret of secrets) {
        assert.ok(!haystack.includes(secret), `found a secret (${secret.slice(0, 6)}…) in ${haystack === bodies ? 'the audit log' : 'the logs'}`);
      }
      assert.ok(!haystack.includes('kmsd1.'), 'no token of any kind');
    }
  });
});

describe('when the audit log cannot be written', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
  });
  after(async () => kmsd?.dispose());

  it('management and crypto calls fail with UNAVAILABLE and change nothing; service resumes once it can write again', async () => {
    const folder = freshFolder();
    const key = await createKey(kmsd, { folderId: folder, defaultAlgorithm: 'AES_256' });
    // Another connection to the same database makes every audit insert fail, as a full disk would.
    const db = new Database(join(kmsd.dataDir, 'kmsd.db'));
    db.pragma('busy_timeout = 5000');
    db.exec(`CREATE TRIGGER audit_fails BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END`);
    try {
      fails(await kmsd.call('POST', '/kms/v1/keys', { folderId: folder, defaultAlgorithm: 'AES_256' }), 503, 14);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:rotate`), 503, 14);
      fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('unaudited') }), 503, 14);
      fails(await kmsd.call('GET', `/kms/v1/keys/${key.id}`), 503, 14);
    } finally {
      db.exec('DROP TRIGGER audit_fails');
      db.close();
    }
    const keys = ok(await kmsd.call<KeyList>('GET', `/kms/v1/keys?folderId=${folder}`)).keys ?? [];
    assert.deepEqual(keys.map((k) => k.id), [key.id], 'the failed Create made no key');
    const ops = ok(await kmsd.call<{ operations: Operation[] }>('GET', `/kms/v1/keys/${key.id}/operations`)).operations;
    assert.equal(ops.filter((o) => o.description === 'rotate key').length, 0, 'the failed Rotate made no operation');
    assert.equal(ok(await kmsd.call<{ primaryVersion: { id: string } }>('GET', `/kms/v1/keys/${key.id}`)).primaryVersion.id, key.primaryVersion.id);
    ok(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('audited again') }));
    assert.match(kmsd.stderr, /audit log write failed/);
    const r = spawnSync(process.execPath, [KMSD_BIN, 'audit', 'verify', '--data-dir', kmsd.dataDir], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });
});
