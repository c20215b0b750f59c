import pg from 'pg';
import { Code, KmsError } from '../../errors/kms-error.js';

// What the PostgreSQL store makes of the driver's errors. A lost or refused connection is
// UNAVAILABLE (the caller may retry; the database, not the request, is at fault), a transaction
// the server gave up because of a concurrent one is ABORTED, a constraint the caller names becomes
// its KmsError, and everything else stays as it is: a plain Error, which the services report as
// INTERNAL.

/** Socket errors of node:net and node:dns that mean the server cannot be reached or went away. */
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server that is going away or not accepting connections: class 08 (connection
 * exception) is matched by prefix; these are the others.
 */
const UNAVAILABLE_SQLSTATES = new Set([
  '57P01', // admin_shutdown: the server is shutting down or the backend was terminated
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: starting up or in recovery
  '53300', // too_many_connections
]);

/** pg and pg-pool report a lost connection or a pool timeout only by these messages. */
const DRIVER_MESSAGES = [
  /^Connection terminated/, // unexpectedly, or due to connection timeout
  /^timeout exceeded when trying to connect$/, // pg-pool: no client free within connectionTimeoutMillis
  /^Client has encountered a connection error and is not queryable$/,
  /^Query read timeout$/,
];

/** A short, safe description of why the database is unavailable, or undefined when `e` is not about that. */
export function connectionProblem(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  if (e instanceof pg.DatabaseError) {
    const state = e.code ?? '';
    return state.startsWith('08') || UNAVAILABLE_SQLSTATES.has(state) ? `${state} ${e.message}` : undefined;
  }
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return code;
  if (DRIVER_MESSAGES.some((m) => m.test(e.message))) return e.message;
  // node:net's happy-eyeballs connect fails with an AggregateError of one error per address.
  if (e instanceof AggregateError) {
    for (const inner of e.errors) {
      const problem = connectionProblem(inner);
      if (problem !== undefined) return problem;
    }
  }
  return e.cause === undefined ? undefined : connectionProblem(e.cause);
}

/** serialization_failure and deadlock_detected: the server undid the transaction because of another one. */
const CONCURRENCY_SQLSTATES = new Set(['40001', '40P01']);

/** `e` as the store throws it: UNAVAILABLE for a connection problem, ABORTED for a lost race, otherwise unchanged. */
export function translateDriverError(e: unknown): unknown {
  if (e instanceof KmsError) return e;
  const problem = connectionProblem(e);
  if (problem !== undefined) return new KmsError(Code.Unavailable, `the database is unavailable (${problem})`, { cause: e });
  if (e instanceof pg.DatabaseError && CONCURRENCY_SQLSTATES.has(e.code ?? '')) {
    return new KmsError(Code.Aborted, 'the transaction conflicted with a concurrent one; retry it', { cause: e });
  }
  return e;
}

export type ErrorFor = (cause: unknown) => KmsError;

/**
 * Runs a write, turning violations of the constraints the caller names (by constraint name:
 * `keys_pkey`, `operations_by_idempotency_key`, …) into KmsErrors.
 */
export async function translatingConstraints<T>(write: () => Promise<T>, errors: Readonly<Record<string, ErrorFor>>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    const toKmsError = e instanceof pg.DatabaseError && e.constraint !== undefined ? errors[e.constraint] : undefined;
    throw toKmsError === undefined ? e : toKmsError(e);
  }
}
