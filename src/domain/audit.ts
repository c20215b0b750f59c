import { Code } from '../errors/kms-error.js';

// Audit records (SPEC.md §10; issue 4). One record per call, allowed or denied: who, what, on which
// key and version, with which outcome, from where. Never plaintext, key material, AAD or tokens:
// a record only holds the fields below, and every string in it is an id, a name or an address.

export type AuditTransport = 'rest' | 'grpc' | 'system';

export interface AuditEvent {
  readonly time: number;
  /** `yandex.cloud.audit.kms.<Event>` for the KMS API (SPEC.md §10), `kmsd.<Event>` for kmsd's own API. */
  readonly event: string;
  /** The full method name (`yandex.cloud.kms.v1.SymmetricCryptoService/Encrypt`) or the REST route. */
  readonly method: string;
  readonly subject: { readonly type: string; readonly id: string };
  readonly folderId?: string;
  readonly keyId?: string;
  readonly versionId?: string;
  /** Another resource the call names: an operation, a principal, a token id, a folder. */
  readonly resourceId?: string;
  readonly code: Code | 0;
  readonly requestId: string;
  readonly peer: string;
  readonly transport: AuditTransport;
}

export interface AuditRecord extends AuditEvent {
  readonly seq: number;
}

/** A record as stored: its canonical body and its chain hash (hex). */
export interface StoredAuditRecord {
  readonly seq: number;
  readonly body: string;
  readonly hash: string;
}

/** The end of the chain as last written, sealed so that a truncation of the log shows. */
export interface AuditHead {
  readonly seq: number;
  readonly hash: string;
  readonly mac: string;
}

export interface AuditFilter {
  /** Inclusive. */
  readonly from?: number;
  /** Exclusive. */
  readonly to?: number;
  readonly subjectId?: string;
  readonly keyId?: string;
  /** 'ok', 'error', or a status name such as PERMISSION_DENIED. */
  readonly outcome?: string;
}

const CODE_NAMES: Readonly<Record<number, string>> = {
  0: 'OK',
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};

export const codeName = (code: number): string => CODE_NAMES[code] ?? String(code);
export const codeFromName = (name: string): number | undefined => {
  const found = Object.entries(CODE_NAMES).find(([, n]) => n === name);
  return found ? Number(found[0]) : undefined;
};

/** Ids a caller sent may be anything; a record keeps at most this much of each. */
const MAX_FIELD = 128;
const clip = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s.length > MAX_FIELD ? `${s.slice(0, MAX_FIELD)}…` : s);

/**
 * The canonical body of a record: JSON with a fixed key order, so the same record always has the
 * same bytes — the chain hash is computed over these bytes, and an export can be re-verified.
 */
export function canonicalBody(r: AuditRecord): string {
  const o: Record<string, unknown> = {
    v: 1,
    seq: r.seq,
    time: new Date(r.time).toISOString(),
    event: r.event,
    method: r.method,
    subject: { type: r.subject.type, id: r.subject.id },
  };
  for (const [k, v] of [
    ['folderId', clip(r.folderId)],
    ['keyId', clip(r.keyId)],
    ['versionId', clip(r.versionId)],
    ['resourceId', clip(r.resourceId)],
  ] as const) {
    if (v !== undefined) o[k] = v;
  }
  o.outcome = codeName(r.code);
  o.code = r.code;
  o.requestId = clip(r.requestId) ?? '';
  o.peer = clip(r.peer) ?? '';
  o.transport = r.transport;
  return JSON.stringify(o);
}

interface BodyJson {
  v: number;
  seq: number;
  time: string;
  event: string;
  method: string;
  subject: { type: string; id: string };
  folderId?: string;
  keyId?: string;
  versionId?: string;
  resourceId?: string;
  outcome: string;
  code: number;
  requestId: string;
  peer: string;
  transport: AuditTransport;
}

/** Parses a canonical body back into a record; undefined when it is not one. */
export function parseBody(body: string): AuditRecord | undefined {
  let j: BodyJson;
  try {
    j = JSON.parse(body) as BodyJson;
  } catch {
    return undefined;
  }
  if (j === null || typeof j !== 'object' || j.v !== 1 || !Number.isSafeInteger(j.seq) || typeof j.time !== 'string') return undefined;
  const time = Date.parse(j.time);
  if (Number.isNaN(time) || typeof j.subject !== 'object' || j.subject === null) return undefined;
  return {
    seq: j.seq,
    time,
    event: String(j.event),
    method: String(j.method),
    subject: { type: String(j.subject.type), id: String(j.subject.id) },
    ...(j.folderId === undefined ? {} : { folderId: String(j.folderId) }),
    ...(j.keyId === undefined ? {} : { keyId: String(j.keyId) }),
    ...(j.versionId === undefined ? {} : { versionId: String(j.versionId) }),
    ...(j.resourceId === undefined ? {} : { resourceId: String(j.resourceId) }),
    code: Number(j.code) as Code,
    requestId: String(j.requestId),
    peer: String(j.peer),
    transport: j.transport,
  };
}

/** The columns a store indexes a record by, taken from the record itself. */
export function indexColumns(r: AuditRecord): { at: number; subjectId: string; keyId: string | null; code: number } {
  return { at: r.time, subjectId: r.subject.id, keyId: clip(r.keyId) ?? null, code: r.code };
}
