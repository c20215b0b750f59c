import type { JsonObject } from '@bufbuild/protobuf';
import { Code, KmsError } from '../../errors/kms-error.js';
import { RequestInfoSchema } from '../../gen/google/rpc/status_pb.js';

// The only table from error code to HTTP status (SPEC.md §3.2, the google.rpc mapping Yandex uses),
// and the one function that turns anything thrown into what a client may see.

export const HTTP_STATUS: Readonly<Record<Code, number>> = {
  [Code.Cancelled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** Server faults: the client gets a generic message, the details go to the log only. */
const SERVER_FAULTS = new Set([Code.Unknown, Code.Internal, Code.DataLoss]);

export interface PublicError {
  readonly code: Code;
  readonly message: string;
  /** Whether the original error must be logged because the client was told nothing useful. */
  readonly serverFault: boolean;
}

export function publicError(e: unknown, requestId: string): PublicError {
  if (e instanceof KmsError && !SERVER_FAULTS.has(e.code)) return { code: e.code, message: e.message, serverFault: false };
  const code = e instanceof KmsError ? e.code : Code.Internal;
  return { code, message: `internal error; quote request id ${requestId} to the operator`, serverFault: true };
}

/** The REST error body: the JSON form of google.rpc.Status with a google.rpc.RequestInfo detail. */
export function errorBody(err: PublicError, requestId: string): JsonObject {
  return {
    code: err.code,
    message: err.message,
    details: [{ '@type': `type.googleapis.com/${RequestInfoSchema.typeName}`, requestId }],
  };
}
