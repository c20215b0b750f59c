import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { ChainVerifier, describeProblem } from '../../crypto/audit-chain.js';
import type { SecretBytes } from '../../crypto/secret-bytes.js';
import { canonicalBody, parseBody } from '../../domain/audit.js';
import type { AuditStore } from '../../ports/store.js';

// `kmsd audit verify`: walks the audit chain of a store (or of an exported JSON-lines file) and
// says where it was edited, cut, reordered or truncated.

export interface VerifyReport {
  readonly records: number;
  readonly lastSeq: number;
  readonly problems: readonly string[];
}

const BATCH = 1000;

export async function verifyStoredAudit(store: Pick<AuditStore, 'scanAudit' | 'getAuditHead'>, macKey: SecretBytes): Promise<VerifyReport> {
  const v = new ChainVerifier(macKey);
  // The head is read first: records appended while we walk come after it and are not a problem.
  const head = await store.getAuditHead();
  let after = 0;
  for (;;) {
    const batch = await store.scanAudit(after, BATCH);
    for (const r of batch) {
      if (head !== undefined && r.seq > head.seq) break;
      v.add(r, `row seq ${r.seq}`);
    }
    if (batch.length < BATCH || (head !== undefined && batch.at(-1)!.seq >= head.seq)) break;
    after = batch.at(-1)!.seq;
  }
  v.finish(head);
  return { records: v.records, lastSeq: v.lastSeq, problems: v.problems.map(describeProblem) };
}

/**
 * Verifies an unfiltered export (`GET /kmsd/v1/audit:export`): every line is a record's canonical
 * fields plus its hash. Without the sealed head of the store the end of a file cannot be checked,
 * so a file cut at its end verifies as a shorter log; compare its last seq with the live log.
 */
export async function verifyExportFile(path: string, macKey: SecretBytes): Promise<VerifyReport> {
  const v = new ChainVerifier(macKey);
  const extra: string[] = [];
  let line = 0;
  for await (const text of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    let hash: string;
    let body: string;
    try {
      const j = JSON.parse(text) as Record<string, unknown>;
      hash = typeof j.hash === 'string' ? j.hash : '';
      delete j.hash;
      const parsed = parseBody(JSON.stringify(j));
      body = parsed === undefined ? '' : canonicalBody(parsed);
    } catch {
      extra.push(`line ${line} is not JSON`);
      continue;
    }
    const seq = Number((JSON.parse(text) as { seq?: unknown }).seq);
    v.add({ seq: Number.isSafeInteger(seq) ? seq : -1, body, hash }, `line ${line}`);
  }
  return { records: v.records, lastSeq: v.lastSeq, problems: [...extra, ...v.problems.map(describeProblem)] };
}
