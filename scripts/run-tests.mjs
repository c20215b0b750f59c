#!/usr/bin/env node
// `npm test`: builds the server (integration tests run the built `kmsd` like a user does), makes
// sure the real PostgreSQL and SoftHSM2 the tests need are there, then runs every *.test.ts under
// src/ and test/ with node's own test runner. Extra arguments select files:
//   npm test -- test/integration/crypto.test.ts
// KMSD_TEST_POSTGRES_URL and the KMSD_TEST_PKCS11_* variables, when set, are used as they are
// (`skip` skips those suites on purpose, outside CI); when unset, scripts/ensure-postgres.sh and
// scripts/ensure-softhsm.sh provide them, installing Debian's packages on a fresh machine.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function provision(env) {
  if (!env.KMSD_TEST_POSTGRES_URL) {
    env.KMSD_TEST_POSTGRES_URL = execFileSync('scripts/ensure-postgres.sh', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  }
  if (!env.KMSD_TEST_PKCS11_MODULE) {
    const lines = execFileSync('scripts/ensure-softhsm.sh', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env });
    for (const m of lines.matchAll(/^export (\w+)='([^']*)'$/gm)) env[m[1]] = m[2];
  }
  return env;
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...findTests(path));
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const selected = process.argv.slice(2);
const files = selected.length > 0 ? selected : [...findTests('src'), ...findTests('test')].sort();
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: provision({ ...process.env, NODE_ENV: 'test' }) },
);
process.exit(result.status ?? 1);
