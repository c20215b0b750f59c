import type pg from 'pg';
import { KmsError } from '../../errors/kms-error.js';
import { connectionProblem, translateDriverError } from './pg-errors.js';

/** Attempts of a statement whose connection broke under it (the second one runs on a new connection). */
export const ATTEMPTS = 2;

/** The work of one checkout: `discard` marks the connection unusable, `committing` says a retry is no longer safe. */
export type ConnectionWork<T> = (client: pg.PoolClient, discard: (why: Error) => void, committing: () => void) => Promise<T>;

/**
 * Runs `work` on one pooled connection and always gives the connection back; a connection that
 * broke is closed rather than reused. When the connection broke under `work` before it called
 * `committing`, and `retry` allows, `work` runs once more on a new connection. Driver errors come
 * out translated (pg-errors.ts).
 */
export async function onConnection<T>(pool: pg.Pool, work: ConnectionWork<T>, options: { retry: boolean }): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw translateDriverError(e);
    }
    let broken: Error | undefined;
    const discard = (why: Error) => {
      broken ??= why;
    };
    let committed = false;
    // A connection that breaks while checked out reports it here as well as to the running query;
    // without a listener the error would crash the process.
    client.on('error', discard);
    try {
      return await work(client, discard, () => {
        committed = true;
      });
    } catch (e) {
      const lost = connectionProblem(e) !== undefined;
      if (lost) discard(e as Error);
      if (lost && options.retry && !committed && attempt < ATTEMPTS && !(e instanceof KmsError)) continue;
      throw translateDriverError(e);
    } finally {
      client.removeListener('error', discard);
      client.release(broken);
    }
  }
}
