// The PostgreSQL that tests run against: KMSD_TEST_POSTGRES_URL (scripts/ensure-postgres.sh provides
// one; postgres://postgres@127.0.0.1:5432/test when unset). Every test file works in schemas of its
// own, created fresh and dropped at the end, so files running in parallel never see each other's
// rows or notifications. An unreachable database fails the file (CI must provide one);
// KMSD_TEST_POSTGRES_URL=skip skips it on purpose.
//
//   withTestPostgres('multi-node', (db) => {
//     it('…', async () => { const { url } = await db.freshSchema(); … });
//   });
import { randomBytes } from 'node:crypto';
import { after, it } from 'node:test';
import pg from 'pg';

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/test';
const configured = process.env.KMSD_TEST_POSTGRES_URL || DEFAULT_URL;

/** The URL without its password, for messages. */
export function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(a URL that does not parse)';
  }
}

/** `url` with the tables in `schema` and the connections named after it in pg_stat_activity. */
export function inSchema(url: string, schema: string): string {
  const u = new URL(url);
  const options = u.searchParams.get('options');
  u.searchParams.set('options', `${options === null ? '' : `${options} `}-c search_path=${schema}`);
  u.searchParams.set('application_name', schema);
  return u.toString();
}

/** `url` pointing at another host and port (a proxy in front of the server). */
export function viaAddress(url: string, host: string, port: number): string {
  const u = new URL(url);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

async function unreachable(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message || String((e as { code?: unknown }).code) : String(e);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface TestSchema {
  readonly schema: string;
  /** The test database's URL with this schema as search_path. */
  readonly url: string;
}

export interface TestPostgres {
  /** The configured URL (public schema). */
  readonly url: string;
  /** A new, empty schema, dropped when the file is done. */
  freshSchema(): Promise<TestSchema>;
  /** Runs SQL in `schema` on an administrative connection of the test. */
  query<R extends pg.QueryResultRow>(schema: string, sql: string, values?: unknown[]): Promise<R[]>;
  /** Connections open now whose application_name is `schema` (those of stores opened through freshSchema's URL). */
  connections(schema: string): Promise<number>;
}

/** Runs `suite` against the test database, or registers one failing test saying why it cannot. */
export async function withTestPostgres(name: string, suite: (db: TestPostgres) => void): Promise<void> {
  if (configured === 'skip') {
    it(name, { skip: 'KMSD_TEST_POSTGRES_URL=skip: the PostgreSQL store is not tested' }, () => {});
    return;
  }
  const problem = await unreachable(configured);
  if (problem !== undefined) {
    it(`${name}: the test database is reachable`, () => {
      throw new Error(
        `PostgreSQL at ${redacted(configured)} is unreachable (${problem}). ` +
          (process.env.CI
            ? 'CI must provide it: .ci/run runs scripts/ensure-postgres.sh and exports KMSD_TEST_POSTGRES_URL.'
            : 'Run scripts/ensure-postgres.sh (it starts or installs one and prints its URL), ' +
              'point KMSD_TEST_POSTGRES_URL at one, or set KMSD_TEST_POSTGRES_URL=skip to skip these tests.'),
      );
    });
    return;
  }

  const admin = new pg.Pool({ connectionString: configured, max: 2 });
  admin.on('error', () => undefined);
  const schemas: string[] = [];
  after(async () => {
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  suite({
    url: configured,
    async freshSchema() {
      const schema = `kmsd_test_${randomBytes(6).toString('hex')}`;
      await admin.query(`CREATE SCHEMA ${schema}`);
      schemas.push(schema);
      return { schema, url: inSchema(configured, schema) };
    },
    async query<R extends pg.QueryResultRow>(schema: string, sql: string, values: unknown[] = []) {
      const client = await admin.connect();
      try {
        await client.query(`SET search_path = ${schema}`);
        return (await client.query<R>(sql, values)).rows;
      } finally {
        await client.query('RESET search_path').catch(() => undefined);
        client.release();
      }
    },
    async connections(schema: string) {
      const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [schema]);
      return rows[0]?.n ?? 0;
    },
  });
}
