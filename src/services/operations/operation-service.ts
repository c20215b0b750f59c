import { ERR } from '../../errors/kms-error.js';
import type { Operation } from '../../domain/operation.js';
import type { KeyStore, OperationStore } from '../../ports/store.js';
import { missingOperation, operationDenied, type Authorizer } from '../access/authorizer.js';
import { note } from '../audit/trail.js';
import type { CallContext } from '../context.js';

// OperationService (SPEC.md §3.1). kmsd finishes every operation inside the call that starts it,
// so Get returns a done operation and Cancel has nothing left to cancel.

export interface OperationServiceDeps {
  readonly store: Pick<OperationStore, 'getOperation'> & Pick<KeyStore, 'getKey'>;
  readonly authorizer: Authorizer;
}

export function operationService(d: OperationServiceDeps) {
  async function get(ctx: CallContext, operationId: string): Promise<Operation> {
    note(ctx, { resourceId: operationId });
    const op = await d.store.getOperation(operationId);
    // Reading an operation needs what reading its key needs; an unknown id reveals nothing more.
    if (!op) return missingOperation(d.authorizer, ctx.caller, operationId, () => ERR.operationNotFound(operationId));
    note(ctx, { keyId: op.resourceId });
    const key = await d.store.getKey(op.resourceId);
    if (key) note(ctx, { folderId: key.folderId });
    if (!(await d.authorizer.allows(ctx.caller, 'kms.keys.get', { keyId: op.resourceId, ...(key ? { folderId: key.folderId } : {}) }))) {
      throw operationDenied(ctx.caller, operationId);
    }
    return op;
  }
  return {
    get,
    /** Best effort, as the API defines it: a finished operation is returned unchanged. */
    cancel: get,
  };
}

export type OperationService = ReturnType<typeof operationService>;
