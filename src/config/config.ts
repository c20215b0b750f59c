import { availableParallelism } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';

// The operator interface of `kmsd serve` (DESIGN.md §2): one schema, parsed once at start, frozen.
// Every flag has an environment variable; flags win. A bad value names its flag and stops kmsd
// before anything listens.

const hostPort = z.string().transform((text, ctx) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not HOST:PORT (port 0 picks a free one)` });
    return z.NEVER;
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
});

export interface Pkcs11RootKeySpec {
  readonly kind: 'pkcs11';
  /** Path of the PKCS#11 module (.so). */
  readonly module: string;
  /** The token, by label or by slot id (exactly one). */
  readonly token?: string;
  readonly slot?: string;
  /** Where the user PIN comes from: never the spec itself, which `ps` would show. */
  readonly pin: { readonly file: string } | { readonly env: string };
  /** CKA_LABEL of the root key object. */
  readonly keyLabel: string;
  /** Generate the key in the token when there is none with that label. */
  readonly create: boolean;
  /** Most sessions kmsd keeps open on the token at once. */
  readonly maxSessions: number;
}

export type RootKeySpec = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'env'; readonly variable: string } | Pkcs11RootKeySpec;

const PKCS11_ATTRIBUTES = ['module', 'token', 'slot', 'pin-file', 'pin-env', 'key-label', 'create', 'max-sessions'] as const;
const PKCS11_FORM = 'pkcs11:module=PATH;token=LABEL|slot=ID;pin-file=PATH|pin-env=VARIABLE;key-label=LABEL[;create=yes][;max-sessions=N]';

/**
 * `pkcs11:` followed by `name=value` attributes separated by `;` (as in RFC 7512 PKCS#11 URIs;
 * values may be percent-encoded). Messages never repeat a value: a PIN put in by mistake stays out
 * of logs.
 */
function parsePkcs11Spec(body: string): { spec: Pkcs11RootKeySpec } | { error: string } {
  const attrs = new Map<string, string>();
  for (const part of body.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (name === 'pin' || name === 'pin-value' || name === 'pin-source') {
      return { error: `pkcs11: a PIN in --root-key would show in ps and in the environment of every child; give pin-file=PATH or pin-env=VARIABLE instead` };
    }
    if (eq < 0) return { error: `pkcs11: attribute "${name}" has no value (${PKCS11_FORM})` };
    if (!(PKCS11_ATTRIBUTES as readonly string[]).includes(name)) return { error: `pkcs11: unknown attribute "${name}" (${PKCS11_FORM})` };
    if (attrs.has(name)) return { error: `pkcs11: attribute "${name}" is given twice` };
    let value: string;
    try {
      value = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return { error: `pkcs11: attribute "${name}" is not valid percent-encoding` };
    }
    if (value === '') return { error: `pkcs11: attribute "${name}" is empty` };
    attrs.set(name, value);
  }
  const module = attrs.get('module');
  if (module === undefined) return { error: `pkcs11: module=PATH (the PKCS#11 library) is required (${PKCS11_FORM})` };
  const token = attrs.get('token');
  const slot = attrs.get('slot');
  if ((token === undefined) === (slot === undefined)) return { error: 'pkcs11: give exactly one of token=LABEL and slot=ID' };
  if (slot !== undefined && !/^\d{1,20}$/.test(slot)) return { error: 'pkcs11: slot must be a slot id (a number)' };
  const pinFile = attrs.get('pin-file');
  const pinEnv = attrs.get('pin-env');
  if ((pinFile === undefined) === (pinEnv === undefined)) return { error: 'pkcs11: give exactly one of pin-file=PATH and pin-env=VARIABLE' };
  if (pinEnv !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(pinEnv)) return { error: 'pkcs11: pin-env must name an environment variable' };
  const keyLabel = attrs.get('key-label');
  if (keyLabel === undefined) return { error: 'pkcs11: key-label=LABEL (the root key object in the token) is required' };
  const create = attrs.get('create') ?? 'no';
  if (create !== 'yes' && create !== 'no') return { error: 'pkcs11: create must be yes or no' };
  const maxSessions = Number(attrs.get('max-sessions') ?? '4');
  if (!Number.isInteger(maxSessions) || maxSessions < 1 || maxSessions > 256) return { error: 'pkcs11: max-sessions must be a whole number from 1 to 256' };
  return {
    spec: {
      kind: 'pkcs11',
      module: isAbsolute(module) ? module : resolve(module),
      ...(token === undefined ? {} : { token }),
      ...(slot === undefined ? {} : { slot }),
      pin: pinFile !== undefined ? { file: resolve(pinFile) } : { env: pinEnv! },
      keyLabel,
      create: create === 'yes',
      maxSessions,
    },
  };
}

const rootKeySpec = z.string().transform((text, ctx): RootKeySpec => {
  if (text.startsWith('file:') && text.length > 5) return { kind: 'file' as const, path: text.slice(5) };
  if (/^env:[A-Za-z_][A-Za-z0-9_]*$/.test(text)) return { kind: 'env' as const, variable: text.slice(4) };
  if (text.startsWith('pkcs11:')) {
    const parsed = parsePkcs11Spec(text.slice('pkcs11:'.length));
    if ('spec' in parsed) return parsed.spec;
    ctx.addIssue({ code: 'custom', message: parsed.error });
    return z.NEVER;
  }
  ctx.addIssue({ code: 'custom', message: `"${text.startsWith('pkcs11') ? 'pkcs11…' : text}" is not file:PATH, env:VARIABLE or ${PKCS11_FORM}` });
  return z.NEVER;
});

const positiveInt = z.coerce.number().int().positive();

/**
 * A PostgreSQL URL. The text is never echoed in a message: it may carry a password. Libpq's
 * environment (PGPASSWORD, PGSSLMODE, …) applies on top, as for any libpq client.
 */
const postgresUrl = z.string().superRefine((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    // reported below
  }
  if (url === undefined || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')) {
    ctx.addIssue({ code: 'custom', message: 'not a postgres://[user[:password]@]host[:port]/database URL' });
  }
});

export const ServeOptions = z
  .object({
    dataDir: z.string().min(1).default('./kmsd-data'),
    restAddr: hostPort.prefault('127.0.0.1:8080'),
    grpcAddr: hostPort.prefault('127.0.0.1:8443'),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    restTls: z.enum(['on', 'off']).default('off'),
    store: z.enum(['sqlite', 'postgres']).default('sqlite'),
    postgresUrl: postgresUrl.optional(),
    // Two at least: a background pass holds one connection for its lock while its work uses another.
    postgresPoolSize: z.coerce.number().int().min(2).max(1000).default(10),
    rootKey: rootKeySpec.optional(),
    previousRootKey: z.union([rootKeySpec, z.array(rootKeySpec)]).optional(),
    auth: z.enum(['iam', 'none']).default('iam'),
    seed: z.string().min(1).optional(),
    testClock: z.enum(['off', 'on', 'force']).default('off'),
    cacheMaxKeys: positiveInt.default(10_000),
    cacheTtlMs: positiveInt.default(60_000),
    schedulerIntervalMs: positiveInt.default(5_000),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    metrics: z.enum(['on', 'off']).default('on'),
    workers: z.coerce.number().int().min(1).max(256).optional(),
  })
  .superRefine((o, ctx) => {
    if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
      ctx.addIssue({ code: 'custom', path: [o.tlsCert === undefined ? 'tlsCert' : 'tlsKey'], message: '--tls-cert and --tls-key go together' });
    }
    if (o.store === 'postgres' && o.postgresUrl === undefined) {
      ctx.addIssue({ code: 'custom', path: ['postgresUrl'], message: 'required with --store postgres' });
    }
    if (o.store === 'sqlite' && o.postgresUrl !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['postgresUrl'], message: 'only used with --store postgres (the store is sqlite)' });
    }
    if (o.testClock === 'on' && o.auth === 'iam') {
      ctx.addIssue({
        code: 'custom',
        path: ['testClock'],
        message: 'the test clock lets any administrator jump time forward; it is refused with --auth iam unless --test-clock=force',
      });
    }
  });

export type ServeOptionsInput = z.input<typeof ServeOptions>;

/** Where kmsd keeps its data: `kmsd serve`, `kmsd backup` and `kmsd restore` open it the same way. */
export type StoreConfig =
  | { readonly kind: 'sqlite'; readonly path: string }
  | {
      readonly kind: 'postgres';
      /** May hold a password: never log it. */
      readonly url: string;
      /** Connections of the store's pool; each node also holds one more, for LISTEN. */
      readonly poolSize: number;
    };

export interface ServeConfig {
  readonly dataDir: string;
  readonly rest: { readonly host: string; readonly port: number; readonly tls: boolean };
  readonly grpc: { readonly host: string; readonly port: number };
  /** The operator's certificate; without it kmsd generates a CA and a localhost certificate. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  readonly store: StoreConfig;
  /** Wraps all new material; the keyring's current key. */
  readonly rootKey: RootKeySpec;
  /** Keys that may still have wrapped stored material, until `kmsd root-key rotate` has rewrapped it. */
  readonly previousRootKeys: readonly RootKeySpec[];
  readonly auth: 'iam' | 'none';
  readonly seedFile?: string;
  readonly testClock: boolean;
  readonly cache: { readonly maxKeys: number; readonly ttlMs: number };
  readonly schedulerIntervalMs: number;
  readonly logLevel: string;
  /** GET /metrics on the REST listener (Prometheus text format, no authentication). */
  readonly metrics: boolean;
  /** Processes serving the listeners (node:cluster); 1 is a single process without a supervisor. */
  readonly workers: number;
}

/** The environment variable of each option (flags win over these). */
export const ENV_VARS: Readonly<Record<keyof ServeOptionsInput, string>> = {
  dataDir: 'KMSD_DATA_DIR',
  restAddr: 'KMSD_REST_ADDR',
  grpcAddr: 'KMSD_GRPC_ADDR',
  tlsCert: 'KMSD_TLS_CERT',
  tlsKey: 'KMSD_TLS_KEY',
  restTls: 'KMSD_REST_TLS',
  store: 'KMSD_STORE',
  postgresUrl: 'KMSD_POSTGRES_URL',
  postgresPoolSize: 'KMSD_POSTGRES_POOL_SIZE',
  rootKey: 'KMSD_ROOT_KEY',
  previousRootKey: 'KMSD_PREVIOUS_ROOT_KEY',
  auth: 'KMSD_AUTH',
  seed: 'KMSD_SEED',
  testClock: 'KMSD_TEST_CLOCK',
  cacheMaxKeys: 'KMSD_CACHE_MAX_KEYS',
  cacheTtlMs: 'KMSD_CACHE_TTL_MS',
  schedulerIntervalMs: 'KMSD_SCHEDULER_INTERVAL_MS',
  logLevel: 'KMSD_LOG_LEVEL',
  metrics: 'KMSD_METRICS',
  workers: 'KMSD_WORKERS',
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const FLAG_NAMES: Record<string, string> = Object.fromEntries(
  Object.keys(ENV_VARS).map((k) => [k, `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`]),
);

function storeConfig(o: Pick<z.output<typeof ServeOptions>, 'store' | 'postgresUrl' | 'postgresPoolSize'>, dataDir: string): StoreConfig {
  if (o.store === 'postgres') return { kind: 'postgres', url: o.postgresUrl!, poolSize: o.postgresPoolSize };
  return { kind: 'sqlite', path: join(dataDir, 'kmsd.db') };
}

type Flags = Partial<Record<keyof ServeOptionsInput, string | boolean | readonly string[]>>;

/** Flags over environment variables, for the options `only` names (all by default). */
function merge(flags: Flags, env: NodeJS.ProcessEnv, only: readonly string[] = Object.keys(ENV_VARS)): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const [option, variable] of Object.entries(ENV_VARS)) {
    if (!only.includes(option)) continue;
    const fromFlag = flags[option as keyof ServeOptionsInput];
    const value = fromFlag ?? env[variable];
    if (value === undefined || value === '' || (Array.isArray(value) && value.length === 0)) continue;
    const toggle = option === 'testClock' || option === 'restTls' || option === 'metrics';
    const on = toggle && (value === true || value === 'true' || value === '1' || value === 'on');
    const off = value === false || (toggle && (value === 'false' || value === '0'));
    merged[option] = on ? 'on' : off ? 'off' : value;
  }
  return merged;
}

function configError(error: z.ZodError): ConfigError {
  const first = error.issues[0]!;
  const option = String(first.path[0] ?? '');
  const name = FLAG_NAMES[option] ? `${FLAG_NAMES[option]} (${ENV_VARS[option as keyof ServeOptionsInput]})` : 'configuration';
  return new ConfigError(`${name}: ${first.message}`);
}

/** The options that say where the data is, for the commands that only open the store. */
export const STORE_OPTIONS = ['dataDir', 'store', 'postgresUrl', 'postgresPoolSize'] as const;

/** `kmsd backup` and `kmsd restore`: only the store options, read like `kmsd serve` reads them. */
export function loadStoreConfig(flags: Flags, env: NodeJS.ProcessEnv): { readonly dataDir: string; readonly store: StoreConfig } {
  const parsed = ServeOptions.safeParse(merge(flags, env, STORE_OPTIONS));
  if (!parsed.success) throw configError(parsed.error);
  const dataDir = resolve(parsed.data.dataDir);
  return Object.freeze({ dataDir, store: storeConfig(parsed.data, dataDir) });
}

/** Merges flags over environment variables, validates, resolves paths, freezes. */
export function loadServeConfig(flags: Flags, env: NodeJS.ProcessEnv): ServeConfig {
  const parsed = ServeOptions.safeParse(merge(flags, env));
  if (!parsed.success) throw configError(parsed.error);
  const o = parsed.data;
  const dataDir = resolve(o.dataDir);
  const absolute = (k: RootKeySpec): RootKeySpec => (k.kind === 'file' && !isAbsolute(k.path) ? { kind: 'file', path: resolve(k.path) } : k);
  const rootKey = absolute(o.rootKey ?? { kind: 'file' as const, path: join(dataDir, 'root.key') });
  const previousRootKeys = (o.previousRootKey === undefined ? [] : Array.isArray(o.previousRootKey) ? o.previousRootKey : [o.previousRootKey]).map(absolute);
  return Object.freeze({
    dataDir,
    rest: { ...o.restAddr, tls: o.restTls === 'on' },
    grpc: o.grpcAddr,
    ...(o.tlsCert !== undefined && o.tlsKey !== undefined ? { tls: { certFile: resolve(o.tlsCert), keyFile: resolve(o.tlsKey) } } : {}),
    store: storeConfig(o, dataDir),
    rootKey,
    previousRootKeys,
    auth: o.auth,
    ...(o.seed === undefined ? {} : { seedFile: resolve(o.seed) }),
    testClock: o.testClock !== 'off',
    cache: { maxKeys: o.cacheMaxKeys, ttlMs: o.cacheTtlMs },
    schedulerIntervalMs: o.schedulerIntervalMs,
    logLevel: o.logLevel,
    metrics: o.metrics === 'on',
    // One per core by default, to use the machine. Except in development mode: there kmsd is an
    // emulator that must start in well under a second (DESIGN.md §1), and more processes start
    // more slowly and take more memory without anyone needing their throughput.
    workers: o.workers ?? (o.auth === 'none' ? 1 : availableParallelism()),
  });
}
