import type { Principal } from '../domain/principal.js';

/** What every service method receives besides its input: who calls, and how to trace the call. */
export interface CallContext {
  readonly principal: Principal;
  readonly requestId: string;
  /** Client-chosen key that makes a mutation safe to retry (SPEC.md §2.3). */
  readonly idempotencyKey?: string;
}
