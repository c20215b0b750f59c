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

const rootKeySpec = z.string().transform((text, ctx) => {
  if (text.startsWith('file:') && text.length > 5) return { kind: 'file' as const, path: text.slice(5) };
  if (/^env:[A-Za-z_][A-Za-z0-9_]*$/.test(text)) return { kind: 'env' as const, variable: text.slice(4) };
  if (text.startsWith('pkcs11:')) {
    ctx.addIssue({ code: 'custom', message: 'pkcs11: root keys are not supported by this build yet' });
    return z.NEVER;
  }
  ctx.addIssue({ code: 'custom', message: `"${text}" is not file:PATH or env:VARIABLE` });
  return z.NEVER;
});

const positiveInt = z.coerce.number().int().positive();

export const ServeOptions = z
  .object({
    dataDir: z.string().min(1).default('./kmsd-data'),
    restAddr: hostPort.prefault('127.0.0.1:8080'),
    grpcAddr: hostPort.prefault('127.0.0.1:8443'),
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    restTls: z.enum(['on', 'off']).default('off'),
    store: z.enum(['sqlite', 'postgres']).default('sqlite'),
    postgresUrl: z.string().optional(),
    rootKey: rootKeySpec.optional(),
    auth: z.enum(['iam', 'none']).default('iam'),
    seed: z.string().min(1).optional(),
    testClock: z.enum(['off', 'on', 'force']).default('off'),
    cacheMaxKeys: positiveInt.default(10_000),
    cacheTtlMs: positiveInt.default(60_000),
    schedulerIntervalMs: positiveInt.default(5_000),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .superRefine((o, ctx) => {
    if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
      ctx.addIssue({ code: 'custom', path: [o.tlsCert === undefined ? 'tlsCert' : 'tlsKey'], message: '--tls-cert and --tls-key go together' });
    }
    if (o.store === 'postgres') ctx.addIssue({ code: 'custom', path: ['store'], message: 'postgres is not supported by this build yet; use sqlite' });
    if (o.testClock === 'on' && o.auth === 'iam') {
      ctx.addIssue({
        code: 'custom',
        path: ['testClock'],
        message: 'the test clock lets any administrator jump time forward; it is refused with --auth iam unless --test-clock=force',
      });
    }
  });

export type ServeOptionsInput = z.input<typeof ServeOptions>;

export interface ServeConfig {
  readonly dataDir: string;
  readonly rest: { readonly host: string; readonly port: number; readonly tls: boolean };
  readonly grpc: { readonly host: string; readonly port: number };
  /** The operator's certificate; without it kmsd generates a CA and a localhost certificate. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  readonly store: { readonly kind: 'sqlite'; readonly path: string };
  readonly rootKey: { readonly kind: 'file'; readonly path: string } | { readonly kind: 'env'; readonly variable: string };
  readonly auth: 'iam' | 'none';
  readonly seedFile?: string;
  readonly testClock: boolean;
  readonly cache: { readonly maxKeys: number; readonly ttlMs: number };
  readonly schedulerIntervalMs: number;
  readonly logLevel: string;
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
  rootKey: 'KMSD_ROOT_KEY',
  auth: 'KMSD_AUTH',
  seed: 'KMSD_SEED',
  testClock: 'KMSD_TEST_CLOCK',
  cacheMaxKeys: 'KMSD_CACHE_MAX_KEYS',
  cacheTtlMs: 'KMSD_CACHE_TTL_MS',
  schedulerIntervalMs: 'KMSD_SCHEDULER_INTERVAL_MS',
  logLevel: 'KMSD_LOG_LEVEL',
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const FLAG_NAMES: Record<string, string> = Object.fromEntries(
  Object.keys(ENV_VARS).map((k) => [k, `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`]),
);

/** Merges flags over environment variables, validates, resolves paths, freezes. */
export function loadServeConfig(flags: Partial<Record<keyof ServeOptionsInput, string | boolean>>, env: NodeJS.ProcessEnv): ServeConfig {
  const merged: Record<string, unknown> = {};
  for (const [option, variable] of Object.entries(ENV_VARS)) {
    const fromFlag = flags[option as keyof ServeOptionsInput];
    const value = fromFlag ?? env[variable];
    if (value === undefined || value === '') continue;
    const toggle = option === 'testClock' || option === 'restTls';
    const on = toggle && (value === true || value === 'true' || value === '1' || value === 'on');
    const off = value === false || (toggle && (value === 'false' || value === '0'));
    merged[option] = on ? 'on' : off ? 'off' : value;
  }
  const parsed = ServeOptions.safeParse(merged);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    const option = String(first.path[0] ?? '');
    const name = FLAG_NAMES[option] ? `${FLAG_NAMES[option]} (${ENV_VARS[option as keyof ServeOptionsInput]})` : 'configuration';
    throw new ConfigError(`${name}: ${first.message}`);
  }
  const o = parsed.data;
  const dataDir = resolve(o.dataDir);
  const rootKey = o.rootKey ?? { kind: 'file' as const, path: join(dataDir, 'root.key') };
  return Object.freeze({
    dataDir,
    rest: { ...o.restAddr, tls: o.restTls === 'on' },
    grpc: o.grpcAddr,
    ...(o.tlsCert !== undefined && o.tlsKey !== undefined ? { tls: { certFile: resolve(o.tlsCert), keyFile: resolve(o.tlsKey) } } : {}),
    store: { kind: 'sqlite' as const, path: join(dataDir, 'kmsd.db') },
    rootKey: rootKey.kind === 'file' && !isAbsolute(rootKey.path) ? { kind: 'file' as const, path: resolve(rootKey.path) } : rootKey,
    auth: o.auth,
    ...(o.seed === undefined ? {} : { seedFile: resolve(o.seed) }),
    testClock: o.testClock !== 'off',
    cache: { maxKeys: o.cacheMaxKeys, ttlMs: o.cacheTtlMs },
    schedulerIntervalMs: o.schedulerIntervalMs,
    logLevel: o.logLevel,
  });
}
