import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { AdjustableClock, systemClock } from './adapters/clock/clocks.js';
import { cryptoRandom } from './adapters/random.js';
import { readOrCreateRootKeyFile, readRootKeyFromEnv, RootKeyError, softwareRootKey } from './adapters/rootkey/software-root-key.js';
import { openSqliteStore } from './adapters/store-sqlite/sqlite-store.js';
import type { ServeConfig } from './config/config.js';
import { SecretBytes } from './crypto/secret-bytes.js';
import { DEV_MODE_CALLER } from './domain/principal.js';
import type { Clock } from './ports/clock.js';
import type { RootKeyProvider } from './ports/root-key.js';
import type { Store } from './ports/store.js';
import { bindingAuthorizer, grantAllAuthorizer, type Authorizer } from './services/access/authorizer.js';
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
import { ensureDevCertificates, readOperatorCertificate } from './adapters/tls/dev-certificates.js';

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

const ROOT_KEY_CHECK = 'root_key_check';
const ROOT_KEY_CHECK_AAD = Buffer.from('kmsd root key check', 'utf8');
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

export function createLogger(config: Pick<ServeConfig, 'auth' | 'logLevel'>): Logger {
  return pino(
    {
      level: config.logLevel,
      base: config.auth === 'none' ? { service: 'kmsd', authMode: 'none: DEV MODE, every caller is an administrator' } : { service: 'kmsd' },
      redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.authorization'], censor: '[redacted]' },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

function openRootKey(config: ServeConfig, logger: Logger): RootKeyProvider {
  if (config.rootKey.kind === 'env') return softwareRootKey(readRootKeyFromEnv(config.rootKey.variable, process.env), cryptoRandom);
  const { key, created } = readOrCreateRootKeyFile(config.rootKey.path, !existsSync(config.store.path));
  if (created) {
    logger.warn(
      { rootKeyFile: config.rootKey.path },
      'generated a new root key file; every key in this data directory depends on it: back it up, keep it apart from backups of the database, and prefer an HSM in production',
    );
  }
  return softwareRootKey(key, cryptoRandom);
}

/** Refuses to serve a data directory with a root key other than the one that initialised it. */
async function checkRootKey(store: Store, rootKey: RootKeyProvider): Promise<void> {
  const canary = new SecretBytes(cryptoRandom.bytes(32));
  const fresh = (await rootKey.wrap(canary, ROOT_KEY_CHECK_AAD)).toString('base64');
  canary.wipe();
  const stored = await store.initMeta(ROOT_KEY_CHECK, fresh);
  try {
    (await rootKey.unwrap(Buffer.from(stored, 'base64'), ROOT_KEY_CHECK_AAD)).wipe();
  } catch {
    throw new StartupError(`the configured root key (${rootKey.id}) is not the one this data directory was initialised with; refusing to start`);
  }
}

function operatorCertificate(certFile: string, keyFile: string) {
  try {
    return readOperatorCertificate(certFile, keyFile);
  } catch (e) {
    throw new StartupError(`--tls-cert/--tls-key: ${(e as Error).message}`);
  }
}

/**
 * Opens the store and the root key of a data directory and checks that they belong together; the
 * start of `serve` and of offline tools (`kmsd audit verify`). The caller closes the store.
 */
export async function openStorage(config: ServeConfig, logger: Logger): Promise<{ store: Store; rootKey: RootKeyProvider }> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(config.dataDir, 0o700);
  let rootKey: RootKeyProvider;
  try {
    rootKey = openRootKey(config, logger);
  } catch (e) {
    if (e instanceof RootKeyError) throw new StartupError(e.message);
    throw e;
  }
  let store: Store;
  try {
    store = openSqliteStore(config.store.path);
  } catch (e) {
    throw new StartupError(`cannot open the database ${config.store.path}: ${(e as Error).message}`);
  }
  try {
    await checkRootKey(store, rootKey);
  } catch (e) {
    await store.close();
    throw e;
  }
  return { store, rootKey };
}

export async function startKmsd(config: ServeConfig, logger: Logger): Promise<RunningKmsd> {
  const { store, rootKey } = await openStorage(config, logger);
  try {
    const testClock = config.testClock ? new AdjustableClock() : undefined;
    const clock: Clock = testClock ?? systemClock;

    let authenticator: Authenticator;
    let authorizer: Authorizer;
    let forgetTokens: (ids: readonly string[]) => void = () => undefined;
    if (config.auth === 'iam') {
      const admin = await ensureBootstrapAdmin({ store, dataDir: config.dataDir, random: cryptoRandom, clock });
      if (admin.issued) logger.info({ tokenFile: admin.tokenFile }, 'wrote a new administrator token (mode 0600); send it as Authorization: Bearer <token>');
      const tokens = tokenAuthenticator({ store, clock, limiter: new FailureLimiter(systemClock) });
      authenticator = tokens;
      forgetTokens = (ids) => ids.forEach((id) => tokens.forget(id));
      authorizer = bindingAuthorizer(store);
    } else {
      logger.warn('--auth none: DEVELOPMENT MODE. Authentication is OFF and every caller is an administrator. Never expose this server.');
      authenticator = devModeAuthenticator(DEV_MODE_CALLER);
      authorizer = grantAllAuthorizer;
    }

    const audit = new AuditLog(store, await auditMacKey(store, rootKey), clock, logger);
    const cache = new KeyCache(store, rootKey, config.cache);
    const keys = keyService({ store, rootKey, cache, authorizer, clock, random: cryptoRandom, hsmConfigured: false, audit });
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
    const background = scheduler({ keys, logger, intervalMs: config.schedulerIntervalMs });

    if (config.seedFile) {
      const seeded = await applySeedFile(config.seedFile, keys);
      logger.info({ seedFile: config.seedFile, created: seeded.created, existing: seeded.existing }, 'applied seed file');
    }
    if (testClock) {
      logger.warn('--test-clock: POST /kmsd/v1/testing/clock:advance moves this server\'s time forward; for tests only');
    }

    const tls = config.tls ? operatorCertificate(config.tls.certFile, config.tls.keyFile) : await ensureDevCertificates(config.dataDir);
    if (tls.generated !== 'none') logger.info({ caFile: tls.caFile, certFile: tls.certFile, generated: tls.generated }, 'generated TLS certificates; clients trust the CA file');

    const methods = apiMethods({ access, keys, crypto, operations });
    const calls = callRunner({ authenticator, audit, logger });
    const rest = await buildRestServer({
      methods,
      ...(config.rest.tls ? { https: { cert: tls.cert, key: tls.key } } : {}),
      calls,
      adminRoutes: adminRoutes({ principals, access, audit, authorizer }),
      logger,
      ...(testClock
        ? {
            testClock: {
              authorize: (ctx) => authorizer.authorize(ctx.caller, 'kmsd.principals.manage', {}),
              async advance(ms: number) {
                testClock.advance(ms);
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

    let closing: Promise<void> | undefined;
    return {
      restAddress,
      grpcAddress: grpc.address,
      ...(tls.caFile === undefined ? {} : { caFile: tls.caFile }),
      close() {
        closing ??= (async () => {
          // A keep-alive connection whose request finishes after close() began would otherwise stay
          // open (and keep close() waiting) until the client hangs up: close each one once idle.
          const sweep = setInterval(() => rest.server.closeIdleConnections(), 50);
          try {
            await Promise.all([rest.close(), grpc.close()]);
          } finally {
            clearInterval(sweep);
          }
          await background.stop();
          cache.clear();
          await store.close();
        })();
        return closing;
      },
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}
