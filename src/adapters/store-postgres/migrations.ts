import type pg from 'pg';

// The PostgreSQL schema as an ordered list of migrations, the same tables and rules as the SQLite
// schema (src/adapters/store-sqlite/migrations.ts). A migration is never edited once released: a
// change to the schema is a new entry at the end. The tables live in the first schema of the
// connection's search_path (`public` unless the URL says `options=-c search_path=...`).

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'keys, key versions, operations, principals, tokens, meta',
    sql: `
      -- Times are epoch milliseconds (BIGINT). Identifiers collate as "C", so rows sort by id
      -- bytewise, as in SQLite and in JavaScript, whatever the database's locale. JSON columns hold
      -- the domain objects.
      CREATE TABLE keys (
        id                  TEXT    COLLATE "C" PRIMARY KEY,
        folder_id           TEXT    COLLATE "C" NOT NULL,
        name                TEXT    NOT NULL,
        description         TEXT    NOT NULL,
        labels              JSONB   NOT NULL,
        status              TEXT    NOT NULL,
        primary_version_id  TEXT    COLLATE "C" NOT NULL,
        default_algorithm   TEXT    NOT NULL,
        created_at          BIGINT  NOT NULL,
        rotated_at          BIGINT,
        rotation_period_ms  BIGINT,
        deletion_protection BOOLEAN NOT NULL,
        deleted_at          BIGINT,
        revision            BIGINT  NOT NULL,
        -- rotationDueAt(key), rewritten by every write; NULL when the key never rotates or is deleted.
        rotation_due_at     BIGINT
      );
      CREATE INDEX keys_by_folder ON keys (folder_id, created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX keys_by_rotation_due ON keys (rotation_due_at, id) WHERE rotation_due_at IS NOT NULL;
      CREATE INDEX keys_by_deleted_at ON keys (deleted_at, id) WHERE deleted_at IS NOT NULL;

      CREATE TABLE key_versions (
        id               TEXT    COLLATE "C" PRIMARY KEY,
        key_id           TEXT    COLLATE "C" NOT NULL REFERENCES keys (id),
        status           TEXT    NOT NULL,
        algorithm        TEXT    NOT NULL,
        created_at       BIGINT  NOT NULL,
        destroy_at       BIGINT,
        hosted_by_hsm    BOOLEAN NOT NULL,
        wrapped_material BYTEA,
        CONSTRAINT key_versions_destroyed_without_material CHECK (status <> 'DESTROYED' OR wrapped_material IS NULL)
      );
      CREATE INDEX key_versions_by_key ON key_versions (key_id, created_at, id);
      CREATE INDEX key_versions_by_destroy_at ON key_versions (destroy_at, id)
        WHERE status = 'SCHEDULED_FOR_DESTRUCTION';

      -- No foreign key to keys: operations outlive the keys they describe.
      CREATE TABLE operations (
        id              TEXT    COLLATE "C" PRIMARY KEY,
        resource_id     TEXT    COLLATE "C" NOT NULL,
        created_by      TEXT    COLLATE "C" NOT NULL,
        created_at      BIGINT  NOT NULL,
        modified_at     BIGINT  NOT NULL,
        description     TEXT    NOT NULL,
        done            BOOLEAN NOT NULL,
        metadata        JSONB   NOT NULL,  -- OperationMetadata
        response        JSONB,             -- OperationResponse
        error           JSONB,             -- { code, message }
        idempotency_key TEXT    COLLATE "C"
      );
      CREATE INDEX operations_by_resource ON operations (resource_id, created_at DESC, id DESC);
      CREATE UNIQUE INDEX operations_by_idempotency_key ON operations (created_by, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

      CREATE TABLE principals (
        id         TEXT    COLLATE "C" PRIMARY KEY,
        type       TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        created_at BIGINT  NOT NULL,
        admin      BOOLEAN NOT NULL
      );

      CREATE TABLE tokens (
        id           TEXT   COLLATE "C" PRIMARY KEY,
        principal_id TEXT   COLLATE "C" NOT NULL REFERENCES principals (id),
        secret_hash  BYTEA  NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT,
        revoked_at   BIGINT
      );
      CREATE INDEX tokens_by_principal ON tokens (principal_id);

      CREATE TABLE meta (
        name  TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    description: 'access bindings, audit log; principals lose the admin flag to a global kms.admin binding',
    sql: `
      CREATE TABLE access_bindings (
        scope_type   TEXT COLLATE "C" NOT NULL CHECK (scope_type IN ('global', 'folder', 'key')),
        scope_id     TEXT COLLATE "C" NOT NULL,
        role_id      TEXT COLLATE "C" NOT NULL,
        subject_type TEXT COLLATE "C" NOT NULL,
        subject_id   TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (scope_type, scope_id, role_id, subject_type, subject_id)
      );
      CREATE INDEX access_bindings_by_subject ON access_bindings (subject_type, subject_id);

      INSERT INTO access_bindings (scope_type, scope_id, role_id, subject_type, subject_id)
        SELECT 'global', '', 'kms.admin', type, id FROM principals WHERE admin;
      ALTER TABLE principals DROP COLUMN admin;
      ALTER TABLE principals ADD COLUMN description TEXT;
      ALTER TABLE tokens ADD COLUMN description TEXT;

      -- body is the record's canonical JSON, hash its HMAC chain value (crypto/audit-chain.ts);
      -- the other columns repeat fields of body for queries.
      CREATE TABLE audit_log (
        seq        BIGINT PRIMARY KEY,
        at         BIGINT NOT NULL,
        subject_id TEXT   COLLATE "C" NOT NULL,
        key_id     TEXT   COLLATE "C",
        code       INTEGER NOT NULL,
        body       TEXT   NOT NULL,
        hash       TEXT   NOT NULL
      );
      CREATE INDEX audit_log_by_at ON audit_log (at, seq);
      CREATE INDEX audit_log_by_subject ON audit_log (subject_id, seq);
      CREATE INDEX audit_log_by_key ON audit_log (key_id, seq) WHERE key_id IS NOT NULL;

      CREATE TABLE audit_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  BIGINT NOT NULL,
        hash TEXT   NOT NULL,
        mac  TEXT   NOT NULL
      );
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;

/** The tables of the schema, for tests and tools that empty or drop them. */
export const TABLES = ['audit_head', 'audit_log', 'access_bindings', 'tokens', 'principals', 'operations', 'key_versions', 'keys', 'meta'] as const;

export class SchemaVersionError extends Error {
  override name = 'SchemaVersionError';
}

/**
 * Every kmsd node migrating the same schema takes this transaction-level advisory lock first, so
 * one node applies the migrations and the others wait, then find nothing left to do. The second
 * key is the schema, so separate schemas (one per test file) migrate independently.
 */
const MIGRATION_LOCK = `SELECT pg_advisory_xact_lock(${0x6b6d7364 /* "kmsd" */}, hashtext(current_schema()))`;

/** The highest migration recorded in the schema; 0 for a new one. */
export async function schemaVersion(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ present: boolean }>(
    `SELECT to_regclass(format('%I.schema_migrations', current_schema())) IS NOT NULL AS present`,
  );
  if (rows[0]?.present !== true) return 0;
  const max = await db.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations');
  return max.rows[0]?.version ?? 0;
}

/**
 * Brings the schema up to LATEST_SCHEMA_VERSION in one transaction under MIGRATION_LOCK, so
 * several nodes may start at once; PostgreSQL's DDL is transactional, so a crash leaves the schema
 * as it was.
 */
export async function migrate(db: pg.ClientBase, now: () => number = Date.now): Promise<void> {
  await db.query('BEGIN');
  try {
    await db.query(MIGRATION_LOCK);
    const where = await db.query<{ db: string; schema: string | null }>(
      'SELECT current_database() AS db, current_schema() AS schema',
    );
    const { db: database, schema } = where.rows[0] ?? { db: '?', schema: null };
    if (schema === null) {
      throw new Error(`database ${database}: no schema of the search_path exists; create it or fix options=-c search_path=...`);
    }
    const found = await schemaVersion(db);
    if (found > LATEST_SCHEMA_VERSION) {
      throw new SchemaVersionError(
        `database ${database}, schema ${schema}: ` +
          `schema version ${found} is newer than this kmsd supports (${LATEST_SCHEMA_VERSION}); ` +
          'run a kmsd at least as new as the one that last wrote this database',
      );
    }
    await db.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    for (const m of MIGRATIONS.filter((m) => m.version > found)) {
      await db.query(m.sql);
      await db.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, now()]);
    }
    await db.query('COMMIT');
  } catch (e) {
    await db.query('ROLLBACK').catch(() => undefined); // the connection may be gone; the caller discards it
    throw e;
  }
}
