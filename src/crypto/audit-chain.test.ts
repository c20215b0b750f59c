import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { AuditEvent, StoredAuditRecord } from '../domain/audit.js';
import { ChainVerifier, describeProblem, sealBatch } from './audit-chain.js';
import { SecretBytes } from './secret-bytes.js';

// The audit hash chain: sealing numbers and chains records; the verifier finds every kind of
// tampering a database writer without the key can do, and says where.

const key = new SecretBytes(randomBytes(32));
const event = (i: number): AuditEvent => ({
  time: Date.UTC(2026, 10, 28, 0, 0, i),
  event: 'yandex.cloud.audit.kms.Encrypt',
  method: 'yandex.cloud.kms.v1.SymmetricCryptoService/Encrypt',
  subject: { type: 'serviceAccount', id: `aje${i}` },
  keyId: 'abjkey',
  code: i % 3 === 0 ? 7 : 0,
  requestId: `req-${i}`,
  peer: '127.0.0.1',
  transport: 'rest',
});

function log(n: number) {
  const first = sealBatch(key, undefined, [1, 2, 3].map(event));
  const rest = sealBatch(key, first.head, Array.from({ length: n - 3 }, (_, i) => event(i + 4)));
  return { records: [...first.records, ...rest.records], head: rest.head };
}

function check(records: readonly StoredAuditRecord[], head = log(10).head, k = key): string[] {
  const v = new ChainVerifier(k);
  records.forEach((r, i) => v.add(r, `row ${i + 1}`));
  v.finish(head);
  return v.problems.map(describeProblem);
}

describe('audit chain', () => {
  it('numbers records across batches and verifies a whole log', () => {
    const { records, head } = log(10);
    assert.deepEqual(records.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(head.seq, 10);
    assert.deepEqual(check(records, head), []);
  });

  it('finds an edited record', () => {
    const { records, head } = log(10);
    const edited = records.map((r) => (r.seq === 6 ? { ...r, body: r.body.replace('"code":7', '"code":0').replace('PERMISSION_DENIED', 'OK') } : r));
    assert.equal(records[5]!.body.includes('"code":7'), true);
    assert.deepEqual(check(edited, head), ['record seq 6 (row 6) was altered: its hash does not match its content and the record before it']);
  });

  it('finds a removed record', () => {
    const { records, head } = log(10);
    assert.deepEqual(check(records.filter((r) => r.seq !== 4), head), ['records between seq 3 and seq 5 (row 4) are missing']);
  });

  it('finds reordered records', () => {
    const { records, head } = log(10);
    const swapped = [...records];
    [swapped[4], swapped[5]] = [swapped[5]!, swapped[4]!];
    assert.ok(check(swapped, head).some((p) => /out of order/.test(p)));
    // Bodies moved between positions while the seq column stays: the body no longer matches its seq.
    const moved = records.map((r, i) => (i === 4 ? { ...records[5]!, seq: 5 } : i === 5 ? { ...records[4]!, seq: 6 } : r));
    assert.ok(check(moved, head).some((p) => /seq 5 .*altered/.test(p)));
  });

  it('finds a truncated log and a forged head', () => {
    const { records, head } = log(10);
    assert.deepEqual(check(records.slice(0, 7), head), ['the log ends at seq 7 but the sealed head says 10: records were removed from the end']);
    assert.deepEqual(check(records.slice(0, 7), { seq: 7, hash: records[6]!.hash, mac: head.mac }), ['the sealed head was altered']);
  });

  it('a recomputed chain without the key does not verify, and neither does a log under another key', () => {
    const { records, head } = log(10);
    const otherKey = new SecretBytes(randomBytes(32));
    assert.ok(check(records, head, otherKey).length > 0);
    const forged = sealBatch(otherKey, undefined, records.map((r) => event(r.seq)));
    assert.ok(check(forged.records, forged.head).length > 0);
  });
});
