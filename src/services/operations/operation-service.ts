import { ERR } from '../../errors/kms-error.js';
import type { Operation } from '../../domain/operation.js';
import type { KeyStore, OperationStore } from '../../ports/store.js';
import type { Authorizer } from '../access/authorizer.js';
import type { CallContext } from '../context.js';

// OperationService (SPEC.md §3.1). kmsd finishes every operation inside the call that starts it,
// so Get returns a done operation and Cancel has nothing left to cancel.

export interface OperationServiceDeps {
  readonly store: Pick<OperationStore, 'getOperation'> & Pick<KeyStore, 'getKey'>;
  readonly authorizer: Authorizer;
}

export function operationService(d: OperationServiceDeps) {
  async function get(ctx: CallContext, operationId: string): Promise<Operation> {
    const op = await d.store.getOperation(operationId);
    if (!op) throw ERR.operationNotFound(operationId);
    const key = await d.store.getKey(op.resourceId);
    d.authorizer.authorize(ctx.principal, 'kms.operations.get', { keyId: op.resourceId, ...(key ? { folderId: key.folderId } : {}) });
    return op;
  }
  return {
    get,
    /** Best effort, as the API defines it: a finished operation is returned unchanged. */
    cancel: get,
  };
}

export type OperationService = ReturnType<typeof operationService>;
