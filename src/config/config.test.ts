import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, ENV_VARS, loadServeConfig, loadStoreConfig, type ServeConfig } from './config.js';

// `kmsd serve` configuration (DESIGN.md §2): flags over environment variables over defaults; a bad
// value stops kmsd with a message naming both the flag and the variable.

type Flags = Parameters<typeof loadServeConfig>[0];

function rejects(flags: Flags, env: NodeJS.ProcessEnv, flag: string, variable: string): string {
  let message = '';
  assert.throws(
    () => loadServeConfig(flags, env),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
      assert.ok(e.message.includes(flag), `"${e.message}" should name ${flag}`);
      assert.ok(e.message.includes(variable), `"${e.message}" should name ${variable}`);
      message = e.message;
      return true;
    },
  );
  return message;
}

describe('defaults', () => {
  it('with no flags and no environment', () => {
    const c = loadServeConfig({}, {});
    const dataDir = resolve('kmsd-data');
    assert.deepEqual(c, {
      dataDir,
      rest: { host: '127.0.0.1', port: 8080, tls: false },
      grpc: { host: '127.0.0.1', port: 8443 },
      store: { kind: 'sqlite', path: join(dataDir, 'kmsd.db') },
      rootKey: { kind: 'file', path: join(dataDir, 'root.key') },
      previousRootKeys: [],
      auth: 'iam',
      testClock: false,
      cache: { maxKeys: 10_000, ttlMs: 60_000 },
      schedulerIntervalMs: 5_000,
      logLevel: 'info',
      metrics: true,
      workers: availableParallelism(),
    } satisfies ServeConfig);
    assert.equal('seedFile' in c, false);
    assert.equal('tls' in c, false, 'no operator certificate: kmsd generates its own');
  });

  it('--tls-cert and --tls-key go together, and --rest-tls serves REST over HTTPS', () => {
    const both = loadServeConfig({ tlsCert: 'a.crt', tlsKey: 'a.key', restTls: true }, {});
    assert.deepEqual(both.tls, { certFile: resolve('a.crt'), keyFile: resolve('a.key') });
    assert.equal(both.rest.tls, true);
    assert.match(rejects({ tlsCert: 'a.crt' }, {}, '--tls-key', 'KMSD_TLS_KEY'), /go together/);
    rejects({}, { KMSD_TLS_KEY: 'a.key' }, '--tls-cert', 'KMSD_TLS_CERT');
    assert.equal(loadServeConfig({}, { KMSD_GRPC_ADDR: '[::1]:0' }).grpc.port, 0);
  });

  it('--metrics on|off (KMSD_METRICS) turns /metrics off and on', () => {
    assert.equal(loadServeConfig({ metrics: 'off' }, {}).metrics, false);
    assert.equal(loadServeConfig({}, { KMSD_METRICS: 'off' }).metrics, false);
    assert.equal(loadServeConfig({ metrics: 'on' }, { KMSD_METRICS: 'off' }).metrics, true);
    rejects({ metrics: 'maybe' }, {}, '--metrics', 'KMSD_METRICS');
  });

  it('--workers (KMSD_WORKERS): one process per core unless told (one with --auth none), 1 to 256', () => {
    assert.equal(loadServeConfig({}, {}).workers, availableParallelism());
    assert.equal(loadServeConfig({ auth: 'none' }, {}).workers, 1, 'the development emulator starts fast and small');
    assert.equal(loadServeConfig({ auth: 'none', workers: '2' }, {}).workers, 2);
    assert.equal(loadServeConfig({ workers: '1' }, {}).workers, 1);
    assert.equal(loadServeConfig({}, { KMSD_WORKERS: '3' }).workers, 3);
    assert.equal(loadServeConfig({ workers: '2' }, { KMSD_WORKERS: '3' }).workers, 2);
    for (const bad of ['0', '-1', '1.5', 'many', '257']) rejects({ workers: bad }, {}, '--workers', 'KMSD_WORKERS');
  });

  it('is frozen', () => {
    const c = loadServeConfig({}, {});
    assert.ok(Object.isFrozen(c));
    assert.throws(() => {
      (c as { auth: string }).auth = 'none';
    }, TypeError);
  });

  it('ignores empty environment variables', () => {
    assert.equal(loadServeConfig({}, { KMSD_AUTH: '', KMSD_REST_ADDR: '' }).auth, 'iam');
  });
});

describe('flags and environment', () => {
  it('every option has a KMSD_ variable', () => {
    for (const [option, variable] of Object.entries(ENV_VARS)) {
      const snake = option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
      assert.equal(variable, `KMSD_${snake}`);
    }
  });

  it('reads the environment when there is no flag', () => {
    const c = loadServeConfig({}, { KMSD_AUTH: 'none', KMSD_REST_ADDR: '0.0.0.0:9090', KMSD_LOG_LEVEL: 'warn', KMSD_CACHE_MAX_KEYS: '5', KMSD_CACHE_TTL_MS: '100' });
    assert.equal(c.auth, 'none');
    assert.deepEqual(c.rest, { host: '0.0.0.0', port: 9090, tls: false });
    assert.equal(c.logLevel, 'warn');
    assert.deepEqual(c.cache, { maxKeys: 5, ttlMs: 100 });
  });

  it('flags win over environment variables', () => {
    const env = { KMSD_AUTH: 'iam', KMSD_REST_ADDR: '0.0.0.0:9090', KMSD_DATA_DIR: '/env/dir' };
    const c = loadServeConfig({ auth: 'none', restAddr: '127.0.0.1:7070', dataDir: '/flag/dir' }, env);
    assert.equal(c.auth, 'none');
    assert.deepEqual(c.rest, { host: '127.0.0.1', port: 7070, tls: false });
    assert.equal(c.dataDir, '/flag/dir');
  });

  it('a good flag wins over a bad environment variable', () => {
    assert.equal(loadServeConfig({ auth: 'none' }, { KMSD_AUTH: 'bogus' }).auth, 'none');
  });
});

describe('listener address', () => {
  it('port 0 picks a free port', () => {
    assert.deepEqual(loadServeConfig({ restAddr: '127.0.0.1:0' }, {}).rest, { host: '127.0.0.1', port: 0, tls: false });
  });

  it('IPv6 in brackets', () => {
    assert.deepEqual(loadServeConfig({ restAddr: '[::1]:0' }, {}).rest, { host: '::1', port: 0, tls: false });
    assert.deepEqual(loadServeConfig({ restAddr: '[::]:8080' }, {}).rest, { host: '::', port: 8080, tls: false });
  });

  it('host names, and an empty host meaning loopback', () => {
    assert.deepEqual(loadServeConfig({ restAddr: 'localhost:65535' }, {}).rest, { host: 'localhost', port: 65535, tls: false });
    assert.deepEqual(loadServeConfig({ restAddr: ':8081' }, {}).rest, { host: '127.0.0.1', port: 8081, tls: false });
  });

  it('a bad address names --rest-addr and KMSD_REST_ADDR, from either source', () => {
    for (const addr of ['localhost', '127.0.0.1', '127.0.0.1:65536', '127.0.0.1:99999', '::1:80', '[::1]', 'host:port', 'a:-1', '1.2.3.4:80 ']) {
      rejects({ restAddr: addr }, {}, '--rest-addr', 'KMSD_REST_ADDR');
      rejects({}, { KMSD_REST_ADDR: addr }, '--rest-addr', 'KMSD_REST_ADDR');
    }
  });
});

describe('auth', () => {
  it('accepts iam and none only', () => {
    assert.equal(loadServeConfig({ auth: 'iam' }, {}).auth, 'iam');
    assert.equal(loadServeConfig({ auth: 'none' }, {}).auth, 'none');
    for (const auth of ['IAM', 'off', 'token', 'true']) {
      rejects({ auth }, {}, '--auth', 'KMSD_AUTH');
      rejects({}, { KMSD_AUTH: auth }, '--auth', 'KMSD_AUTH');
    }
  });
});

describe('root key', () => {
  it('file:PATH, resolved against the working directory when relative', () => {
    assert.deepEqual(loadServeConfig({ rootKey: 'file:/etc/kmsd/root.key' }, {}).rootKey, { kind: 'file', path: '/etc/kmsd/root.key' });
    assert.deepEqual(loadServeConfig({ rootKey: 'file:keys/root.key' }, {}).rootKey, { kind: 'file', path: resolve('keys/root.key') });
  });

  it('env:VARIABLE', () => {
    assert.deepEqual(loadServeConfig({ rootKey: 'env:KMSD_ROOT_KEY_B64' }, {}).rootKey, { kind: 'env', variable: 'KMSD_ROOT_KEY_B64' });
    assert.deepEqual(loadServeConfig({}, { KMSD_ROOT_KEY: 'env:_k1' }).rootKey, { kind: 'env', variable: '_k1' });
  });

  it('a bad spec names --root-key and KMSD_ROOT_KEY', () => {
    for (const spec of ['file:', 'env:', 'env:1ABC', 'env:A-B', 'pkcs11:token=x', '/etc/root.key', 'c2VjcmV0']) {
      rejects({ rootKey: spec }, {}, '--root-key', 'KMSD_ROOT_KEY');
      rejects({}, { KMSD_ROOT_KEY: spec }, '--root-key', 'KMSD_ROOT_KEY');
    }
  });

  describe('pkcs11:', () => {
    const base = 'module=/usr/lib/softhsm/libsofthsm2.so;token=kmsd;pin-file=/etc/kmsd/pin;key-label=kmsd-root';

    it('reads module, token, PIN source, key label, create and max-sessions', () => {
      assert.deepEqual(loadServeConfig({ rootKey: `pkcs11:${base}` }, {}).rootKey, {
        kind: 'pkcs11',
        module: '/usr/lib/softhsm/libsofthsm2.so',
        token: 'kmsd',
        pin: { file: '/etc/kmsd/pin' },
        keyLabel: 'kmsd-root',
        create: false,
        maxSessions: 4,
      });
      const c = loadServeConfig({}, { KMSD_ROOT_KEY: 'pkcs11:module=lib/p11.so;slot=7;pin-env=HSM_PIN;key-label=a%3Bb;create=yes;max-sessions=16' });
      assert.deepEqual(c.rootKey, { kind: 'pkcs11', module: resolve('lib/p11.so'), slot: '7', pin: { env: 'HSM_PIN' }, keyLabel: 'a;b', create: true, maxSessions: 16 });
    });

    it('takes previous root keys from repeated flags or one environment variable', () => {
      assert.deepEqual(loadServeConfig({ previousRootKey: ['file:old.key', `pkcs11:${base}`] }, {}).previousRootKeys.map((k) => k.kind), ['file', 'pkcs11']);
      assert.deepEqual(loadServeConfig({}, { KMSD_PREVIOUS_ROOT_KEY: 'file:/old.key' }).previousRootKeys, [{ kind: 'file', path: '/old.key' }]);
      assert.deepEqual(loadServeConfig({}, {}).previousRootKeys, []);
      rejects({ previousRootKey: ['pkcs11:token=x'] }, {}, '--previous-root-key', 'KMSD_PREVIOUS_ROOT_KEY');
    });

    for (const [spec, message] of [
      ['token=kmsd;pin-file=/p;key-label=k', /module=PATH .* is required/],
      ['module=/m.so;pin-file=/p;key-label=k', /exactly one of token=LABEL and slot=ID/],
      ['module=/m.so;token=a;slot=1;pin-file=/p;key-label=k', /exactly one of token=LABEL and slot=ID/],
      ['module=/m.so;token=a;slot=x;pin-file=/p;key-label=k', /exactly one of token/],
      ['module=/m.so;slot=x;pin-file=/p;key-label=k', /slot must be a slot id/],
      ['module=/m.so;token=a;key-label=k', /exactly one of pin-file=PATH and pin-env=VARIABLE/],
      ['module=/m.so;token=a;pin-file=/p;pin-env=X;key-label=k', /exactly one of pin-file/],
      ['module=/m.so;token=a;pin-env=1X;key-label=k', /pin-env must name an environment variable/],
      ['module=/m.so;token=a;pin-file=/p', /key-label=LABEL .* is required/],
      ['module=/m.so;token=a;pin-file=/p;key-label=k;create=maybe', /create must be yes or no/],
      ['module=/m.so;token=a;pin-file=/p;key-label=k;max-sessions=0', /max-sessions must be/],
      ['module=/m.so;token=a;pin-file=/p;key-label=k;colour=blue', /unknown attribute "colour"/],
      ['module=/m.so;token=a;token=b;pin-file=/p;key-label=k', /"token" is given twice/],
      ['module=/m.so;token=a;pin-file=/p;key-label=', /"key-label" is empty/],
      ['module=/m.so;token=%zz;pin-file=/p;key-label=k', /not valid percent-encoding/],
    ] as const) {
      it(`refuses ${spec}`, () => {
        const m = rejects({ rootKey: `pkcs11:${spec}` }, {}, '--root-key', 'KMSD_ROOT_KEY');
        assert.match(m, message);
      });
    }

    for (const attribute of ['pin', 'pin-value', 'pin-source']) {
      it(`refuses a PIN given as ${attribute}= without repeating it`, () => {
        const m = rejects({ rootKey: `pkcs11:${base};${attribute}=s3cr3t-1234` }, {}, '--root-key', 'KMSD_ROOT_KEY');
        assert.match(m, /a PIN in --root-key would show in ps/);
        assert.equal(m.includes('s3cr3t-1234'), false);
      });
    }
  });
});

describe('test clock', () => {
  it('is off by default and with --test-clock=false', () => {
    assert.equal(loadServeConfig({}, {}).testClock, false);
    assert.equal(loadServeConfig({ testClock: false }, {}).testClock, false);
    assert.equal(loadServeConfig({ testClock: 'off' }, {}).testClock, false);
  });

  it('is refused with --auth iam unless force, naming --test-clock and KMSD_TEST_CLOCK', () => {
    rejects({ testClock: true }, {}, '--test-clock', 'KMSD_TEST_CLOCK');
    rejects({ testClock: true, auth: 'iam' }, {}, '--test-clock', 'KMSD_TEST_CLOCK');
    rejects({}, { KMSD_TEST_CLOCK: '1' }, '--test-clock', 'KMSD_TEST_CLOCK');
    rejects({}, { KMSD_TEST_CLOCK: 'true' }, '--test-clock', 'KMSD_TEST_CLOCK');
    assert.equal(loadServeConfig({ testClock: 'force' }, {}).testClock, true);
    assert.equal(loadServeConfig({}, { KMSD_TEST_CLOCK: 'force', KMSD_AUTH: 'iam' }).testClock, true);
  });

  it('is allowed with --auth none', () => {
    assert.equal(loadServeConfig({ testClock: true, auth: 'none' }, {}).testClock, true);
    assert.equal(loadServeConfig({}, { KMSD_TEST_CLOCK: '1', KMSD_AUTH: 'none' }).testClock, true);
    assert.equal(loadServeConfig({ testClock: 'on', auth: 'none' }, {}).testClock, true);
  });

  it('KMSD_TEST_CLOCK=false or 0 means off, as =true and =1 mean on', () => {
    assert.equal(loadServeConfig({}, { KMSD_TEST_CLOCK: 'false' }).testClock, false);
    assert.equal(loadServeConfig({}, { KMSD_TEST_CLOCK: '0' }).testClock, false);
  });

  it('refuses other values', () => {
    rejects({ testClock: 'yes' }, {}, '--test-clock', 'KMSD_TEST_CLOCK');
  });
});

describe('paths', () => {
  it('resolves a relative data dir, and the database and root key inside it', () => {
    const c = loadServeConfig({ dataDir: 'var/kmsd' }, {});
    assert.equal(c.dataDir, resolve('var/kmsd'));
    assert.deepEqual(c.store, { kind: 'sqlite', path: join(resolve('var/kmsd'), 'kmsd.db') });
    assert.deepEqual(c.rootKey, { kind: 'file', path: join(resolve('var/kmsd'), 'root.key') });
  });

  it('resolves a relative seed file', () => {
    assert.equal(loadServeConfig({ seed: 'seed/keys.yaml' }, {}).seedFile, resolve('seed/keys.yaml'));
    assert.equal(loadServeConfig({}, { KMSD_SEED: '/abs/seed.json' }).seedFile, '/abs/seed.json');
  });
});

describe('other options', () => {
  it('an unknown store names --store and KMSD_STORE', () => {
    rejects({ store: 'mysql' }, {}, '--store', 'KMSD_STORE');
    rejects({}, { KMSD_STORE: 'Postgres' }, '--store', 'KMSD_STORE');
  });

  it('a bad log level names --log-level and KMSD_LOG_LEVEL', () => {
    rejects({ logLevel: 'verbose' }, {}, '--log-level', 'KMSD_LOG_LEVEL');
  });

  it('cache and scheduler numbers must be positive integers', () => {
    rejects({}, { KMSD_CACHE_MAX_KEYS: '0' }, 'cache-max-keys', 'KMSD_CACHE_MAX_KEYS');
    rejects({}, { KMSD_CACHE_TTL_MS: '-5' }, 'cache-ttl-ms', 'KMSD_CACHE_TTL_MS');
    rejects({}, { KMSD_SCHEDULER_INTERVAL_MS: '1.5' }, 'scheduler-interval-ms', 'KMSD_SCHEDULER_INTERVAL_MS');
    rejects({}, { KMSD_CACHE_MAX_KEYS: 'many' }, 'cache-max-keys', 'KMSD_CACHE_MAX_KEYS');
  });
});

describe('PostgreSQL store', () => {
  const url = 'postgres://kmsd:s3cret-pw@db.internal:5432/kms?sslmode=require';

  it('--store postgres with --postgres-url, pool of 10 by default', () => {
    assert.deepEqual(loadServeConfig({ store: 'postgres', postgresUrl: url }, {}).store, { kind: 'postgres', url, poolSize: 10 });
  });

  it('reads KMSD_STORE, KMSD_POSTGRES_URL and KMSD_POSTGRES_POOL_SIZE; flags win', () => {
    const env = { KMSD_STORE: 'postgres', KMSD_POSTGRES_URL: url, KMSD_POSTGRES_POOL_SIZE: '4' };
    assert.deepEqual(loadServeConfig({}, env).store, { kind: 'postgres', url, poolSize: 4 });
    assert.deepEqual(loadServeConfig({ postgresPoolSize: '25', postgresUrl: 'postgresql://h/db' }, env).store, {
      kind: 'postgres',
      url: 'postgresql://h/db',
      poolSize: 25,
    });
  });

  it('needs a URL, and refuses one without --store postgres', () => {
    assert.match(rejects({ store: 'postgres' }, {}, '--postgres-url', 'KMSD_POSTGRES_URL'), /required with --store postgres/);
    assert.match(rejects({ postgresUrl: url }, {}, '--postgres-url', 'KMSD_POSTGRES_URL'), /only used with --store postgres/);
  });

  it('refuses a URL that is not postgres:// without repeating it (it may hold a password)', () => {
    for (const bad of ['mysql://root:hunter22@h/db', 'host=db user=kmsd password=hunter22', 'hunter22']) {
      const message = rejects({ store: 'postgres', postgresUrl: bad }, {}, '--postgres-url', 'KMSD_POSTGRES_URL');
      assert.ok(!message.includes('hunter22'), message);
    }
  });

  it('a pool of at least 2 connections', () => {
    for (const size of ['1', '0', '-3', '2.5', 'ten', '1001']) {
      rejects({ store: 'postgres', postgresUrl: url, postgresPoolSize: size }, {}, '--postgres-pool-size', 'KMSD_POSTGRES_POOL_SIZE');
    }
    assert.equal(loadServeConfig({ store: 'postgres', postgresUrl: url, postgresPoolSize: '2' }, {}).store.kind, 'postgres');
  });

  it('kmsd backup and restore read only the store options, the same way', () => {
    const env = { KMSD_STORE: 'postgres', KMSD_POSTGRES_URL: url, KMSD_AUTH: 'bogus', KMSD_TEST_CLOCK: 'on' };
    assert.deepEqual(loadStoreConfig({ dataDir: '/var/kmsd' }, env), { dataDir: '/var/kmsd', store: { kind: 'postgres', url, poolSize: 10 } });
    assert.deepEqual(loadStoreConfig({}, {}).store, { kind: 'sqlite', path: join(resolve('kmsd-data'), 'kmsd.db') });
    assert.throws(() => loadStoreConfig({ store: 'postgres' }, {}), /--postgres-url \(KMSD_POSTGRES_URL\): required/);
  });
});
