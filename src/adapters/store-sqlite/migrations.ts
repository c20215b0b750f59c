import type Database from 'better-sqlite3';

// The SQLite schema as an ordered list of migrations. A migration is never edited once released:
// a change to the schema is a new entry at the end. Each one runs in its own transaction together
// with its row in schema_migrations, so a crash leaves the database at a version boundary.

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
      -- Times are epoch milliseconds. Booleans are 0/1. JSON columns hold the domain objects.
      CREATE TABLE keys (
        id                  TEXT    PRIMARY KEY,
        folder_id           TEXT    NOT NULL,
        name                TEXT    NOT NULL,
        description         TEXT    NOT NULL,
        labels              TEXT    NOT NULL,  -- JSON object
        status              TEXT    NOT NULL,
        primary_version_id  TEXT    NOT NULL,
        default_algorithm   TEXT    NOT NULL,
        created_at          INTEGER NOT NULL,
        rotated_at          INTEGER,
        rotation_period_ms  INTEGER,
        deletion_protection INTEGER NOT NULL CHECK (deletion_protection IN (0, 1)),
        deleted_at          INTEGER,
        revision            INTEGER NOT NULL,
        -- rotationDueAt(key), rewritten by every write; NULL when the key never rotates or is deleted.
        rotation_due_at     INTEGER
      ) STRICT;
      CREATE INDEX keys_by_folder ON keys (folder_id, created_at, id) WHERE deleted_at IS NULL;
      CREATE INDEX keys_by_rotation_due ON keys (rotation_due_at, id) WHERE rotation_due_at IS NOT NULL;
      CREATE INDEX keys_by_deleted_at ON keys (deleted_at, id) WHERE deleted_at IS NOT NULL;

      CREATE TABLE key_versions (
        id               TEXT    PRIMARY KEY,
        key_id           TEXT    NOT NULL REFERENCES keys (id),
        status           TEXT    NOT NULL,
        algorithm        TEXT    NOT NULL,
        created_at       INTEGER NOT NULL,
        destroy_at       INTEGER,
        hosted_by_hsm    INTEGER NOT NULL CHECK (hosted_by_hsm IN (0, 1)),
        wrapped_material BLOB,
        CHECK (status <> 'DESTROYED' OR wrapped_material IS NULL)
      ) STRICT;
      CREATE INDEX key_versions_by_key ON key_versions (key_id, created_at, id);
      CREATE INDEX key_versions_by_destroy_at ON key_versions (destroy_at, id)
        WHERE status = 'SCHEDULED_FOR_DESTRUCTION';

      -- No foreign key to keys: operations outlive the keys they describe.
      CREATE TABLE operations (
        id              TEXT    PRIMARY KEY,
        resource_id     TEXT    NOT NULL,
        created_by      TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        modified_at     INTEGER NOT NULL,
        description     TEXT    NOT NULL,
        done            INTEGER NOT NULL CHECK (done IN (0, 1)),
        metadata        TEXT    NOT NULL,  -- JSON OperationMetadata
        response        TEXT,              -- JSON OperationResponse
        error           TEXT,              -- JSON { code, message }
        idempotency_key TEXT
      ) STRICT;
      CREATE INDEX operations_by_resource ON operations (resource_id, created_at DESC, id DESC);
      CREATE UNIQUE INDEX operations_by_idempotency_key ON operations (created_by, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

      CREATE TABLE principals (
        id         TEXT    PRIMARY KEY,
        type       TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        admin      INTEGER NOT NULL CHECK (admin IN (0, 1))
      ) STRICT;

      CREATE TABLE tokens (
        id           TEXT    PRIMARY KEY,
        principal_id TEXT    NOT NULL REFERENCES principals (id),
        secret_hash  BLOB    NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER
      ) STRICT;
      CREATE INDEX tokens_by_principal ON tokens (principal_id);

      CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    description: 'access bindings, audit log; principals lose the admin flag to a global kms.admin binding',
    sql: `
      CREATE TABLE access_bindings (
        scope_type   TEXT    NOT NULL CHECK (scope_type IN ('global', 'folder', 'key')),
        scope_id     TEXT    NOT NULL,
        role_id      TEXT    NOT NULL,
        subject_type TEXT    NOT NULL,
        subject_id   TEXT    NOT NULL,
        PRIMARY KEY (scope_type, scope_id, role_id, subject_type, subject_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX access_bindings_by_subject ON access_bindings (subject_type, subject_id);

      INSERT INTO access_bindings (scope_type, scope_id, role_id, subject_type, subject_id)
        SELECT 'global', '', 'kms.admin', type, id FROM principals WHERE admin = 1;
      ALTER TABLE principals DROP COLUMN admin;
      ALTER TABLE principals ADD COLUMN description TEXT;
      ALTER TABLE tokens ADD COLUMN description TEXT;

      -- body is the record's canonical JSON, hash its HMAC chain value (crypto/audit-chain.ts);
      -- the other columns repeat fields of body for queries and are checked against it.
      CREATE TABLE audit_log (
        seq        INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        subject_id TEXT    NOT NULL,
        key_id     TEXT,
        code       INTEGER NOT NULL,
        body       TEXT    NOT NULL,
        hash       TEXT    NOT NULL
      ) STRICT;
      CREATE INDEX audit_log_by_at ON audit_log (at, seq);
      CREATE INDEX audit_log_by_subject ON audit_log (subject_id, seq);
      CREATE INDEX audit_log_by_key ON audit_log (key_id, seq) WHERE key_id IS NOT NULL;

      CREATE TABLE audit_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash TEXT    NOT NULL,
        mac  TEXT    NOT NULL
      ) STRICT;
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;

export class SchemaVersionError extends Error {
  override name = 'SchemaVersionError';
}

/** The highest migration recorded in the database; 0 for a new database. */
export function schemaVersion(db: Database.Database): number {
  const hasTable = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).get();
  if (hasTable === undefined) return 0;
  return db.prepare<[], number | null>('SELECT max(version) FROM schema_migrations').pluck().get() ?? 0;
}

/**
 * Brings the database up to LATEST_SCHEMA_VERSION. Safe to run from several processes at once:
 * each migration takes the write lock (BEGIN IMMEDIATE) and re-checks whether another process
 * applied it meanwhile.
 */
export function migrate(db: Database.Database, now: () => number = Date.now): void {
  const found = schemaVersion(db);
  if (found > LATEST_SCHEMA_VERSION) {
    throw new SchemaVersionError(
      `${db.name}: database schema version ${found} is newer than this kmsd supports (${LATEST_SCHEMA_VERSION}); ` +
        'run a kmsd at least as new as the one that last wrote this database',
    );
  }
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT');
  const isApplied = db.prepare<[number]>('SELECT 1 FROM schema_migrations WHERE version = ?');
  const record = db.prepare<[number, number]>('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)');
  const apply = db.transaction((m: Migration) => {
    if (isApplied.get(m.version) !== undefined) return;
    db.exec(m.sql);
    record.run(m.version, now());
  });
  for (const m of MIGRATIONS) apply.immediate(m);
}
