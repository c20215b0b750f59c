import type pg from 'pg';

// Named parameters for pg. The SQL of the PostgreSQL store is written with @name parameters, as
// the SQLite store's is, and bound from the same kind of row objects; `statement` turns each
// @name into $1, $2, … once, when the module loads, and `values` lines the row's fields up.

/** What a statement runs on: the pool, or the client of a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

/** SQL with positional parameters, the names they stand for, and (as types) its parameters and rows. */
export interface Statement<Params extends object, Row> {
  readonly text: string;
  readonly names: readonly string[];
  /** Never set: carries the row type from the declaration to the caller. */
  readonly row?: Row;
  /** Never set: carries the parameter type. */
  readonly params?: Params;
}

/** Compiles `sql` with @name parameters; a name used twice is one parameter. */
export function statement<Params extends object, Row = never>(sql: string): Statement<Params, Row> {
  const names: string[] = [];
  const text = sql.replace(/@(\w+)/g, (_, name: string) => {
    const at = names.indexOf(name);
    if (at >= 0) return `$${at + 1}`;
    names.push(name);
    return `$${names.length}`;
  });
  return { text, names };
}

/** The positional values of `params`; a parameter left undefined is a bug, not a NULL. */
function values<Params extends object>(s: Statement<Params, unknown>, params: Params): unknown[] {
  return s.names.map((name) => {
    const value = (params as Record<string, unknown>)[name];
    if (value === undefined) throw new Error(`SQL parameter @${name} is not bound in: ${s.text}`);
    return value;
  });
}

export async function all<Params extends object, Row>(db: Queryable, s: Statement<Params, Row>, params: Params): Promise<Row[]> {
  const result = await db.query({ text: s.text, values: values(s, params) });
  return result.rows as Row[];
}

export async function first<Params extends object, Row>(
  db: Queryable,
  s: Statement<Params, Row>,
  params: Params,
): Promise<Row | undefined> {
  return (await all(db, s, params))[0];
}

/** Runs a write and returns the number of rows it touched. */
export async function run<Params extends object>(db: Queryable, s: Statement<Params, unknown>, params: Params): Promise<number> {
  const result = await db.query({ text: s.text, values: values(s, params) });
  return result.rowCount ?? 0;
}
