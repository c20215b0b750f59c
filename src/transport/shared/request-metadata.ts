import { randomUUID } from 'node:crypto';
import { ERR } from '../../errors/kms-error.js';

// Request headers both transports read the same way (SPEC.md §2.3): x-request-id and Idempotency-Key.

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,64}$/;

/** The client's x-request-id when it is usable, else a fresh UUID. */
export function requestIdFrom(given: unknown): string {
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Validates an Idempotency-Key; undefined when the client sent none. */
export function idempotencyKeyFrom(given: unknown): string | undefined {
  if (given === undefined) return undefined;
  if (typeof given !== 'string' || !IDEMPOTENCY_KEY.test(given)) {
    throw ERR.invalidArgument('Idempotency-Key must be 1-64 characters of A-Z a-z 0-9 . _ : -');
  }
  return given;
}
