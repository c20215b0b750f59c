import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { pino } from 'pino';
import { loadServeConfig } from '../../src/config/config.js';
import { startKmsd, type RunningKmsd } from '../../src/main.js';

// Random and malformed input fed to the real REST layer (a listening server, in this process so
// the store can be inspected): only clean 4xx answers, never a 5xx, the server stays up, and
// nothing is written but audit records — crypto calls change no key, and rejected mutations change
// nothing; each crypto call leaves exactly one audit record.

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

let dir: string;
let kmsd: RunningKmsd;
let base: string;
let keyId: string;
let versionId: string;
let goodCiphertext: Buffer;

async function call(method: string, path: string, body?: string, contentType = 'application/json'): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${base}${path}`, {
    method,
    ...(body === undefined ? {} : { body, headers: { 'content-type': contentType } }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    assert.fail(`${method} ${path} answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, json };
}

/** Every row of every table but the audit log's: the store's whole observable state. */
function snapshot(): string {
  const db = new Database(join(dir, 'kmsd.db'), { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'audit%' ORDER BY name").all() as { name: string }[];
    return JSON.stringify(tables.map(({ name }) => [name, db.prepare(`SELECT * FROM "${name}" ORDER BY 1`).all()]), (_k, v: unknown) =>
      Buffer.isBuffer(v) ? v.toString('base64') : v,
    );
  } finally {
    db.close();
  }
}

function auditRecords(): number {
  const db = new Database(join(dir, 'kmsd.db'), { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM audit_log').pluck().get() as number;
  } finally {
    db.close();
  }
}

function assertCleanError(r: { status: number; json: unknown }, what: string): void {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: expected a 4xx, got ${r.status} ${JSON.stringify(r.json)}`);
  const body = r.json as { code?: unknown; message?: unknown; details?: unknown };
  assert.equal(typeof body.code, 'number', `${what}: error body has a numeric code`);
  assert.equal(typeof body.message, 'string', `${what}: error body has a message`);
  assert.ok(Array.isArray(body.details), `${what}: error body has details`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kmsd-fuzz-'));
  const config = loadServeConfig({ dataDir: dir, restAddr: '127.0.0.1:0', grpcAddr: '127.0.0.1:0', auth: 'none', logLevel: 'silent' }, {});
  kmsd = await startKmsd(config, pino({ level: 'silent' }));
  base = `http://${kmsd.restAddress}`;
  const created = await call('POST', '/kms/v1/keys', JSON.stringify({ folderId: 'b1gfuzz', defaultAlgorithm: 'AES_256' }));
  assert.equal(created.status, 200);
  const md = (created.json as { metadata: { keyId: string; primaryVersionId: string } }).metadata;
  keyId = md.keyId;
  versionId = md.primaryVersionId;
  const enc = await call('POST', `/kms/v1/keys/${keyId}:encrypt`, JSON.stringify({ plaintext: Buffer.from('fuzz me').toString('base64') }));
  assert.equal(enc.status, 200);
  goodCiphertext = Buffer.from((enc.json as { ciphertext: string }).ciphertext, 'base64');
});

after(async () => {
  await kmsd?.close();
  rmSync(dir, { recursive: true, force: true });
});

const cryptoVerbs = ['encrypt', 'decrypt', 'reEncrypt', 'generateDataKey'] as const;

/** Objects that use the real field names with values of every JSON type, plus random keys. */
const fieldish = fc.dictionary(
  fc.oneof(
    fc.constantFrom('keyId', 'versionId', 'aadContext', 'plaintext', 'ciphertext', 'sourceKeyId', 'sourceAadContext', 'dataKeySpec', 'skipPlaintext', 'key_id', 'aad_context'),
    fc.string({ maxLength: 12 }),
  ),
  fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.base64String({ maxLength: 64 }), fc.constantFrom('AES_256', 'AES_128', 'GOST_R_3412_2015_K', 7, -1)),
  { maxKeys: 6 },
);

describe('REST layer under random input', () => {
  it('crypto endpoints: random bodies give 200 or a clean 4xx, and write nothing but one audit record each', async () => {
    const before = snapshot();
    const recordsBefore = auditRecords();
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...cryptoVerbs), fc.oneof(fieldish, fc.jsonValue({ maxDepth: 3 })), async (verb, body) => {
        calls++;
        const r = await call('POST', `/kms/v1/keys/${keyId}:${verb}`, JSON.stringify(body));
        if (r.status !== 200) assertCleanError(r, `${verb} ${JSON.stringify(body).slice(0, 100)}`);
      }),
      { numRuns: RUNS },
    );
    assert.equal(snapshot(), before, 'crypto calls must not change the store');
    assert.equal(auditRecords() - recordsBefore, calls, 'one audit record per call');
  });

  it('decrypt: random bytes and tampered ciphertexts all fail with the one invalid-ciphertext error', async () => {
    const first = await call('POST', `/kms/v1/keys/${keyId}:decrypt`, JSON.stringify({ ciphertext: Buffer.from('x').toString('base64') }));
    assertCleanError(first, 'decrypt x');
    const expected = first.json as { code: number; message: string };
    const tampered = fc
      .tuple(fc.nat(goodCiphertext.length * 8 - 1), fc.nat(goodCiphertext.length))
      .map(([bit, cut]) => {
        const b = Buffer.from(goodCiphertext);
        b[bit >> 3]! ^= 1 << (bit & 7);
        return cut === 0 ? b : b.subarray(0, cut);
      });
    const arbitrary = fc.uint8Array({ minLength: 1, maxLength: 200 }).map((u) => Buffer.from(u));
    await fc.assert(
      fc.asyncProperty(fc.oneof(tampered, arbitrary), fc.option(fc.uint8Array({ maxLength: 16 })), async (ciphertext, aad) => {
        const body = { ciphertext: ciphertext.toString('base64'), ...(aad ? { aadContext: Buffer.from(aad).toString('base64') } : {}) };
        const r = await call('POST', `/kms/v1/keys/${keyId}:decrypt`, JSON.stringify(body));
        if (r.status === 200) {
          // Only the untouched ciphertext with its (empty) AAD may decrypt.
          assert.ok(ciphertext.equals(goodCiphertext) && (!aad || aad.length === 0), 'only the genuine ciphertext decrypts');
          return;
        }
        assertCleanError(r, 'decrypt');
        const got = r.json as { code: number; message: string };
        assert.deepEqual({ code: got.code, message: got.message }, { code: expected.code, message: expected.message });
      }),
      { numRuns: RUNS },
    );
  });

  it('every endpoint: malformed JSON, wrong content types and junk paths give a clean 4xx and change nothing', async () => {
    const before = snapshot();
    const paths = fc.constantFrom(
      '/kms/v1/keys',
      `/kms/v1/keys/${keyId}`,
      `/kms/v1/keys/${keyId}:rotate`,
      `/kms/v1/keys/${keyId}:setPrimaryVersion`,
      `/kms/v1/keys/${keyId}:scheduleVersionDestruction`,
      `/kms/v1/keys/${keyId}:encrypt`,
      `/kms/v1/keys/${keyId}:nonsense`,
      `/kms/v1/keys/${keyId}/versions`,
      '/operations/abc',
      '/kms/v1/../etc/passwd',
      '/%E0%A4%A',
    );
    const badBodies = fc.oneof(
      fc.string({ maxLength: 40 }).filter((s) => {
        try {
          const v: unknown = JSON.parse(s);
          return v === null || typeof v !== 'object';
        } catch {
          return s.trim() !== '';
        }
      }),
      fc.constantFrom('{', '{"folderId":', '[]', '[1,2]', 'null', '"str"', '{"folderId":"b1g","defaultAlgorithm":"AES_256",}', '\u0000'),
      fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify({ unknownField: v })),
    );
    const contentTypes = fc.constantFrom('application/json', 'text/xml', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/json; charset=utf-8');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('POST', 'PATCH', 'DELETE', 'PUT'), paths, badBodies, contentTypes, async (method, path, body, type) => {
        const r = await call(method, path, body, type);
        assertCleanError(r, `${method} ${path} ${type} ${JSON.stringify(body).slice(0, 60)}`);
      }),
      { numRuns: RUNS },
    );
    assert.equal(snapshot(), before, 'rejected requests must not change the store');
  });

  it('an oversized body is refused cleanly and the server keeps serving', async () => {
    const huge = JSON.stringify({ plaintext: Buffer.alloc(600_000, 7).toString('base64') });
    const r = await call('POST', `/kms/v1/keys/${keyId}:encrypt`, huge);
    assertCleanError(r, 'oversized body');
    const ok = await call('GET', `/kms/v1/keys/${keyId}`);
    assert.equal(ok.status, 200);
    assert.equal((ok.json as { primaryVersion: { id: string } }).primaryVersion.id, versionId);
  });
});
