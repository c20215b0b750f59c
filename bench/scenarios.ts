import { randomBytes } from 'node:crypto';
import { runAutocannon, type Measurement } from './load.js';
import type { RunningTarget } from './targets.js';

// What the benchmark measures. Each scenario compares a subject (kmsd in some configuration) with
// a baseline that does the same irreducible work; the runner interleaves them. A new transport
// (gRPC) brings its own verify/measure; a new kmsd configuration (PostgreSQL, HSM) is a new target
// named as `subject`.

export interface Scenario {
  readonly name: string;
  /** Target names (bench/targets.ts). */
  readonly baseline: string;
  readonly subject: string;
  /** One request; throws unless the target answers 200 with a well-formed body. */
  verify(target: RunningTarget): Promise<void>;
  measure(target: RunningTarget, o: { connections: number; durationS: number }): Promise<Measurement>;
}

const AAD_CONTEXT = Buffer.from('ctx').toString('base64'); // "Y3R4"
const PLAINTEXT_64 = randomBytes(64).toString('base64');
const NONCE = 12;
const TAG = 16;

/** A REST crypto call POSTed to /kms/v1/keys/{keyId}:{verb} with a fixed JSON body. */
function restCryptoScenario(p: {
  name: string;
  verb: string;
  body: Record<string, string>;
  check: (answer: Record<string, unknown>, target: RunningTarget) => string | undefined;
  baseline?: string;
  subject?: string;
}): Scenario {
  const request = (t: RunningTarget) => ({
    method: 'POST' as const,
    url: `${t.origin}/kms/v1/keys/${t.keyId}:${p.verb}`,
    headers: { ...t.headers, 'content-type': 'application/json' },
    body: JSON.stringify(p.body),
  });
  return {
    name: p.name,
    baseline: p.baseline ?? 'baseline',
    subject: p.subject ?? 'kmsd',
    async verify(t) {
      const r = request(t);
      const res = await fetch(r.url, { method: r.method, headers: r.headers, body: r.body });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`${t.name} ${p.name}: answered ${res.status}: ${text.slice(0, 300)}`);
      let answer: unknown;
      try {
        answer = JSON.parse(text);
      } catch {
        throw new Error(`${t.name} ${p.name}: answer is not JSON: ${text.slice(0, 300)}`);
      }
      const problem =
        answer !== null && typeof answer === 'object' && !Array.isArray(answer) ? p.check(answer as Record<string, unknown>, t) : 'not a JSON object';
      if (problem) throw new Error(`${t.name} ${p.name}: ${problem}: ${text.slice(0, 300)}`);
    },
    measure: (t, o) => runAutocannon(request(t), o),
  };
}

const b64len = (v: unknown): number | undefined => (typeof v === 'string' ? Buffer.from(v, 'base64').length : undefined);

/** A v1 ciphertext of `plaintextLength` bytes under `versionId`: K, 0x01, L, version id, nonce, sealed ‖ tag. */
function checkCiphertext(v: unknown, versionId: unknown, plaintextLength: number): string | undefined {
  if (typeof v !== 'string' || typeof versionId !== 'string') return 'ciphertext or versionId missing';
  const c = Buffer.from(v, 'base64');
  const expected = 3 + versionId.length + NONCE + plaintextLength + TAG;
  if (c[0] !== 0x4b || c[1] !== 0x01 || c.length !== expected) return `not a v1 ciphertext of ${plaintextLength} bytes`;
  if (c.toString('latin1', 3, 3 + versionId.length) !== versionId) return 'ciphertext header names another version';
  return undefined;
}

export const SCENARIOS: readonly Scenario[] = [
  restCryptoScenario({
    name: 'REST GenerateDataKey',
    verb: 'generateDataKey',
    body: { aadContext: AAD_CONTEXT },
    check: (a, t) => {
      if (a.keyId !== t.keyId) return 'wrong keyId';
      if (b64len(a.dataKeyPlaintext) !== 32) return 'dataKeyPlaintext is not 32 bytes';
      return checkCiphertext(a.dataKeyCiphertext, a.versionId, 32);
    },
  }),
  restCryptoScenario({
    name: 'REST Encrypt 64 B',
    verb: 'encrypt',
    body: { plaintext: PLAINTEXT_64, aadContext: AAD_CONTEXT },
    check: (a, t) => (a.keyId !== t.keyId ? 'wrong keyId' : checkCiphertext(a.ciphertext, a.versionId, 64)),
  }),
];
