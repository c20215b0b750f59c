// The SoftHSM2 token the PKCS#11 tests use, from the environment scripts/ensure-softhsm.sh prints
// (.ci/run evals it). Missing settings fail those tests, in CI and elsewhere, with how to fix it;
// KMSD_TEST_PKCS11_MODULE=skip skips them on purpose (never in CI).
import { it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';

export interface SoftHsm {
  readonly module: string;
  readonly token: string;
  readonly pinFile: string;
}

function configured(): SoftHsm | { problem: string } | 'skip' {
  const env = process.env;
  if (env.KMSD_TEST_PKCS11_MODULE === 'skip' && !env.CI) return 'skip';
  const missing = ['KMSD_TEST_PKCS11_MODULE', 'KMSD_TEST_PKCS11_TOKEN', 'KMSD_TEST_PKCS11_PIN_FILE', 'SOFTHSM2_CONF'].filter((v) => !env[v]);
  if (missing.length > 0) return { problem: `${missing.join(', ')} not set` };
  if (!existsSync(env.KMSD_TEST_PKCS11_MODULE!)) return { problem: `the PKCS#11 module ${env.KMSD_TEST_PKCS11_MODULE} does not exist` };
  if (!existsSync(env.KMSD_TEST_PKCS11_PIN_FILE!)) return { problem: `the PIN file ${env.KMSD_TEST_PKCS11_PIN_FILE} does not exist` };
  return { module: env.KMSD_TEST_PKCS11_MODULE!, token: env.KMSD_TEST_PKCS11_TOKEN!, pinFile: env.KMSD_TEST_PKCS11_PIN_FILE! };
}

/**
 * Runs `tests` with the SoftHSM2 token, or registers one failing test that says what is missing
 * (one skipped test with KMSD_TEST_PKCS11_MODULE=skip outside CI).
 */
export function withSoftHsm(name: string, tests: (hsm: SoftHsm) => void): void {
  const c = configured();
  if (c === 'skip') {
    it(name, { skip: 'KMSD_TEST_PKCS11_MODULE=skip: the PKCS#11 tests do not run' }, () => {});
  } else if ('problem' in c) {
    it(`${name}: a SoftHSM2 token is configured`, () => {
      throw new Error(
        `no SoftHSM2 token for the PKCS#11 tests: ${c.problem}. ` +
          (process.env.CI
            ? 'CI must provide it: .ci/run evals scripts/ensure-softhsm.sh.'
            : 'Run eval "$(scripts/ensure-softhsm.sh)" (it installs softhsm2 if needed and makes a token), or set KMSD_TEST_PKCS11_MODULE=skip.'),
      );
    });
  } else {
    tests(c);
  }
}

/** A root-key label no other test uses (all tests share the one token). */
export function uniqueLabel(prefix = 'kmsd-test-root'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** The --root-key spec for `label` in the test token. */
export function pkcs11Spec(hsm: SoftHsm, label: string, extra: Readonly<Record<string, string>> = { create: 'yes' }): string {
  const attrs = { module: hsm.module, token: hsm.token, 'pin-file': hsm.pinFile, 'key-label': label, ...extra };
  return `pkcs11:${Object.entries(attrs)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join(';')}`;
}
