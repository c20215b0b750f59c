import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { cryptoRandom } from '../src/adapters/random.js';
import { systemClock } from '../src/adapters/clock/clocks.js';
import { readOrCreateRootKeyFile, softwareRootKey } from '../src/adapters/rootkey/software-root-key.js';
import { migrate } from '../src/adapters/store-sqlite/migrations.js';
import { SqliteStore } from '../src/adapters/store-sqlite/sqlite-store.js';
import type { Principal } from '../src/domain/principal.js';
import { grantAllAuthorizer } from '../src/services/access/authorizer.js';
import type { CallContext } from '../src/services/context.js';
import { keyService } from '../src/services/keys/key-service.js';

// Fills a new kmsd data directory (SQLite) with many keys quickly, for the scale benchmarks
// (bench/scale.ts). Through the API every CreateSymmetricKey is one durable commit, so 100 000
// keys take minutes; here the very same key service (src/services/keys/key-service.ts) creates
// and rotates them — fresh ids, material from the CSPRNG wrapped by the data directory's root key,
// key, version and Operation rows written by the SQLite store's commitKeyChange — but thousands of
// its commits share one SQLite transaction, and nothing is fsynced until the end. What differs from
// keys made over the API: no audit records (a crypto call never reads them) and the operations'
// createdBy is `kmsd-bench-seed`. `kmsd serve --data-dir <dir>` then starts on the result as on
// any data directory it made itself (it finds the root key at <dir>/root.key).
//
//   node --import tsx bench/seed-keys.ts --data-dir DIR [--keys 100000] [--list-keys 10000] [--extra-versions 1000]

export interface SeedOptions {
  readonly dataDir: string;
  /** Keys in all. */
  readonly keys: number;
  /** Of those, how many go into LIST_FOLDER (the rest into BULK_FOLDER). */
  readonly listKeys: number;
  /** Rotations, one per key, spread evenly over the keys: each adds one version beyond the key's first. */
  readonly extraVersions: number;
  /** Keys committed per SQLite transaction. */
  readonly batch?: number;
  readonly log?: (msg: string) => void;
}

export interface SeededKeys {
  /** Every key id, in creation order (list-folder keys first). */
  readonly ids: readonly string[];
  /** The ids of the keys in LIST_FOLDER. */
  readonly listIds: readonly string[];
  /** Keys that were rotated (2 versions each). */
  readonly rotated: readonly string[];
  readonly versions: number;
  readonly seconds: number;
}

export const LIST_FOLDER = 'bench-scale-list';
export const BULK_FOLDER = 'bench-scale-bulk';
const SEED_PRINCIPAL: Principal = { id: 'kmsd-bench-seed', type: 'serviceAccount', name: 'bench seed', createdAt: 0 };

/** The data directory's SQLite database as kmsd lays it out (src/config/config.ts). */
export const databasePath = (dataDir: string) => join(dataDir, 'kmsd.db');

export async function seedKeys(o: SeedOptions): Promise<SeededKeys> {
  const started = performance.now();
  const log = o.log ?? (() => undefined);
  mkdirSync(o.dataDir, { recursive: true });
  const dbPath = databasePath(o.dataDir);
  if (existsSync(dbPath)) throw new Error(`seed-keys: ${dbPath} exists; seed only a new data directory`);
  const { key: rootKeyBytes } = readOrCreateRootKeyFile(join(o.dataDir, 'root.key'), true);
  const rootKey = softwareRootKey(rootKeyBytes, cryptoRandom);

  const db = new Database(dbPath);
  try {
    // kmsd's own pragmas, except durability: no fsync while seeding (a seed that crashes is simply
    // made again); the checkpoint at the end writes everything into the database file.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    db.pragma('foreign_keys = ON');
    migrate(db);
    const store = new SqliteStore(db);
    const keys = keyService({ store, rootKey, cache: { invalidate: () => undefined }, authorizer: grantAllAuthorizer, clock: systemClock, random: cryptoRandom });
    const ctx: CallContext = { caller: { kind: 'principal', principal: SEED_PRINCIPAL }, requestId: 'bench-seed' };

    const batch = o.batch ?? 5000;
    const ids: string[] = [];
    const rotateEvery = o.extraVersions > 0 ? Math.max(1, Math.floor(o.keys / o.extraVersions)) : Infinity;
    const rotated: string[] = [];
    // commitKeyChange runs each change as a transaction of its own; inside the BEGIN below
    // better-sqlite3 makes it a savepoint, so a batch reaches the file in one commit.
    for (let start = 0; start < o.keys; start += batch) {
      db.exec('BEGIN IMMEDIATE');
      try {
        for (let i = start; i < Math.min(o.keys, start + batch); i++) {
          const folderId = i < o.listKeys ? LIST_FOLDER : BULK_FOLDER;
          const op = await keys.create(ctx, { folderId, name: `k${i}`, description: '', labels: {}, defaultAlgorithm: 'AES_256', deletionProtection: false });
          const keyId = op.metadata.type === 'CreateSymmetricKeyMetadata' ? op.metadata.keyId : undefined;
          if (keyId === undefined) throw new Error('seed-keys: CreateSymmetricKey answered no key id');
          ids.push(keyId);
          if (i % rotateEvery === 0 && rotated.length < o.extraVersions) {
            await keys.rotate(ctx, keyId);
            rotated.push(keyId);
          }
        }
        db.exec('COMMIT');
      } catch (e) {
        db.exec('ROLLBACK');
        throw e;
      }
      log(`seeded ${ids.length}/${o.keys} keys`);
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
    return { ids, listIds: ids.slice(0, o.listKeys), rotated, versions: ids.length + rotated.length, seconds: (performance.now() - started) / 1000 };
  } finally {
    db.close();
    rootKeyBytes.wipe();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      keys: { type: 'string', default: '100000' },
      'list-keys': { type: 'string', default: '10000' },
      'extra-versions': { type: 'string', default: '1000' },
    },
  });
  if (values['data-dir'] === undefined) {
    process.stderr.write('usage: node --import tsx bench/seed-keys.ts --data-dir DIR [--keys N] [--list-keys N] [--extra-versions N]\n');
    process.exit(2);
  }
  const r = await seedKeys({
    dataDir: resolve(values['data-dir']),
    keys: Number(values.keys),
    listKeys: Number(values['list-keys']),
    extraVersions: Number(values['extra-versions']),
    log: (m) => process.stderr.write(`${m}\n`),
  });
  process.stdout.write(`${JSON.stringify({ keys: r.ids.length, listKeys: r.listIds.length, rotated: r.rotated.length, versions: r.versions, seconds: r.seconds })}\n`);
}
