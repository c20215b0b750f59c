import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { auditEvent, auditSeal, createKey, makeOperation, makeVersion, material, T0, updateKey } from '../../test/contract/store.contract.js';
import { openSqliteStore } from '../adapters/store-sqlite/sqlite-store.js';
import { DAY_MS, scheduleDestruction, destroy } from '../domain/key.js';
import type { SnapshotRecord, Store } from '../ports/store.js';
import { BackupFormatError, readBackup, writeBackup } from './backup-file.js';

// The backup file format: what writeBackup writes, and that readBackup gives back exactly the
// records of a whole, unaltered file and refuses anything else before a restore commits.

async function populated(): Promise<Store> {
  const store = openSqliteStore(':memory:');
  await store.initMeta('root_key_check', 'check');
  await store.createPrincipal({ id: 'ajeadmin0000000000001', type: 'userAccount', name: 'admin', createdAt: T0 });
  await store.createToken({ id: 'tkn00000000000000001', principalId: 'ajeadmin0000000000001', secretHash: material('secret'), createdAt: T0, expiresAt: T0 + DAY_MS });
  const { key } = await createKey(store, { labels: { team: 'a' }, rotationPeriodMs: DAY_MS });
  const old = makeVersion(key.id);
  const k = await updateKey(store, key, key, { insertVersions: [{ version: old, wrappedMaterial: material(old.id) }] });
  await updateKey(store, k, k, {
    updateVersions: [destroy(scheduleDestruction(k, old, T0, DAY_MS))],
    operation: makeOperation(key.id, { metadata: { type: 'ScheduleSymmetricKeyVersionDestructionMetadata', keyId: key.id, versionId: old.id, destroyAt: T0 + DAY_MS } }),
  });
  await store.changeBindings({
    scope: { type: 'key', id: key.id },
    deltas: [{ action: 'ADD', binding: { roleId: 'kms.keys.encrypter', subject: { type: 'userAccount', id: 'ajeadmin0000000000001' } } }],
    audit: { events: [auditEvent(1)], seal: auditSeal },
  });
  return store;
}

async function backupText(store: Store): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await writeBackup(store, out, 'sqlite', () => new Date(T0));
  out.end();
  return Buffer.concat(chunks).toString('utf8');
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const read = (text: string) => collect(readBackup(Readable.from([text])));

async function refuses(text: string, message: RegExp): Promise<void> {
  await assert.rejects(read(text), (e: unknown) => {
    assert.ok(e instanceof BackupFormatError, String(e));
    assert.match(e.message, message);
    return true;
  });
}

describe('backup file', () => {
  it('is JSON lines between a header and a checksummed end, holding the snapshot exactly', async () => {
    const store = await populated();
    const text = await backupText(store);
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string });
    assert.deepEqual(lines[0], { type: 'header', format: 'kmsd-backup', version: 1, createdAt: new Date(T0).toISOString(), source: 'sqlite' });
    assert.deepEqual(
      lines.slice(1).map((l) => l.type),
      ['meta', 'principal', 'token', 'key', 'version', 'version', 'operation', 'binding', 'audit', 'auditHead', 'end'],
    );
    assert.deepEqual((lines.at(-1) as unknown as { counts: unknown }).counts, {
      meta: 1,
      principal: 1,
      token: 1,
      key: 1,
      version: 2,
      operation: 1,
      binding: 1,
      audit: 1,
      auditHead: 1,
    });
    // Bytes travel as base64 of what the store holds: wrapped material, token hashes.
    assert.ok(text.includes(material('secret').toString('base64')));
    assert.deepEqual(await read(text), await collect(store.exportSnapshot()));
  });

  it('restores into an empty store as it was', async () => {
    const source = await populated();
    const target = openSqliteStore(':memory:');
    await target.importSnapshot(readBackup(Readable.from([await backupText(source)])));
    assert.deepEqual(await collect(target.exportSnapshot()), await collect(source.exportSnapshot()));
  });

  it('refuses a truncated file, whatever line it ends at', async () => {
    const lines = (await backupText(await populated())).split('\n');
    for (let keep = 1; keep < lines.length - 2; keep++) {
      await refuses(`${lines.slice(0, keep).join('\n')}\n`, /truncated/);
    }
    await refuses('', /empty/);
  });

  it('refuses a file altered anywhere: a changed, dropped, repeated or reordered line', async () => {
    const text = await backupText(await populated());
    const lines = text.trimEnd().split('\n');
    await refuses(text.replace('"team":"a"', '"team":"b"'), /altered/);
    await refuses(`${[...lines.slice(0, 3), ...lines.slice(4)].join('\n')}\n`, /altered|holds/);
    await refuses(`${[...lines.slice(0, 4), lines[3], ...lines.slice(4)].join('\n')}\n`, /altered|holds/);
    await refuses(`${[lines[0], lines[2], lines[1], ...lines.slice(3)].join('\n')}\n`, /altered/);
    await refuses(`${text}{"type":"meta","name":"x","value":"y"}\n`, /line 13: data after the end/);
  });

  it('refuses a restore of a damaged file without writing anything', async () => {
    const text = (await backupText(await populated())).replace('"team":"a"', '"team":"b"');
    const target = openSqliteStore(':memory:');
    await assert.rejects(target.importSnapshot(readBackup(Readable.from([text]))), BackupFormatError);
    assert.deepEqual(await collect(target.exportSnapshot()), []);
  });

  it('refuses what is not a kmsd backup of a version it reads', async () => {
    const text = await backupText(await populated());
    await refuses('{"hello":"world"}\n', /line 1: not a kmsd backup/);
    await refuses('not json\n', /line 1: not JSON/);
    await refuses(text.replace('"version":1,', '"version":2,'), /format version 2; this kmsd reads version 1/);
  });

  it('refuses unknown and malformed records, naming the line and field but never the value', async () => {
    const text = await backupText(await populated());
    const lines = text.trimEnd().split('\n');
    const withLine = (n: number, line: string) => `${[...lines.slice(0, n), line, ...lines.slice(n)].join('\n')}\n`;
    await refuses(withLine(1, '{"type":"grant","grant":{}}'), /line 2: unknown record type "grant"; was it written by a newer kmsd\?/);
    await refuses(withLine(1, '{"type":"meta","name":"x"}'), /line 2: malformed meta record \(value: /);
    const badMaterial = lines.find((l) => l.includes('"wrappedMaterial"'))!.replace(/"wrappedMaterial":"[^"]*"/, '"wrappedMaterial":"s3cr3t!!"');
    const at = lines.findIndex((l) => l.includes('"wrappedMaterial"'));
    await assert.rejects(read(`${[...lines.slice(0, at), badMaterial, ...lines.slice(at + 1)].join('\n')}\n`), (e: unknown) => {
      assert.ok(e instanceof BackupFormatError);
      assert.match(e.message, new RegExp(`line ${at + 1}: malformed version record \\(wrappedMaterial: not base64\\)`));
      assert.ok(!e.message.includes('s3cr3t'));
      return true;
    });
  });

  it('carries every record type a snapshot can hold', async () => {
    const records: SnapshotRecord[] = await collect((await populated()).exportSnapshot());
    assert.deepEqual(new Set(records.map((r) => r.type)), new Set(['meta', 'principal', 'token', 'key', 'version', 'operation', 'binding', 'audit', 'auditHead']));
  });
});
