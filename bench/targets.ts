import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startServer, type ServerProcess, type StopResult } from './child.js';
import { envNumber } from './env.js';
import { BULK_FOLDER, LIST_FOLDER, seedKeys, type SeededKeys } from './seed-keys.js';

// The servers a scenario can load. A target is started once, shared by every scenario that names
// it, and stopped at the end of the run. kmsd runs on SQLite (`kmsd`), with its root key in an HSM
// (`kmsd-hsm`), on PostgreSQL (`kmsd-postgres`) and in one worker process per core (`kmsd-workers`);
// other configurations are more entries in TARGETS. kmsd serves REST and gRPC from one process (one
// per worker); each transport has its own bare baseline process.

export interface GrpcEndpoint {
  /** host:port of the TLS gRPC listener. */
  readonly address: string;
  /** PEM of the CA that issued the listener's certificate. */
  readonly ca: Buffer;
}

export interface RunningTarget {
  readonly name: string;
  /** http://host:port of the REST listener, when the target serves REST. */
  readonly origin?: string;
  /** The gRPC listener, when the target serves gRPC. */
  readonly grpc?: GrpcEndpoint;
  /** Headers (REST) or metadata (gRPC) every crypto request to this target carries: authentication. */
  readonly headers: Readonly<Record<string, string>>;
  /** An administrator's headers, for management calls (kmsd targets only). */
  readonly adminHeaders?: Readonly<Record<string, string>>;
  /** The key the crypto scenarios use. */
  readonly keyId: string;
  /** The keys seeded into the data directory before the server started (kmsd-100k). */
  readonly seeded?: SeededKeys;
  readonly process: ServerProcess;
  stop(): Promise<StopResult>;
}

export interface TargetContext {
  /** The repository root. */
  readonly root: string;
  /** Extra node flags for a target's process, e.g. --cpu-prof (BENCH_NODE_ARGS_<TARGET>). */
  nodeArgs(target: string): readonly string[];
}

export interface TargetDef {
  readonly name: string;
  readonly description: string;
  start(ctx: TargetContext): Promise<RunningTarget>;
}

const BASELINE_KEY_ID = 'abjbench0000baseline'; // 20 characters, like a kmsd key id
/** Shaped like a kmsd token (kmsd1.<20>.<43>, 70 characters), so requests are the same size. nghttp2
 * never adds authorization to its HPACK table, so h2load sends the value in full on every stream. */
const BASELINE_GRPC_TOKEN = `kmsd1.${'0'.repeat(20)}.${'A'.repeat(43)}`;

const baseline: TargetDef = {
  name: 'baseline',
  description: 'bare node:http + sealV1 (bench/baseline-server.ts)',
  async start(ctx) {
    const proc = await startServer({
      name: 'baseline',
      command: process.execPath,
      args: [...ctx.nodeArgs('baseline'), '--import', 'tsx', join(ctx.root, 'bench', 'baseline-server.ts'), '--addr', '127.0.0.1:0'],
      cwd: ctx.root,
    });
    if (proc.ready.rest === undefined) {
      await proc.stop();
      throw new Error('baseline: the ready line names no REST address');
    }
    return {
      name: 'baseline',
      origin: `http://${proc.ready.rest}`,
      // Ignored by the baseline; sent so both targets receive requests of the same shape and size class.
      headers: { authorization: 'Bearer baseline-does-not-check-this-token' },
      keyId: BASELINE_KEY_ID,
      process: proc,
      stop: () => proc.stop(),
    };
  },
};

const baselineGrpc: TargetDef = {
  name: 'baseline-grpc',
  description: 'bare @grpc/grpc-js over TLS + sealV1 (bench/baseline-grpc-server.ts)',
  async start(ctx) {
    // Its CA and certificate come from kmsd's own generator, made in a temporary directory.
    const tlsDir = await mkdtemp(join(tmpdir(), 'kmsd-bench-grpc-baseline-'));
    let proc: ServerProcess | undefined;
    try {
      proc = await startServer({
        name: 'baseline-grpc',
        command: process.execPath,
        args: [...ctx.nodeArgs('baseline-grpc'), '--import', 'tsx', join(ctx.root, 'bench', 'baseline-grpc-server.ts'), '--addr', '127.0.0.1:0', '--tls-dir', tlsDir],
        cwd: ctx.root,
      });
      const grpc = await grpcEndpoint('baseline-grpc', proc);
      const running = proc;
      return {
        name: 'baseline-grpc',
        grpc,
        // Ignored by the baseline; sent so both targets receive requests of the same size.
        headers: { authorization: `Bearer ${BASELINE_GRPC_TOKEN}` },
        keyId: BASELINE_KEY_ID,
        process: running,
        async stop() {
          try {
            return await running.stop();
          } finally {
            await rm(tlsDir, { recursive: true, force: true });
          }
        },
      };
    } catch (e) {
      await proc?.stop();
      await rm(tlsDir, { recursive: true, force: true });
      throw e;
    }
  },
};

/** The ready line's "grpc" address and the CA file it names ("caFile"). */
async function grpcEndpoint(name: string, proc: ServerProcess): Promise<GrpcEndpoint> {
  const { grpc, caFile } = proc.ready;
  if (typeof grpc !== 'string') throw new Error(`${name}: the ready line names no gRPC address`);
  if (typeof caFile !== 'string') throw new Error(`${name}: the ready line names no CA file (caFile); the bench needs the generated certificate`);
  return { address: grpc, ca: await readFile(caFile) };
}

/** `kmsd serve` with the SQLite store and --auth iam, and one key of `algorithm` to use. */
/** What a kmsd target adds to `serve`: arguments, environment, and what to undo after the run. */
interface TargetSetup {
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
  cleanup?(): Promise<void>;
}

/**
 * A kmsd target. `workers`: `--workers` (default 1, a single process, so that the ratios against the
 * bare one-process baselines and between kmsd configurations compare one process each).
 */
function kmsdTarget(p: {
  name: string;
  description: string;
  algorithm: string;
  workers?: number;
  setup?: () => TargetSetup | Promise<TargetSetup>;
  /** Fills the new data directory before `serve` starts on it; the application is granted its folders too. */
  seed?: (dataDir: string) => Promise<{ seeded: SeededKeys; folders: readonly string[] }>;
}): TargetDef {
  return {
    name: p.name,
    description: p.description,
    async start(ctx) {
      const entry = join(ctx.root, 'dist', 'cli', 'kmsd.js');
      if (!existsSync(entry)) throw new Error(`kmsd: ${entry} is missing; run "npm run build" (npm run bench does)`);
      const extra = (await p.setup?.()) ?? { args: [], env: process.env };
      const dataDir = await mkdtemp(join(tmpdir(), 'kmsd-bench-'));
      const cleanup = async () => {
        await rm(dataDir, { recursive: true, force: true });
        await extra.cleanup?.();
      };
      let proc: ServerProcess | undefined;
      try {
        const seed = await p.seed?.(dataDir);
        proc = await startServer({
          name: p.name,
          command: process.execPath,
          args: [
            ...ctx.nodeArgs(p.name),
            entry,
            'serve',
            ...['--data-dir', dataDir, '--rest-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', '--auth', 'iam', '--log-level', 'warn', '--workers', String(p.workers ?? 1)],
            ...extra.args,
          ],
          cwd: ctx.root,
          env: extra.env,
        });
        if (proc.ready.rest === undefined) throw new Error('kmsd: the ready line names no REST address');
        const origin = `http://${proc.ready.rest}`;
        // Without it (a kmsd that prints no gRPC address or CA) the gRPC scenarios fail their check; REST still runs.
        const grpc = await grpcEndpoint('kmsd', proc).catch(() => undefined);
        const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
        const admin = { authorization: `Bearer ${token}` };
        const keyId = await createKey(origin, admin, p.algorithm);
        // Crypto calls are made as an application would make them: a service account holding only
        // kms.keys.encrypterDecrypter on the key, so authorization runs as it does in production.
        const headers = { authorization: `Bearer ${await applicationToken(origin, admin, keyId, seed?.folders ?? [])}` };
        const running = proc;
        return {
          name: p.name,
          origin,
          ...(grpc ? { grpc } : {}),
          headers,
          adminHeaders: admin,
          keyId,
          ...(seed ? { seeded: seed.seeded } : {}),
          process: running,
          async stop() {
            try {
              return await running.stop();
            } finally {
              await cleanup();
            }
          },
        };
      } catch (e) {
        await proc?.stop();
        await cleanup();
        throw e;
      }
    },
  };
}

const kmsdSqlite = kmsdTarget({
  name: 'kmsd',
  description:
    'kmsd serve --workers 1, SQLite store, --auth iam (a service account with kms.keys.encrypterDecrypter on the key), audit on, REST and TLS gRPC (dist/cli/kmsd.js); an AES_256 key',
  algorithm: 'AES_256',
});

/** The same server in one worker process per core (node:cluster): against `kmsd`, what the other cores add. */
const kmsdWorkers = kmsdTarget({
  name: 'kmsd-workers',
  description: `kmsd serve as \`kmsd\`, but --workers ${availableParallelism()} (one per core: a supervisor and ${availableParallelism()} worker processes sharing the listeners)`,
  algorithm: 'AES_256',
  workers: availableParallelism(),
});

/**
 * The same server with the audit records of crypto calls discarded, through kmsd's bench-only
 * switch (src/services/audit/bench-discard.ts): against `kmsd`, what the audit log costs.
 */
const kmsdAuditOff = kmsdTarget({
  name: 'kmsd-audit-off',
  description: 'kmsd serve as `kmsd`, but KMSD_BENCH_DISCARD_AUDIT: crypto calls leave no audit record (benchmark only)',
  algorithm: 'AES_256',
  setup: () => ({ args: [], env: { ...process.env, KMSD_BENCH_DISCARD_AUDIT: '1', KMSD_BENCH_ONLY: 'unaudited-calls-for-benchmarking' } }),
});

/**
 * The same server with its root key in SoftHSM2 and an AES_256_HSM key, whose every Encrypt runs
 * CKM_AES_GCM in the token. The token comes from scripts/ensure-softhsm.sh (it installs softhsm2
 * when missing), so the numbers are SoftHSM2's, a software token: a hardware HSM differs.
 */
const kmsdHsm = kmsdTarget({
  name: 'kmsd-hsm',
  description: 'kmsd serve as `kmsd`, root key in SoftHSM2 (pkcs11:), an AES_256_HSM key',
  algorithm: 'AES_256_HSM',
  setup() {
    const out = spawnSync(join(process.cwd(), 'scripts', 'ensure-softhsm.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (out.status !== 0) throw new Error('kmsd-hsm: scripts/ensure-softhsm.sh failed');
    const vars = Object.fromEntries([...out.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
    const spec = `pkcs11:module=${vars.KMSD_TEST_PKCS11_MODULE};token=${vars.KMSD_TEST_PKCS11_TOKEN};pin-file=${vars.KMSD_TEST_PKCS11_PIN_FILE};key-label=kmsd-bench-root;create=yes`;
    return { args: ['--root-key', spec], env: { ...process.env, SOFTHSM2_CONF: vars.SOFTHSM2_CONF } };
  },
});

/**
 * The PostgreSQL the bench uses: BENCH_POSTGRES_URL, else the tests' KMSD_TEST_POSTGRES_URL, else
 * the development machines' local server. The target works in a schema of its own, dropped after.
 */
export const BENCH_POSTGRES_URL =
  process.env.BENCH_POSTGRES_URL || process.env.KMSD_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';

async function onBenchPostgres(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** The same server as `kmsd` over PostgreSQL: one node, a pool of 10, a schema of its own. */
const kmsdPostgres = kmsdTarget({
  name: 'kmsd-postgres',
  description: 'kmsd serve as `kmsd`, PostgreSQL store (pool of 10, its own schema); an AES_256 key',
  algorithm: 'AES_256',
  async setup() {
    const schema = `kmsd_bench_${randomBytes(6).toString('hex')}`;
    await onBenchPostgres(`CREATE SCHEMA ${schema}`);
    const url = new URL(BENCH_POSTGRES_URL);
    url.searchParams.set('options', `-c search_path=${schema}`);
    // Only the store the target names: no KMSD_* setting of the runner's environment.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMSD_')));
    return {
      args: ['--store', 'postgres', '--postgres-url', url.toString(), '--postgres-pool-size', '10'],
      env,
      cleanup: () => onBenchPostgres(`DROP SCHEMA IF EXISTS ${schema} CASCADE`),
    };
  },
});

async function adminCall<T>(origin: string, headers: Record<string, string>, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${origin}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** A service account with kms.keys.encrypterDecrypter on the key (and on `folders`), and a token for it. */
async function applicationToken(origin: string, admin: Record<string, string>, keyId: string, folders: readonly string[] = []): Promise<string> {
  const sa = await adminCall<{ id: string }>(origin, admin, '/kmsd/v1/principals', { type: 'serviceAccount', name: 'bench-app' });
  const accessBindings = [{ roleId: 'kms.keys.encrypterDecrypter', subject: { type: 'serviceAccount', id: sa.id } }];
  await adminCall(origin, admin, `/kms/v1/keys/${keyId}:setAccessBindings`, { accessBindings });
  for (const folder of folders) await adminCall(origin, admin, `/kmsd/v1/folders/${folder}:setAccessBindings`, { accessBindings });
  return (await adminCall<{ token: string }>(origin, admin, `/kmsd/v1/principals/${sa.id}/tokens`, {})).token;
}

export async function createKey(origin: string, headers: Readonly<Record<string, string>>, algorithm: string): Promise<string> {
  const res = await fetch(`${origin}/kms/v1/keys`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ folderId: 'bench', defaultAlgorithm: algorithm }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`kmsd: creating the bench key answered ${res.status}: ${text.slice(0, 500)}`);
  const op = JSON.parse(text) as { done?: boolean; metadata?: { keyId?: unknown } };
  const keyId = op.metadata?.keyId;
  if (typeof keyId !== 'string' || op.done !== true) throw new Error(`kmsd: unexpected CreateSymmetricKey answer: ${text.slice(0, 500)}`);
  return keyId;
}

/**
 * kmsd serve on a data directory seeded with BENCH_SCALE_KEYS keys (bench/seed-keys.ts):
 * BENCH_SCALE_LIST_KEYS of them in one folder for List, BENCH_SCALE_EXTRA_VERSIONS of them rotated
 * once. BENCH_SCALE_CACHE_MAX_KEYS, when set, is its --cache-max-keys (default: kmsd's).
 */
export const kmsdScale = kmsdTarget({
  name: 'kmsd-100k',
  description: 'kmsd serve as `kmsd` on a data directory seeded with BENCH_SCALE_KEYS keys (default 100 000; bench/seed-keys.ts)',
  algorithm: 'AES_256',
  setup() {
    const cacheMaxKeys = process.env.BENCH_SCALE_CACHE_MAX_KEYS;
    return { args: cacheMaxKeys ? ['--cache-max-keys', cacheMaxKeys] : [], env: process.env };
  },
  async seed(dataDir) {
    const keys = Math.round(envNumber('BENCH_SCALE_KEYS', 100_000, 1));
    const seeded = await seedKeys({
      dataDir,
      keys,
      listKeys: Math.min(keys, Math.round(envNumber('BENCH_SCALE_LIST_KEYS', 10_000, 0))),
      extraVersions: Math.round(envNumber('BENCH_SCALE_EXTRA_VERSIONS', 1_000, 0)),
      log: (m) => process.stderr.write(`bench: kmsd-100k: ${m}\n`),
    });
    return { seeded, folders: [LIST_FOLDER, BULK_FOLDER] };
  },
});

export const TARGETS: readonly TargetDef[] = [baseline, baselineGrpc, kmsdSqlite, kmsdWorkers, kmsdAuditOff, kmsdHsm, kmsdPostgres, kmsdScale];
