// Migrating a deployment from a file root key to an HSM with `kmsd root-key rotate`, while the
// server keeps serving: the rotation is killed (SIGKILL) half way, resumed, and afterwards every
// earlier ciphertext decrypts with the file key gone.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { wrappedRootKeyId } from '../../src/crypto/wrapped-material.js';
import { b64, createKey, freshFolder, ok, rotate, unb64, type DataKeyResponse, type DecryptResponse, type EncryptResponse } from '../helpers/api.js';
import { expectStartFailure, KMSD_BIN, KmsdProcess } from '../helpers/kmsd-process.js';
import { pkcs11Spec, uniqueLabel, withSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `kmsd root-key rotate` to its end. */
function rotateRootKey(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KMSD_')) childEnv[k] = v;
  const child = spawn(process.execPath, [KMSD_BIN, 'root-key', 'rotate', ...args], { env: { ...childEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** How many stored blobs each root key wrapped, read straight from the database file. */
function blobsByRootKey(dataDir: string): Record<string, number> {
  const db = new Database(join(dataDir, 'kmsd.db'), { readonly: true });
  try {
    const counts: Record<string, number> = {};
    const rows = db.prepare('SELECT wrapped_material AS m FROM key_versions WHERE wrapped_material IS NOT NULL').all() as { m: Buffer }[];
    for (const { m } of rows) {
      const id = wrappedRootKeyId(m) ?? 'not wrapped';
      counts[id] = (counts[id] ?? 0) + 1;
    }
    for (const name of ['root_key_check', 'audit_mac_key']) {
      const row = db.prepare('SELECT value FROM meta WHERE name = ?').get(name) as { value: string } | undefined;
      assert.ok(row, `meta ${name} exists`);
      const id = `${name}:${wrappedRootKeyId(Buffer.from(row.value, 'base64'))}`;
      counts[id] = (counts[id] ?? 0) + 1;
    }
    return counts;
  } finally {
    db.close();
  }
}

withSoftHsm('root-key rotation', (hsm: SoftHsm) => {
  describe('file → pkcs11, crash in the middle, resumed', () => {
    let kmsd: KmsdProcess;
    const hsmRoot = pkcs11Spec(hsm, uniqueLabel('kmsd-test-migrated'));
    const folderId = freshFolder();
    const messages: { keyId: string; ciphertext: string; plaintext: Buffer; aad: string }[] = [];
    let fileRoot: string;
    let versionCount = 0;

    before(async () => {
      // A deployment on the default file root key, with keys of every software algorithm and several versions.
      kmsd = await KmsdProcess.start({ auth: 'none' });
      fileRoot = `file:${join(kmsd.dataDir, 'root.key')}`;
      for (const alg of ['AES_128', 'AES_192', 'AES_256', 'AES_256'] as const) {
        const key = await createKey(kmsd, { folderId, defaultAlgorithm: alg });
        versionCount++;
        for (let v = 0; v < 3; v++) {
          const plaintext = Buffer.from(`${alg} ${key.id} v${v}`);
          const aad = `aad-${v}`;
          const enc = ok(await kmsd.call<EncryptResponse>('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64(plaintext), aadContext: b64(aad) }));
          messages.push({ keyId: key.id, ciphertext: enc.ciphertext, plaintext, aad });
          const dk = ok(await kmsd.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, { aadContext: b64(aad) }));
          messages.push({ keyId: key.id, ciphertext: dk.dataKeyCiphertext, plaintext: unb64(dk.dataKeyPlaintext!), aad });
          await rotate(kmsd, key.id);
          versionCount++;
        }
      }
      await kmsd.stop();
    });
    after(async () => {
      await kmsd?.dispose();
    });

    async function decryptAll(): Promise<void> {
      for (const m of messages) {
        const dec = ok(await kmsd.call<DecryptResponse>('POST', `/kms/v1/keys/${m.keyId}:decrypt`, { ciphertext: m.ciphertext, aadContext: b64(m.aad) }));
        assert.deepEqual(unb64(dec.plaintext), m.plaintext);
      }
    }

    it('the server restarts on the HSM root key with the file key as previous; new material is wrapped by the HSM', async () => {
      // Cache entries live 1 ms, so every request unwraps its material from the store again.
      await kmsd.restart({ rootKey: hsmRoot, args: ['--previous-root-key', fileRoot, '--cache-ttl-ms', '1'] });
      assert.match(kmsd.stderr, /a root-key rotation is not finished/);
      await decryptAll();
      const fresh = await createKey(kmsd, { folderId, defaultAlgorithm: 'AES_256' });
      versionCount++;
      const enc = ok(await kmsd.call<EncryptResponse>('POST', `/kms/v1/keys/${fresh.id}:encrypt`, { plaintext: b64('new') }));
      messages.push({ keyId: fresh.id, ciphertext: enc.ciphertext, plaintext: Buffer.from('new'), aad: '' });
      const counts = blobsByRootKey(kmsd.dataDir);
      const hsmId = Object.keys(counts).find((k) => k.startsWith('p11:'))!;
      const fileId = Object.keys(counts).find((k) => k.startsWith('sw:'))!;
      assert.equal(counts[hsmId], 1, `one new HSM-wrapped blob: ${JSON.stringify(counts)}`);
      assert.equal(counts[fileId], versionCount - 1);
    });

    it('a rotation killed after 5 rewraps leaves a mix that the running server still reads', async () => {
      const crashed = await rotateRootKey(['--data-dir', kmsd.dataDir, '--root-key', hsmRoot, '--previous-root-key', fileRoot], { KMSD_TEST_CRASH_AFTER_REWRAPS: '5' });
      assert.equal(crashed.signal, 'SIGKILL', `killed mid-way\n${crashed.stderr}`);
      assert.equal(crashed.stdout, '');
      const counts = blobsByRootKey(kmsd.dataDir);
      const hsmId = Object.keys(counts).find((k) => k.startsWith('p11:'))!;
      const fileId = Object.keys(counts).find((k) => k.startsWith('sw:'))!;
      assert.equal(counts[hsmId], 1 + 5, JSON.stringify(counts));
      assert.equal(counts[fileId], versionCount - 6);
      assert.equal(counts[`root_key_check:${fileId}`], 1, 'the check value moves only when everything else has');
      await decryptAll();
    });

    it('resumed while the server serves requests: it rewraps the rest, then the audit key and the check value', async () => {
      let stop = false;
      let served = 0;
      const traffic = (async () => {
        while (!stop) {
          await decryptAll();
          served++;
        }
      })();
      const resumed = await rotateRootKey(['--data-dir', kmsd.dataDir, '--root-key', hsmRoot, '--previous-root-key', fileRoot]);
      stop = true;
      await traffic;
      assert.equal(resumed.code, 0, resumed.stderr);
      const report = JSON.parse(resumed.stdout) as Record<string, unknown>;
      assert.equal(report.event, 'root-key-rotated');
      assert.equal(report.rewrapped, versionCount - 6);
      assert.equal(report.alreadyCurrent, 6);
      assert.equal(report.raced, 0);
      assert.deepEqual(report.metaRewrapped, ['audit_mac_key', 'root_key_check']);
      assert.ok(served >= 1, 'the server answered while the rotation ran');
      const counts = blobsByRootKey(kmsd.dataDir);
      assert.deepEqual(Object.keys(counts).sort(), [`${report.rootKey}`, `audit_mac_key:${report.rootKey}`, `root_key_check:${report.rootKey}`].sort());

      const again = await rotateRootKey(['--data-dir', kmsd.dataDir, '--root-key', hsmRoot, '--previous-root-key', fileRoot]);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual({ ...(JSON.parse(again.stdout) as object), alreadyCurrent: undefined }, { ...report, rewrapped: 0, alreadyCurrent: undefined, metaRewrapped: [] });
    });

    it('with the file key gone and only the HSM root key configured, every earlier ciphertext decrypts', async () => {
      await kmsd.stop();
      renameSync(join(kmsd.dataDir, 'root.key'), join(kmsd.dataDir, 'root.key.retired'));
      await kmsd.restart({ rootKey: hsmRoot, args: [] });
      assert.doesNotMatch(kmsd.stderr, /rotation is not finished/);
      await decryptAll();
      // The audit chain key followed the rotation too: the log still verifies.
      await kmsd.stop();
      const verify = await new Promise<Run>((resolve) => {
        const env: NodeJS.ProcessEnv = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KMSD_')) env[k] = v;
        const child = spawn(process.execPath, [KMSD_BIN, 'audit', 'verify', '--data-dir', kmsd.dataDir, '--root-key', hsmRoot], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
      assert.equal(verify.code, 0, `${verify.stdout}\n${verify.stderr}`);
      assert.match(verify.stdout, /audit log: OK/);
    });

    it('the retired file key alone no longer opens the data directory', async () => {
      renameSync(join(kmsd.dataDir, 'root.key.retired'), join(kmsd.dataDir, 'root.key'));
      const failed = await expectStartFailure({ dataDir: kmsd.dataDir, auth: 'none', rootKey: fileRoot });
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /is not the one this data directory was initialised with/);
    });
  });
});
