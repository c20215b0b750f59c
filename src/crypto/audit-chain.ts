import { createHmac, timingSafeEqual } from 'node:crypto';
import { canonicalBody, parseBody, type AuditEvent, type AuditHead, type StoredAuditRecord } from '../domain/audit.js';
import type { SecretBytes } from './secret-bytes.js';

// The audit log's hash chain. Each record's hash is HMAC-SHA256 over the previous hash and the
// record's canonical body, keyed by a secret that the database holds only wrapped by the root key:
// someone who can write the database but does not hold the root key cannot recompute the chain
// after editing, removing or reordering a record. The head (last seq and hash) is sealed the same
// way, so cutting records off the end shows too.

const RECORD_DOMAIN = Buffer.from('kmsd-audit-record-v1\u0000', 'utf8');
const HEAD_DOMAIN = Buffer.from('kmsd-audit-head-v1\u0000', 'utf8');
export const GENESIS_HASH = '0'.repeat(64);

function mac(key: SecretBytes, ...parts: Buffer[]): string {
  const h = createHmac('sha256', key.exposeSecret());
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

const recordHash = (key: SecretBytes, prev: string, body: string): string => mac(key, RECORD_DOMAIN, Buffer.from(prev, 'hex'), Buffer.from(body, 'utf8'));
const headMac = (key: SecretBytes, seq: number, hash: string): string => mac(key, HEAD_DOMAIN, Buffer.from(`${seq}:${hash}`, 'utf8'));

const sameHex = (a: string, b: string): boolean => {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
};

export interface SealedBatch {
  readonly records: readonly StoredAuditRecord[];
  readonly head: AuditHead;
}

/** Appends events after `head` (undefined for an empty log): numbers, hashes and seals them. */
export function sealBatch(key: SecretBytes, head: Pick<AuditHead, 'seq' | 'hash'> | undefined, events: readonly AuditEvent[]): SealedBatch {
  let seq = head?.seq ?? 0;
  let prev = head?.hash ?? GENESIS_HASH;
  const records: StoredAuditRecord[] = [];
  for (const e of events) {
    seq += 1;
    const body = canonicalBody({ ...e, seq });
    prev = recordHash(key, prev, body);
    records.push({ seq, body, hash: prev });
  }
  return { records, head: { seq, hash: prev, mac: headMac(key, seq, prev) } };
}

export type ChainProblem =
  | { readonly kind: 'altered'; readonly seq: number; readonly at: string }
  | { readonly kind: 'missing'; readonly afterSeq: number; readonly nextSeq: number; readonly at: string }
  | { readonly kind: 'out-of-order'; readonly seq: number; readonly at: string }
  | { readonly kind: 'truncated'; readonly lastSeq: number; readonly headSeq: number }
  | { readonly kind: 'head'; readonly detail: string };

/**
 * Checks records streamed in log order (database rows or lines of an export). `where(i)` names
 * the position of the i-th record for messages (a row, a line number).
 */
export class ChainVerifier {
  private seq = 0;
  private prev = GENESIS_HASH;
  private count = 0;
  readonly problems: ChainProblem[] = [];

  constructor(
    private readonly key: SecretBytes,
    /** For an export that starts in the middle of the log: the hash before its first record. */
    start?: { seq: number; hash: string },
  ) {
    if (start) {
      this.seq = start.seq;
      this.prev = start.hash;
    }
  }

  get records(): number {
    return this.count;
  }
  get lastSeq(): number {
    return this.seq;
  }

  /** Checks one record; carries on after a problem so that every problem is reported. */
  add(r: StoredAuditRecord, at: string): void {
    this.count++;
    const parsed = parseBody(r.body);
    if (parsed === undefined || parsed.seq !== r.seq || canonicalBody(parsed) !== r.body) {
      this.problems.push({ kind: 'altered', seq: r.seq, at });
    } else if (r.seq <= this.seq) {
      this.problems.push({ kind: 'out-of-order', seq: r.seq, at });
    } else if (r.seq !== this.seq + 1) {
      this.problems.push({ kind: 'missing', afterSeq: this.seq, nextSeq: r.seq, at });
    } else if (!sameHex(recordHash(this.key, this.prev, r.body), r.hash)) {
      this.problems.push({ kind: 'altered', seq: r.seq, at });
    }
    // Resynchronise on the stored record so one bad record is not reported for every later one.
    this.seq = Math.max(this.seq, r.seq);
    this.prev = r.hash;
  }

  /** Compares the end of the chain with the sealed head. */
  finish(head: AuditHead | undefined): void {
    if (head === undefined) {
      if (this.seq > 0) this.problems.push({ kind: 'head', detail: 'the log has records but no sealed head' });
      return;
    }
    if (!sameHex(headMac(this.key, head.seq, head.hash), head.mac)) {
      this.problems.push({ kind: 'head', detail: 'the sealed head was altered' });
      return;
    }
    if (head.seq > this.seq) this.problems.push({ kind: 'truncated', lastSeq: this.seq, headSeq: head.seq });
    else if (head.seq === this.seq && !sameHex(head.hash, this.prev)) this.problems.push({ kind: 'altered', seq: this.seq, at: 'the last record' });
    else if (head.seq < this.seq) this.problems.push({ kind: 'head', detail: `records after the sealed head (seq ${head.seq}) were added without the key` });
  }
}

export function describeProblem(p: ChainProblem): string {
  switch (p.kind) {
    case 'altered':
      return `record seq ${p.seq} (${p.at}) was altered: its hash does not match its content and the record before it`;
    case 'missing':
      return `records between seq ${p.afterSeq} and seq ${p.nextSeq} (${p.at}) are missing`;
    case 'out-of-order':
      return `record seq ${p.seq} (${p.at}) is out of order`;
    case 'truncated':
      return `the log ends at seq ${p.lastSeq} but the sealed head says ${p.headSeq}: records were removed from the end`;
    case 'head':
      return p.detail;
  }
}
