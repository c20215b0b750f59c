// The one error type of kmsd. Services throw it with a google.rpc code; each transport renders it
// (transport/shared/status.ts holds the only code → HTTP table). Messages are safe to show to the
// caller: they name fields and ids, never secrets.

export enum Code {
  Cancelled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

export class KmsError extends Error {
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KmsError';
  }
}

export const isKmsError = (e: unknown): e is KmsError => e instanceof KmsError;

/** One generic answer for every ciphertext that fails to parse or authenticate: no oracle. */
export const INVALID_CIPHERTEXT_MESSAGE = 'ciphertext is invalid or was not produced by this key with this AAD context';

export const ERR = {
  invalidArgument: (message: string) => new KmsError(Code.InvalidArgument, message),
  field: (field: string, problem: string) => new KmsError(Code.InvalidArgument, `${field}: ${problem}`),
  unauthenticated: (message = 'missing or invalid credentials') => new KmsError(Code.Unauthenticated, message),
  permissionDenied: (message = 'permission denied') => new KmsError(Code.PermissionDenied, message),
  keyNotFound: (keyId: string) => new KmsError(Code.NotFound, `key ${keyId} not found`),
  versionNotFound: (keyId: string, versionId: string) =>
    new KmsError(Code.NotFound, `key ${keyId}: version ${versionId} not found`),
  operationNotFound: (id: string) => new KmsError(Code.NotFound, `operation ${id} not found`),
  failedPrecondition: (message: string) => new KmsError(Code.FailedPrecondition, message),
  unimplemented: (message: string) => new KmsError(Code.Unimplemented, message),
  aborted: (message: string) => new KmsError(Code.Aborted, message),
  invalidCiphertext: () => new KmsError(Code.InvalidArgument, INVALID_CIPHERTEXT_MESSAGE),
  internal: (cause: unknown) => new KmsError(Code.Internal, 'internal error', { cause }),
  unavailable: (message: string) => new KmsError(Code.Unavailable, message),
  resourceExhausted: (message: string) => new KmsError(Code.ResourceExhausted, message),
  notFound: (message: string) => new KmsError(Code.NotFound, message),
} as const;
