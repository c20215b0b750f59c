import { chmodSync, createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { AdjustableClock, systemClock } from './adapters/clock/clocks.js';
import { cryptoRandom } from './adapters/random.js';
import { readOrCreateRootKeyFile, readRootKeyFromEnv, RootKeyError, softwareRootKey } from './adapters/rootkey/software-root-key.js';
import { rootKeyring, type RootKeyring } from './adapters/rootkey/root-keyring.js';
import type { Pkcs11Token } from './adapters/rootkey-pkcs11/pkcs11-token.js';
import { openSqliteStore, type SqliteSharing } from './adapters/store-sqlite/sqlite-store.js';
import type { Pkcs11RootKeySpec, RootKeySpec, ServeConfig, StoreConfig } from './config/config.js';
import { wrappedRootKeyId } from './crypto/wrapped-material.js';
import type { HsmKeyVersions } from './ports/hsm.js';
import { SecretBytes } from './crypto/secret-bytes.js';
import { DEV_MODE_CALLER } from './domain/principal.js';
import type { Clock } from './ports/clock.js';
import type { RootKeyProvider } from './ports/root-key.js';
import type { SnapshotRecordType, Store } from './ports/store.js';
import { readBackup, writeBackup, type BackupHeader } from './backup/backup-file.js';
import type { ChangeFeed } from './ports/change-feed.js';
import { bindingAuthorizer, grantAllAuthorizer, type Authorizer } from './services/access/authorizer.js';
import { invalidateOnChanges } from './services/cache-invalidation.js';
import { accessService } from './services/access/access-service.js';
import { AuditLog } from './services/audit/audit-log.js';
import { ensureBootstrapAdmin } from './services/auth/bootstrap.js';
import { devModeAuthenticator, FailureLimiter, tokenAuthenticator, type Authenticator } from './services/auth/tokens.js';
import { principalService } from './services/principals/principal-service.js';
import { callRunner } from './transport/shared/call-runner.js';
import { adminRoutes } from './transport/rest/admin-routes.js';
import { cryptoService } from './services/crypto/crypto-service.js';
import { KeyCache } from './services/keys/key-cache.js';
import { keyService } from './services/keys/key-service.js';
import { operationService } from './services/operations/operation-service.js';
import { scheduler } from './services/scheduler.js';
import { applySeedFile } from './seed/seed-file.js';
import { apiMethods } from './transport/shared/api-methods.js';
import { buildRestServer } from './transport/rest/rest-server.js';
import { startGrpcServer } from './transport/grpc/grpc-server.js';
import { ensureDevCertificates, readDevCertificates, readOperatorCertificate } from './adapters/tls/dev-certificates.js';
import { Readiness, type ReadinessCheck } from './observability/health.js';
import { benchAuditDiscardRequested } from './services/audit/bench-discard.js';
import { Metrics, timedStore } from './observability/metrics.js';
import { watchHeapMode } from './runtime/heap-mode.js';
import { opsRoutes } from './transport/rest/ops-routes.js';
import { ClusterFeed } from './cluster/cluster-feed.js';
import { clusterLock } from './cluster/cluster-lock.js';
import { SharedTestClock } from './cluster/shared-test-clock.js';
import type { WorkerLink } from './cluster/worker-link.js';

// The composition root: config → adapters → services → transports. Nothing else wires components.

export interface RunningKmsd {
  readonly restAddress: string;
  readonly grpcAddress: string;
  /** The CA that signed kmsd's generated certificate, for clients to trust; undefined with --tls-cert. */
  readonly caFile?: string;
  /** Stops accepting requests, drains in-flight ones, stops background work, closes the store. */
  close(): Promise<void>;
}

export class StartupError extends Error {
  override name = 'StartupError';
}

export const ROOT_KEY_CHECK = 'root_key_check';
export const ROOT_KEY_CHECK_AAD = Buffer.from('kmsd root key check', 'utf8');
export const AUDIT_MAC_KEY = 'audit_mac_key';
export const AUDIT_MAC_KEY_AAD = Buffer.from('kmsd audit mac key', 'utf8');

/**
 * The secret that keys the audit log's hash chain: made once, kept in the store wrapped by the
 * root key, so the database alone cannot re-forge the chain.
 */
export async function auditMacKey(store: Pick<Store, 'initMeta'>, rootKey: RootKeyProvider): Promise<SecretBytes> {
  const fresh = new SecretBytes(cryptoRandom.bytes(32));
  const wrapped = (await rootKey.wrap(fresh, AUDIT_MAC_KEY_AAD)).toString('base64');
  fresh.wipe();
  const stored = await store.initMeta(AUDIT_MAC_KEY, wrapped);
  return rootKey.unwrap(Buffer.from(stored, 'base64'), AUDIT_MAC_KEY_AAD);
}

/** The stderr destination of each logger createLogger made, for logWritten. */
const destinations = new WeakMap<Logger, ReturnType<typeof pino.destination>>();

/** `worker`: the process is that worker of `--workers N`, and each line says so. */
export function createLogger(config: Pick<ServeConfig, 'auth' | 'logLevel'>, o: { readonly worker?: number } = {}): Logger {
  const base = {
    service: 'kmsd',
    ...(o.worker === undefined ? {} : { worker: o.worker }),
    ...(config.auth === 'none' ? { authMode: 'none: DEV MODE, every caller is an administrator' } : {}),
  };
  const destination = pino.destination({ fd: 2, sync: false });
  const logger = pino(
    {
      level: config.logLevel,
      base,
      redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.authorization'], censor: '[redacted]' },
    },
    destination,
  );
  destinations.set(logger, destination);
  return logger;
}

/**
 * Resolves once the lines `logger` (from createLogger) was given so far are written to stderr. The
 * destination writes asynchronously, and its flush(cb) calls back at once while a write is still
 * in flight (it keeps no buffer of its own: minLength 0); it emits 'drain' when the last write
 * completed. A destination that fails, or does not drain within a second, does not hold the caller.
 */
export function logWritten(logger: Logger): Promise<void> {
  const destination = destinations.get(logger);
  if (!destination || !(destination as unknown as { _writing?: boolean })._writing) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      destination.off('drain', done);
      destination.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, 1000);
    destination.once('drain', done);
    destination.once('error', done);
  });
}

/** The URL without its password, for messages and logs. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(a URL that does not parse)';
  }
}

/** Where the store is, for messages and logs (never a password). */
export function describeStore(store: StoreConfig): string {
  return store.kind === 'sqlite' ? `SQLite database ${store.path}` : `PostgreSQL database ${redactedUrl(store.url)}`;
}

export interface OpenedStore {
  readonly store: Store;
  /** True when the store holds no data yet (no root key has wrapped anything in it). */
  readonly fresh: boolean;
}

/**
 * Opens (and migrates) the configured store; StartupError, naming it without any password, when
 * it cannot. `logger` hears about nodes that did not confirm a change in time (PostgreSQL).
 */
export async function openStore(config: StoreConfig, logger?: Logger, sharing: SqliteSharing = {}): Promise<OpenedStore> {
  try {
    if (config.kind === 'sqlite') {
      const fresh = !existsSync(config.path);
      return { store: openSqliteStore(config.path, sharing), fresh };
    }
    // The PostgreSQL driver is loaded only for a PostgreSQL store (issue #7: start time).
    const { openPostgresStore } = await import('./adapters/store-postgres/postgres-store.js');
    const store = await openPostgresStore(config.url, {
      poolSize: config.poolSize,
      ...(logger ? { listener: { onWarning: (message: string, details: Record<string, unknown>) => logger.warn(details, message) } } : {}),
    });
    try {
      return { store, fresh: (await store.getMeta(ROOT_KEY_CHECK)) === undefined };
    } catch (e) {
      await store.close();
      throw e;
    }
  } catch (e) {
    throw new StartupError(`cannot open the ${describeStore(config)}: ${(e as Error).message}`);
  }
}

/** Logs when this node stops and starts again hearing other nodes' changes. */
function logFeedState(feed: ChangeFeed, logger: Logger): void {
  let heard = false;
  feed.subscribe((event) => {
    if (event.kind === 'lost') {
      logger.warn({ reason: event.reason }, 'lost the change feed: caches are bypassed (every call reads the database) until it reconnects');
    } else if (event.kind === 'resync' && !heard) {
      heard = true;
      logger.info('listening to the change feed: caches are in use');
    } else if (event.kind === 'resync') {
      logger.info('the change feed reconnected: caches were emptied and are in use again');
    }
  });
}

function readPin(spec: Pkcs11RootKeySpec): string {
  if ('env' in spec.pin) {
    const pin = process.env[spec.pin.env];
    if (pin === undefined || pin === '') throw new StartupError(`environment variable ${spec.pin.env} (the PKCS#11 PIN) is not set`);
    return pin.trim();
  }
  const file = spec.pin.file;
  let text: string;
  try {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) throw new StartupError(`PKCS#11 PIN file ${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof StartupError) throw e;
    throw new StartupError(`cannot read the PKCS#11 PIN file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const pin = text.replace(/\r?\n$/, '');
  if (pin === '') throw new StartupError(`PKCS#11 PIN file ${file} is empty`);
  return pin;
}

/** The root keys of a data directory, and the HSM that hosts AES_256_HSM versions when one is configured. */
export interface OpenedRootKeys {
  readonly rootKey: RootKeyring;
  readonly hsm?: HsmKeyVersions;
  /** Logs out of and closes every PKCS#11 token opened for them. */
  close(): void;
}

/**
 * Opens the current and previous root keys. PKCS#11 keys are opened (and self-tested) before the
 * data directory is touched, so a wrong PIN, a missing token or key, or a module that does not
 * load stops the start with nothing written.
 */
export async function openRootKeys(config: ServeConfig, logger: Logger, isFresh: () => Promise<boolean>): Promise<OpenedRootKeys> {
  const tokens: Pkcs11Token[] = [];
  const closeAll = () => tokens.splice(0).forEach((t) => t.close());
  const specs: readonly RootKeySpec[] = [config.rootKey, ...config.previousRootKeys];
  // PKCS#11 support (a native module) is loaded only when a root key is in an HSM (issue #7: start time).
  const pkcs11 = specs.some((s) => s.kind === 'pkcs11') ? await loadPkcs11() : undefined;
  try {
    const providers = new Map<RootKeySpec, RootKeyProvider>();
    let hsmToken: Pkcs11Token | undefined;
    for (const spec of specs) {
      if (spec.kind !== 'pkcs11' || !pkcs11) continue;
      const { Pkcs11Token, openPkcs11RootKey } = pkcs11;
      const token = Pkcs11Token.open(
        { module: spec.module, ...(spec.token === undefined ? {} : { token: spec.token }), ...(spec.slot === undefined ? {} : { slot: BigInt(spec.slot) }) },
        readPin(spec),
        spec.maxSessions,
      );
      tokens.push(token);
      const key = await openPkcs11RootKey(token, { label: spec.keyLabel, create: spec.create }, cryptoRandom);
      await key.selfTest(cryptoRandom);
      logger.info({ rootKey: key.id, token: token.label, keyLabel: key.label, current: spec === config.rootKey }, 'opened the PKCS#11 root key; wrap/unwrap self-test passed');
      providers.set(spec, key);
      hsmToken ??= token;
    }
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(config.dataDir, 0o700);
    const fresh = await isFresh();
    for (const spec of specs) {
      if (spec.kind === 'env') providers.set(spec, softwareRootKey(readRootKeyFromEnv(spec.variable, process.env), cryptoRandom));
      if (spec.kind !== 'file') continue;
      // A new current key file is made for a new data directory, or as the next root-key version
      // when previous keys are configured (a rotation); never in place of a lost one.
      const mayCreate = spec === config.rootKey && (fresh || config.previousRootKeys.length > 0);
      const { key, created } = readOrCreateRootKeyFile(spec.path, mayCreate);
      if (created) {
        logger.warn(
          { rootKeyFile: spec.path },
          config.store.kind === 'postgres'
            ? 'generated a new root key file; every other node over this database needs the very same root key (copy this file, or use --root-key env:VAR), and it must be kept apart from backups of the database'
            : 'generated a new root key file; every key in this data directory depends on it: back it up, keep it apart from backups of the database, and prefer an HSM in production',
        );
      }
      providers.set(spec, softwareRootKey(key, cryptoRandom));
    }
    const rootKey = rootKeyring(providers.get(config.rootKey)!, config.previousRootKeys.map((s) => providers.get(s)!));
    return { rootKey, ...(hsmToken && pkcs11 ? { hsm: pkcs11.pkcs11KeyVersions(hsmToken) } : {}), close: closeAll };
  } catch (e) {
    closeAll();
    if (e instanceof RootKeyError || (pkcs11 && e instanceof pkcs11.Pkcs11Error)) throw new StartupError(e.message);
    throw e;
  }
}

async function loadPkcs11() {
  const [token, rootKey, versions] = await Promise.all([
    import('./adapters/rootkey-pkcs11/pkcs11-token.js'),
    import('./adapters/rootkey-pkcs11/pkcs11-root-key.js'),
    import('./adapters/rootkey-pkcs11/pkcs11-key-versions.js'),
  ]);
  return { Pkcs11Token: token.Pkcs11Token, Pkcs11Error: token.Pkcs11Error, openPkcs11RootKey: rootKey.openPkcs11RootKey, pkcs11KeyVersions: versions.pkcs11KeyVersions };
}

/**
 * Refuses to serve a data directory with a root key other than the one that initialised it. The
 * check value follows root-key rotations (kmsd root-key rotate rewraps it last), so it also tells
 * whether a rotation is still under way.
 */
async function checkRootKey(store: Store, rootKey: RootKeyring, logger: Logger): Promise<void> {
  const canary = new SecretBytes(cryptoRandom.bytes(32));
  const fresh = (await rootKey.wrap(canary, ROOT_KEY_CHECK_AAD)).toString('base64');
  canary.wipe();
  const stored = Buffer.from(await store.initMeta(ROOT_KEY_CHECK, fresh), 'base64');
  try {
    (await rootKey.unwrap(stored, ROOT_KEY_CHECK_AAD)).wipe();
  } catch {
    throw new StartupError(
      `the configured root key (${rootKey.all.map((k) => k.id).join(', ')}) is not the one this data directory was initialised with; refusing to start` +
        (rootKey.all.length === 1 ? ' (during a root-key rotation, give the old key as --previous-root-key)' : ''),
    );
  }
  const madeBy = wrappedRootKeyId(stored);
  if (madeBy !== rootKey.current.id) {
    logger.warn({ rootKey: rootKey.current.id, stillWrappedBy: madeBy }, 'a root-key rotation is not finished: run `kmsd root-key rotate` with these root-key settings');
  } else if (rootKey.all.length > 1) {
    logger.info({ rootKey: rootKey.current.id }, 'the last root-key rotation finished; --previous-root-key can be removed');
  }
}

function operatorCertificate(certFile: string, keyFile: string) {
  try {
    return readOperatorCertificate(certFile, keyFile);
  } catch (e) {
    throw new StartupError(`--tls-cert/--tls-key: ${(e as Error).message}`);
  }
}

/** The bench-only audit switch (services/audit/bench-discard.ts): applied, shouted, and never ready. */
function benchAuditDiscard(audit: AuditLog, logger: Logger): ReadinessCheck[] {
  let requested: boolean;
  try {
    requested = benchAuditDiscardRequested(process.env);
  } catch (e) {
    throw new StartupError((e as Error).message);
  }
  if (!requested) return [];
  audit.discardCallRecordsForBenchmark();
  logger.error('BENCHMARK MODE: audit records of non-mutating calls are DISCARDED (KMSD_BENCH_DISCARD_AUDIT); /readyz answers 503. Never serve traffic like this.');
  return [{ name: 'audit', run: () => Promise.reject(new Error('benchmark mode: audit records are discarded')) }];
}

/** /readyz: the store answers a read, and the root key unwraps the check value stored at initialisation. */
function readinessOf(store: Pick<Store, 'getMeta'>, rootKey: Pick<RootKeyring, 'unwrap'>, logger: Logger, extra: readonly ReadinessCheck[]): Readiness {
  const readCheckValue = async (): Promise<string> => {
    const value = await store.getMeta(ROOT_KEY_CHECK);
    if (value === undefined) throw new Error('the root key check value is missing from the store');
    return value;
  };
  return new Readiness(
    [
      { name: 'store', run: async () => void (await readCheckValue()) },
      // Read afresh each time: a root-key rotation rewraps it. A root key (an HSM session) that stops working shows here.
      { name: 'rootKey', run: async () => (await rootKey.unwrap(Buffer.from(await readCheckValue(), 'base64'), ROOT_KEY_CHECK_AAD)).wipe() },
      ...extra,
    ],
    logger,
  );
}

/**
 * Opens the store and the root key of a data directory and checks that they belong together; the
 * start of `serve` and of offline tools (`kmsd audit verify`). The caller closes the store.
 * `sharing`: what a SQLite store shares with the other workers of --workers.
 */
export async function openStorage(
  config: ServeConfig,
  logger: Logger,
  sharing: SqliteSharing = {},
): Promise<{ store: Store; rootKey: RootKeyring; hsm?: HsmKeyVersions; closeRootKeys(): void }> {
  let opened: OpenedStore | undefined;
  // Whether the store holds nothing yet, so a new root key file may be made: for SQLite the file
  // says so before it is opened; a PostgreSQL database must be opened (after any PKCS#11 key has
  // passed its self-test) and asked.
  const isFresh = async (): Promise<boolean> => {
    if (config.store.kind === 'sqlite') return !existsSync(config.store.path);
    opened ??= await openStore(config.store, logger, sharing);
    return opened.fresh;
  };
  let keys: OpenedRootKeys;
  try {
    keys = await openRootKeys(config, logger, isFresh);
  } catch (e) {
    await opened?.store.close();
    throw e;
  }
  let store: Store;
  try {
    store = (opened ??= await openStore(config.store, logger, sharing)).store;
  } catch (e) {
    keys.close();
    throw e;
  }
  logger.info(
    config.store.kind === 'postgres'
      ? { store: describeStore(config.store), poolSize: config.store.poolSize, listenConnections: 1 }
      : { store: describeStore(config.store) },
    'opened the store',
  );
  try {
    await checkRootKey(store, keys.rootKey, logger);
  } catch (e) {
    await store.close();
    keys.close();
    throw e;
  }
  return { store, rootKey: keys.rootKey, ...(keys.hsm ? { hsm: keys.hsm } : {}), closeRootKeys: keys.close };
}

/**
 * How this process takes part in serving: alone (`--workers 1`), as the supervisor of `--workers N`
 * preparing the data directory before it forks (no listeners), or as one of those workers.
 */
type Role = { readonly kind: 'single' } | { readonly kind: 'prepare' } | { readonly kind: 'worker'; readonly link: WorkerLink };

/**
 * What a start does once for a data directory: migrate the store, make the root key file, the
 * audit MAC key, the bootstrap administrator and its token, the generated TLS certificates, and
 * apply the seed file. The supervisor of `--workers N` runs it before it forks, so that the workers
 * find all of it made and none of it is raced.
 */
export async function prepareDataDir(config: ServeConfig, logger: Logger): Promise<void> {
  await (await composeKmsd(config, logger, { kind: 'prepare' })).close();
}

/**
 * Starts serving: alone, or as a worker of `--workers N` (src/cluster/) when `worker` is given. A
 * worker shares the caches' invalidations, background work, the test clock and /metrics with the
 * other workers through its link to the supervisor, which prepared the data directory before.
 */
export async function startKmsd(config: ServeConfig, logger: Logger, options: { readonly worker?: WorkerLink } = {}): Promise<RunningKmsd> {
  const kmsd = await composeKmsd(config, logger, options.worker ? { kind: 'worker', link: options.worker } : { kind: 'single' });
  return kmsd.listen();
}

interface ComposedKmsd {
  /** Runs due background work, starts the scheduler and binds the listeners. */
  listen(): Promise<RunningKmsd>;
  /** Closes what was opened, without having listened. */
  close(): Promise<void>;
}

async function composeKmsd(config: ServeConfig, logger: Logger, role: Role): Promise<ComposedKmsd> {
  const link = role.kind === 'worker' ? role.link : undefined;
  // The once-only work of a start (prepareDataDir) is done by a single process and by the
  // supervisor of --workers, never by its workers.
  const once = role.kind !== 'worker';
  const opened = await openStorage(config, logger, link && config.store.kind === 'sqlite' ? { feed: new ClusterFeed(link), lock: clusterLock(link) } : {});
  const { rootKey, hsm, closeRootKeys } = opened;
  const metrics = config.metrics && role.kind !== 'prepare' ? new Metrics(link ? { worker: link.slot } : {}) : undefined;
  const store = metrics ? timedStore(opened.store, metrics) : opened.store;
  const closeStorage = async () => {
    await store.close();
    closeRootKeys();
  };
  try {
    const testClock = config.testClock ? (link ? new SharedTestClock(link) : new AdjustableClock()) : undefined;
    const clock: Clock = testClock ?? systemClock;

    // Caches are used only while the change feed is live (PostgreSQL: listening; SQLite: always),
    // and every change it reports (from any node) drops what they hold of it. Preparing the data
    // directory serves nothing: it does not listen, and its caches are not used.
    const serving = role.kind !== 'prepare';
    const trusted = serving ? () => store.changes.live : () => false;
    if (serving) logFeedState(store.changes, logger);

    let authenticator: Authenticator;
    let authorizer: Authorizer;
    let tokens: ReturnType<typeof tokenAuthenticator> | undefined;
    let forgetTokens: (ids: readonly string[]) => void = () => undefined;
    if (config.auth === 'iam') {
      if (once) {
        const admin = await ensureBootstrapAdmin({ store, dataDir: config.dataDir, random: cryptoRandom, clock });
        if (admin.issued) logger.info({ tokenFile: admin.tokenFile }, 'wrote a new administrator token (mode 0600); send it as Authorization: Bearer <token>');
      }
      const t = tokenAuthenticator({ store, clock, limiter: new FailureLimiter(systemClock), cache: { maxTokens: 10_000, ttlMs: 5_000, trusted } });
      authenticator = tokens = t;
      forgetTokens = (ids) => ids.forEach((id) => t.forget(id));
      authorizer = bindingAuthorizer(store, { maxCallers: 10_000, ttlMs: 5_000, trusted });
    } else {
      if (once) logger.warn('--auth none: DEVELOPMENT MODE. Authentication is OFF and every caller is an administrator. Never expose this server.');
      authenticator = devModeAuthenticator(DEV_MODE_CALLER);
      authorizer = grantAllAuthorizer;
    }

    const macKey = await auditMacKey(store, rootKey);
    // A serving process commits the crypto calls' audit records off its event loop.
    if (serving) opened.store.writeAuditOnThread?.(macKey);
    const audit = new AuditLog(store, macKey, clock, logger, metrics && ((n, s, ok) => metrics.auditFlush(n, s, ok)));
    const cache = new KeyCache(store, rootKey, { ...config.cache, trusted }, hsm);
    if (serving) invalidateOnChanges(store.changes, { keys: cache, authorizer, ...(tokens ? { tokens } : {}) });
    metrics?.watchKeyCache(() => ({ ...cache.stats, size: cache.size }));
    // V8 runs for speed, or for memory once the cache holds many keys (runtime/heap-mode.ts).
    const heapMode = serving ? watchHeapMode(() => cache.size, logger) : undefined;
    metrics?.watchAuditQueue(() => ({ queued: audit.queued }));
    const readiness = readinessOf(store, rootKey, logger, benchAuditDiscard(audit, logger));
    const keys = keyService({ store, rootKey, cache, authorizer, clock, random: cryptoRandom, ...(hsm ? { hsm } : {}), audit, logger });
    const crypto = cryptoService({ cache, authorizer, random: cryptoRandom });
    const operations = operationService({ store, authorizer });
    const access = accessService({ store, authorizer, clock, random: cryptoRandom, audit });
    const principals = principalService({
      store,
      authorizer,
      clock,
      random: cryptoRandom,
      audit,
      onRevoke: (ids) => {
        forgetTokens(ids);
        authorizer.invalidate();
      },
    });
    const background = scheduler({ keys, lock: store, logger, intervalMs: config.schedulerIntervalMs });

    if (once && config.seedFile) {
      const seeded = await applySeedFile(config.seedFile, keys);
      logger.info({ seedFile: config.seedFile, created: seeded.created, existing: seeded.existing }, 'applied seed file');
    }
    if (once && testClock) {
      logger.warn('--test-clock: POST /kmsd/v1/testing/clock:advance moves this server\'s time forward; for tests only');
    }

    // Workers only read the generated certificates: two of them renewing at once could pair one's
    // certificate with the other's key.
    const tls = config.tls ? operatorCertificate(config.tls.certFile, config.tls.keyFile) : once ? await ensureDevCertificates(config.dataDir) : generatedCertificate(config.dataDir);
    if (tls.generated !== 'none') logger.info({ caFile: tls.caFile, certFile: tls.certFile, generated: tls.generated }, 'generated TLS certificates; clients trust the CA file');

    if (link && metrics) link.onTell('metrics', () => metrics.registry.getMetricsAsJSON());
    const scrape = metrics && (link ? async () => Metrics.aggregate(await link.ask('metrics', null)) : () => metrics.scrape());

    return {
      close: closeStorage,
      async listen() {
        try {
          const methods = apiMethods({ access, keys, crypto, operations });
          const calls = callRunner({ authenticator, audit, logger, ...(metrics ? { metrics } : {}) });
          const rest = await buildRestServer({
            methods,
            ...(config.rest.tls ? { https: { cert: tls.cert, key: tls.key } } : {}),
            calls,
            adminRoutes: adminRoutes({ principals, access, audit, authorizer }),
            opsRoutes: opsRoutes({ readiness, ...(scrape ? { scrape } : {}), ...(link ? { worker: link.slot } : {}) }),
            ...(metrics ? { metrics } : {}),
            logger,
            ...(testClock
              ? {
                  testClock: {
                    authorize: (ctx) => authorizer.authorize(ctx.caller, 'kmsd.principals.manage', {}),
                    async advance(ms: number) {
                      await testClock.advance(ms);
                      await background.runNow();
                      return testClock.now();
                    },
                  },
                }
              : {}),
          });
          await background.runNow();
          background.start();
          await rest.listen({ host: config.rest.host, port: config.rest.port });
          const address = rest.server.address() as AddressInfo;
          const restAddress = address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
          const grpc = await startGrpcServer({ methods, calls, logger, tls }, config.grpc.host, config.grpc.port).catch(async (e: unknown) => {
            await rest.close();
            throw e;
          });
          readiness.setListening(true);

          let closing: Promise<void> | undefined;
          return {
            restAddress,
            grpcAddress: grpc.address,
            ...(tls.caFile === undefined ? {} : { caFile: tls.caFile }),
            close() {
              closing ??= (async () => {
                readiness.setListening(false);
                // A keep-alive connection whose request finishes after close() began would otherwise stay
                // open (and keep close() waiting) until the client hangs up: close each one once idle.
                const sweep = setInterval(() => rest.server.closeIdleConnections(), 50);
                try {
                  await Promise.all([rest.close(), grpc.close()]);
                } finally {
                  clearInterval(sweep);
                }
                await background.stop();
                heapMode?.stop();
                cache.clear();
                await closeStorage();
              })();
              return closing;
            },
          };
        } catch (e) {
          await background.stop();
          await closeStorage();
          throw e;
        }
      },
    };
  } catch (e) {
    await closeStorage();
    throw e;
  }
}

/** The certificate a start of this data directory generated (a worker of --workers reads it). */
function generatedCertificate(dataDir: string) {
  try {
    return readDevCertificates(dataDir);
  } catch (e) {
    throw new StartupError(`the generated TLS certificate in ${dataDir}: ${(e as Error).message}`);
  }
}

// ---- kmsd backup / kmsd restore ----------------------------------------------------------------

export interface BackupResult {
  readonly counts: Readonly<Record<SnapshotRecordType, number>>;
}

/**
 * Writes a backup of the configured store to `out` ('-': standard output), as of one moment, while
 * nodes may keep serving. The file is written beside `out` and renamed into place once it is
 * complete and on disk, mode 0600; an existing `out` is never overwritten.
 */
export async function runBackup(config: { readonly store: StoreConfig }, out: string): Promise<BackupResult> {
  if (config.store.kind === 'sqlite' && !existsSync(config.store.path)) throw new StartupError(`there is no database to back up at ${config.store.path}`);
  if (out !== '-' && existsSync(out)) throw new StartupError(`${out} exists; a backup never overwrites a file`);
  const { store } = await openStore(config.store);
  try {
    if (out === '-') return { counts: await writeBackup(store, process.stdout, config.store.kind) };
    const partial = join(dirname(out), `.${basename(out)}.${process.pid}.partial`);
    const stream = createWriteStream(partial, { flags: 'wx', mode: 0o600 });
    try {
      const counts = await writeBackup(store, stream, config.store.kind);
      stream.end();
      await finished(stream);
      const handle = await open(partial, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(partial, out);
      return { counts };
    } catch (e) {
      stream.destroy();
      await rm(partial, { force: true });
      throw e;
    }
  } finally {
    await store.close();
  }
}

export interface RestoreResult extends BackupResult {
  readonly header: BackupHeader;
}

/**
 * Restores the backup in `input` ('-': standard input) into the configured store, which must hold
 * nothing yet: all of it in one transaction, or nothing when the file is damaged or the store is
 * not empty. The store then needs the root key of the backup's origin.
 */
export async function runRestore(config: { readonly dataDir: string; readonly store: StoreConfig }, input: string): Promise<RestoreResult> {
  if (input !== '-' && !existsSync(input)) throw new StartupError(`there is no backup at ${input}`);
  if (config.store.kind === 'sqlite') {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(config.dataDir, 0o700);
  }
  const { store } = await openStore(config.store);
  let header: BackupHeader | undefined;
  try {
    const source = input === '-' ? process.stdin : createReadStream(input);
    const counts = await store.importSnapshot(readBackup(source, (h) => (header = h)));
    return { counts, header: header! };
  } finally {
    await store.close();
  }
}
