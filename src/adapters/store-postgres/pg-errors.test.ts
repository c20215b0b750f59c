import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { Code, ERR, isKmsError } from '../../errors/kms-error.js';
import { connectionProblem, translateDriverError, translatingConstraints } from './pg-errors.js';

const systemError = (code: string, message = `connect ${code} 127.0.0.1:5432`) => Object.assign(new Error(message), { code });

function serverError(code: string, fields: { constraint?: string } = {}): pg.DatabaseError {
  const e = new pg.DatabaseError(`server says ${code}`, 0, 'error');
  e.code = code;
  if (fields.constraint !== undefined) e.constraint = fields.constraint;
  return e;
}

function assertUnavailable(e: unknown): void {
  const translated = translateDriverError(e);
  assert.ok(isKmsError(translated), `expected a KmsError for ${String(e)}`);
  assert.equal(translated.code, Code.Unavailable, String(e));
  assert.match(translated.message, /^the database is unavailable \(.+\)$/);
  assert.equal(translated.cause, e, 'keeps the driver error as the cause');
}

describe('PostgreSQL driver errors', () => {
  it('make a refused, reset, unresolvable or timed-out connection UNAVAILABLE', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']) {
      assertUnavailable(systemError(code));
    }
    // node:net tries every address of a name and reports them together.
    assertUnavailable(new AggregateError([systemError('ECONNREFUSED'), systemError('ECONNREFUSED')], 'connect failed'));
  });

  it('make a server shutting down, restarting or refusing connections UNAVAILABLE', () => {
    for (const state of ['57P01', '57P02', '57P03', '53300', '08000', '08003', '08006', '08P01']) assertUnavailable(serverError(state));
  });

  it('make pg’s lost-connection and pool-timeout errors UNAVAILABLE', () => {
    assertUnavailable(new Error('Connection terminated unexpectedly'));
    const lost = new Error('Connection terminated unexpectedly');
    assertUnavailable(new Error('Connection terminated due to connection timeout', { cause: lost }));
    assertUnavailable(new Error('timeout exceeded when trying to connect'));
    assertUnavailable(new Error('Client has encountered a connection error and is not queryable'));
    assertUnavailable(new Error('wrapped', { cause: systemError('ECONNRESET') }));
  });

  it('make a serialization failure or a deadlock ABORTED', () => {
    for (const state of ['40001', '40P01']) {
      const translated = translateDriverError(serverError(state));
      assert.ok(isKmsError(translated) && translated.code === Code.Aborted, state);
    }
  });

  it('leave every other error as it is, for the services to report as INTERNAL', () => {
    const others = [
      serverError('23505', { constraint: 'keys_pkey' }),
      serverError('42P01'),
      serverError('22021'),
      new Error('boom'),
      systemError('EACCES'),
      ERR.keyNotFound('abj1'),
      'a string',
    ];
    for (const e of others) {
      assert.equal(translateDriverError(e), e);
      assert.equal(connectionProblem(e), undefined);
    }
  });

  it('turn only the named constraints into KmsErrors', async () => {
    const named = { keys_pkey: () => ERR.aborted('mapped') };
    await assert.rejects(
      translatingConstraints(() => Promise.reject(serverError('23505', { constraint: 'keys_pkey' })), named),
      (e: unknown) => isKmsError(e) && e.message === 'mapped',
    );
    const other = serverError('23505', { constraint: 'tokens_pkey' });
    await assert.rejects(translatingConstraints(() => Promise.reject(other), named), (e: unknown) => e === other);
    assert.equal(await translatingConstraints(() => Promise.resolve(7), named), 7);
  });
});
