// `kmsd backup` and `kmsd restore` (DESIGN.md §2): a consistent snapshot of everything in the store,
// taken while a node serves; restored into an empty store of either kind; every ciphertext made
// before the backup decrypts on a server started over the restored store with the same root key;
// the file alone reveals no key material; a damaged file or a store that is not empty restores
// nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  b64,
  createKey,
  decrypt,
  encrypt,
  freshFolder,
  listVersions,
  ok,
  rotate,
  type DataKeyResponse,
  type KeyList,
  type OperationList,
} from '../helpers/api.js';
import { postgresArgs } from '../helpers/cluster.js';
import { expectStartFailure, KMSD_BIN, KmsdProcess, tempDir } from '../helpers/kmsd-process.js';
import { withTestPostgres } from '../helpers/postgres.js';

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built `kmsd` with `args`, none of the runner's KMSD_* variables, and `input` on stdin. */
function kmsd(args: readonly string[], input?: Buffer): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KMSD_')) env[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KMSD_BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(input);
  });
}

const KEY_ID = 'abjbackupseedkey0001';
const MATERIAL = Buffer.alloc(32, 0x5a);
MATERIAL.write('kmsd backup test material', 'utf8');

interface Sealed {
  readonly keyId: string;
  readonly ciphertext: string;
  readonly plaintext: string;
  readonly aadContext?: string;
}

/** Makes keys of every kind of history on `node` and ciphertexts under each of their versions. */
async function fill(node: KmsdProcess, sealed: Sealed[], tag: string): Promise<string> {
  const folderId = freshFolder();
  const plain = (i: number) => b64(`${tag} secret ${i}`);
  const a = await createKey(node, { folderId, name: `${tag}-a`, labels: { tag }, rotationPeriod: '2592000s' });
  const b = await createKey(node, { folderId, defaultAlgorithm: 'AES_128', deletionProtection: true });
  for (const key of [a, b]) {
    for (let v = 0; v < 3; v++) {
      for (let i = 0; i < 2; i++) {
        const aadContext = b64(`aad-${i}`);
        const p = plain(sealed.length);
        const res = ok(await node.call<{ ciphertext: string }>('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: p, aadContext }));
        sealed.push({ keyId: key.id, ciphertext: res.ciphertext, plaintext: p, aadContext });
      }
      const dk = ok(await node.call<DataKeyResponse>('POST', `/kms/v1/keys/${key.id}:generateDataKey`, {}));
      sealed.push({ keyId: key.id, ciphertext: dk.dataKeyCiphertext, plaintext: dk.dataKeyPlaintext! });
      if (v < 2) await rotate(node, key.id);
    }
  }
  // A key that is gone from the API but not yet purged travels too.
  const gone = await createKey(node, { folderId });
  ok(await node.call('DELETE', `/kms/v1/keys/${gone.id}`));
  return folderId;
}

/** Everything the API shows of the folders and keys, to compare two servers. */
async function visible(node: KmsdProcess, folders: readonly string[], keyIds: readonly string[]): Promise<unknown> {
  const out: Record<string, unknown> = {};
  for (const f of folders) out[f] = ok(await node.call<KeyList>('GET', `/kms/v1/keys?folderId=${f}&pageSize=1000`));
  for (const id of keyIds) {
    out[`${id}/versions`] = await listVersions(node, id);
    out[`${id}/operations`] = ok(await node.call<OperationList>('GET', `/kms/v1/keys/${id}/operations?pageSize=1000`));
  }
  return out;
}

async function assertAllDecrypt(node: KmsdProcess, sealed: readonly Sealed[]): Promise<void> {
  for (const s of sealed) {
    const res = await decrypt(node, s.keyId, s.ciphertext, s.aadContext === undefined ? {} : { aadContext: s.aadContext });
    assert.equal(res.plaintext, s.plaintext);
  }
}

await withTestPostgres('kmsd backup and restore', (db) => {
  describe('SQLite → PostgreSQL → SQLite', () => {
    const dir = tempDir('kmsd-backup-');
    const sqliteDir = join(dir, 'sqlite');
    const rootKeyFile = join(sqliteDir, 'root.key');
    const sealed: Sealed[] = [];
    const folders: string[] = [];
    let keyIds: string[] = [];
    let source: KmsdProcess;
    let pgUrl: string;
    let pgSchema: string;
    let before1: unknown;

    before(async () => {
      const seed = join(dir, 'seed.json');
      writeFileSync(seed, JSON.stringify({ keys: [{ id: KEY_ID, folderId: 'b1gbackup', defaultAlgorithm: 'AES_256', versions: [{ material: MATERIAL.toString('base64') }] }] }));
      source = await KmsdProcess.start({ auth: 'iam', dataDir: sqliteDir, seed });
      folders.push(await fill(source, sealed, 'sqlite'), 'b1gbackup');
      const seeded = await encrypt(source, KEY_ID, 'seeded');
      sealed.push({ keyId: KEY_ID, ciphertext: seeded.ciphertext, plaintext: b64('seeded') });
      keyIds = [...new Set(sealed.map((s) => s.keyId))];
      before1 = await visible(source, folders, keyIds);
      ({ url: pgUrl, schema: pgSchema } = await db.freshSchema());
    });
    after(async () => {
      await source?.dispose();
    });

    const backupFile = join(dir, 'from-sqlite.kmsdbackup');

    it('backs up a serving SQLite node into a file of mode 0600 that holds no key material in the clear', async () => {
      const res = await kmsd(['backup', '--data-dir', sqliteDir, '--out', backupFile]);
      assert.equal(res.code, 0, res.stderr);
      const summary = JSON.parse(res.stdout) as { event: string; file: string; counts: Record<string, number> };
      assert.equal(summary.event, 'backup');
      assert.equal(summary.file, backupFile);
      assert.equal(summary.counts.key, 4);
      assert.equal(summary.counts.version, 2 * 3 + 2);
      assert.equal(statSync(backupFile).mode & 0o777, 0o600);
      const text = readFileSync(backupFile);
      for (const form of [MATERIAL, Buffer.from(MATERIAL.toString('base64')), Buffer.from(MATERIAL.toString('hex'))]) {
        assert.equal(text.indexOf(form), -1, 'the seeded key material is nowhere in the file');
      }
      const token = readFileSync(join(sqliteDir, 'admin.token'), 'utf8').trim();
      assert.equal(text.indexOf(token.split('.').at(-1)!), -1, 'no token secret in the file');

      const again = await kmsd(['backup', '--data-dir', sqliteDir, '--out', backupFile]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /exists; a backup never overwrites a file/);
    });

    it('restores it into an empty PostgreSQL schema, once', async () => {
      const res = await kmsd(['restore', '--in', backupFile, ...postgresArgs(pgUrl)]);
      assert.equal(res.code, 0, res.stderr);
      const summary = JSON.parse(res.stdout) as { event: string; backupSource: string; counts: Record<string, number> };
      assert.equal(summary.event, 'restore');
      assert.equal(summary.backupSource, 'sqlite');
      assert.equal(summary.counts.version, 8);

      const twice = await kmsd(['restore', '--in', backupFile, ...postgresArgs(pgUrl)]);
      assert.equal(twice.code, 1);
      assert.match(twice.stderr, /the store is not empty/);
      const keys = await db.query<{ n: number }>(pgSchema, 'SELECT count(*)::int AS n FROM keys');
      assert.equal(keys[0]?.n, 4, 'the refused restore added nothing');
    });

    let restored: KmsdProcess | undefined;
    after(async () => {
      await restored?.dispose();
    });

    it('a PostgreSQL node with the same root key serves it all: every ciphertext decrypts, the old token works', async () => {
      restored = await KmsdProcess.start({ auth: 'iam', rootKey: `file:${rootKeyFile}`, args: postgresArgs(pgUrl) });
      await assertAllDecrypt(restored, sealed);
      assert.deepEqual(await visible(restored, folders, keyIds), before1);
      const token = readFileSync(join(sqliteDir, 'admin.token'), 'utf8').trim();
      ok(await restored.call('GET', `/kms/v1/keys/${KEY_ID}`, undefined, { authorization: `Bearer ${token}` }));
    });

    it('the audit chain came along whole: kmsd audit verify passes on the restored store', async () => {
      const res = await kmsd(['audit', 'verify', '--root-key', `file:${rootKeyFile}`, '--data-dir', join(tempDir(), 'data'), ...postgresArgs(pgUrl).slice(0, 4)]);
      assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout, /audit log: OK, \d+ records, chain intact/);
    });

    it('without that root key the restored store does not start', async () => {
      const res = await expectStartFailure({ dataDir: join(tempDir(), 'data'), args: postgresArgs(pgUrl) });
      assert.equal(res.code, 1);
      assert.match(res.stderr, /root key file .* does not exist, but the store already holds keys wrapped by a root key/);
    });

    it('backs up the serving PostgreSQL node, with what was added since, and restores it into a new SQLite data directory', async () => {
      assert.ok(restored);
      folders.push(await fill(restored, sealed, 'postgres'));
      keyIds = [...new Set(sealed.map((s) => s.keyId))];
      const expected = await visible(restored, folders, keyIds);

      const pgBackup = await kmsd(['backup', '--out', '-', ...postgresArgs(pgUrl)]);
      assert.equal(pgBackup.code, 0, pgBackup.stderr);
      assert.equal((JSON.parse(pgBackup.stderr) as { file: unknown }).file, null, 'with --out - the summary goes to stderr');
      const newDir = join(tempDir(), 'data');
      const res = await kmsd(['restore', '--in', '-', '--data-dir', newDir], Buffer.from(pgBackup.stdout));
      assert.equal(res.code, 0, res.stderr);
      assert.equal((JSON.parse(res.stdout) as { backupSource: string }).backupSource, 'postgres');

      const back = await KmsdProcess.start({ auth: 'iam', dataDir: newDir, rootKey: `file:${rootKeyFile}` });
      try {
        await assertAllDecrypt(back, sealed);
        assert.deepEqual(await visible(back, folders, keyIds), expected);
      } finally {
        await back.dispose();
      }
    });

    it('restores nothing from a damaged file', async () => {
      const { url, schema } = await db.freshSchema();
      const damaged = join(dir, 'damaged.kmsdbackup');
      const lines = readFileSync(backupFile, 'utf8').split('\n');
      writeFileSync(damaged, lines.slice(0, -3).join('\n'));
      const res = await kmsd(['restore', '--in', damaged, ...postgresArgs(url)]);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /kmsd: the backup is truncated/);
      const rows = await db.query<{ n: number }>(schema, 'SELECT (SELECT count(*) FROM keys) + (SELECT count(*) FROM meta) + (SELECT count(*) FROM principals) AS n');
      assert.equal(Number(rows[0]?.n), 0);
    });
  });

  it('backup and restore need their file option and a usable store', async () => {
    const missing = await kmsd(['backup']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /--out/);
    const noDb = await kmsd(['backup', '--data-dir', join(tempDir(), 'nothing'), '--out', join(tempDir(), 'x')]);
    assert.equal(noDb.code, 1);
    assert.match(noDb.stderr, /there is no database to back up/);
    const noFile = await kmsd(['restore', '--in', join(tempDir(), 'absent'), '--data-dir', join(tempDir(), 'd')]);
    assert.equal(noFile.code, 1);
    assert.match(noFile.stderr, /there is no backup at/);
    const badUrl = await kmsd(['backup', '--store', 'postgres', '--out', '-']);
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /--postgres-url \(KMSD_POSTGRES_URL\): required/);
  });
});
