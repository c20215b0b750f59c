import type { Caller } from '../domain/principal.js';
import type { AuditTrail } from './audit/trail.js';

/** What every service method receives besides its input: who calls, and how to trace the call. */
export interface CallContext {
  readonly caller: Caller;
  readonly requestId: string;
  /** Client-chosen key that makes a mutation safe to retry (SPEC.md §2.3). */
  readonly idempotencyKey?: string;
  /** The call's audit record in the making; services add the resources they touch. */
  readonly trail?: AuditTrail;
}
