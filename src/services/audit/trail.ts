import type { AuditTransport } from '../../domain/audit.js';
import type { CallContext } from '../context.js';

// The audit record of one call while the call runs. The transport opens it with who and how; the
// services add what they touch (folder, key, version); the call runner closes it with the outcome.

export interface AuditTrail {
  readonly event: string;
  readonly method: string;
  readonly requestId: string;
  readonly peer: string;
  readonly transport: AuditTransport;
  subject: { type: string; id: string };
  folderId?: string;
  keyId?: string;
  versionId?: string;
  resourceId?: string;
  /** Set once the record was committed together with the call's change (mutations). */
  written: boolean;
}

export type TrailFields = Partial<Pick<AuditTrail, 'folderId' | 'keyId' | 'versionId' | 'resourceId'>>;

/** Adds resources to the call's record; undefined values leave a field as it was. */
export function note(ctx: CallContext | undefined, fields: TrailFields): void {
  const trail = ctx?.trail;
  if (trail === undefined) return;
  // Field by field rather than a loop over entries: every call passes here several times.
  if (fields.folderId) trail.folderId = fields.folderId;
  if (fields.keyId) trail.keyId = fields.keyId;
  if (fields.versionId) trail.versionId = fields.versionId;
  if (fields.resourceId) trail.resourceId = fields.resourceId;
}
