import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { cryptoRandom } from '../../adapters/random.js';
import { openSqliteStore } from '../../adapters/store-sqlite/sqlite-store.js';
import { ANONYMOUS_CALLER, DEV_MODE_CALLER, type Caller, type Principal, type TokenRecord } from '../../domain/principal.js';
import { Code, isKmsError } from '../../errors/kms-error.js';
import type { Store } from '../../ports/store.js';
import { devModeAuthenticator, FailureLimiter, issueToken, tokenAuthenticator, type Authenticator } from './tokens.js';

// Bearer tokens (DESIGN.md §6): a valid token names its principal; every way a token can be wrong
// gets the same UNAUTHENTICATED answer, so a caller learns nothing about which ids exist; and
// only a hash of the secret is kept.

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const alice: Principal = { id: 'ajealice', type: 'userAccount', name: 'alice', createdAt: T0 };
const asAlice: Caller = { kind: 'principal', principal: alice };
const PEER = '192.0.2.1';
const TOKEN_FAILURE = 'the token is invalid or expired';

let store: Store;
let now: number;
let auth: Authenticator;

beforeEach(async () => {
  store = openSqliteStore(':memory:');
  await store.createPrincipal(alice);
  now = T0;
  auth = tokenAuthenticator({ store, clock: { now: () => now } });
});

afterEach(async () => {
  await store.close();
});

async function issue(fields: Partial<TokenRecord> = {}, expiresAt?: number): Promise<{ token: string; record: TokenRecord }> {
  const issued = issueToken(cryptoRandom, alice.id, T0, expiresAt);
  const record = { ...issued.record, ...fields };
  await store.createToken(record);
  return { token: issued.token, record };
}

async function unauthenticated(authorization: string | undefined, message?: string): Promise<string> {
  let seen = '';
  await assert.rejects(auth.authenticate(authorization, PEER), (e: unknown) => {
    assert.ok(isKmsError(e), `expected a KmsError, got ${String(e)}`);
    assert.equal(e.code, Code.Unauthenticated, e.message);
    if (message !== undefined) assert.equal(e.message, message);
    seen = e.message;
    return true;
  });
  return seen;
}

/** A character of the base64url alphabet other than `c`. */
const other = (c: string) => (c === 'A' ? 'B' : 'A');

describe('issueToken', () => {
  it('has the shape kmsd1.<20-character id>.<43-character secret>', () => {
    const { token, record } = issueToken(cryptoRandom, alice.id, T0);
    const m = /^kmsd1\.([0-9a-v]{20})\.([A-Za-z0-9_-]{43})$/.exec(token);
    assert.ok(m, token);
    assert.equal(m[1], record.id);
    assert.equal(record.principalId, alice.id);
    assert.equal(record.createdAt, T0);
    assert.equal(record.expiresAt, undefined);
    assert.equal(issueToken(cryptoRandom, alice.id, T0, T0 + HOUR).record.expiresAt, T0 + HOUR);
  });

  it('issues a different token every time', () => {
    const tokens = new Set(Array.from({ length: 50 }, () => issueToken(cryptoRandom, alice.id, T0).token));
    assert.equal(tokens.size, 50);
  });

  it('keeps only a hash: the secret appears nowhere in the record, issued or stored', async () => {
    const { token, record } = await issue();
    const secret = token.split('.')[2]!;
    const secretBytes = Buffer.from(secret, 'base64url');
    const forms = [token, secret, secretBytes.toString('hex'), secretBytes.toString('base64'), Buffer.from(secret).toString('hex'), Buffer.from(secret).toString('base64')];
    const stored = await store.getToken(record.id);
    assert.ok(stored);
    for (const r of [record, stored]) {
      const dump = JSON.stringify(r) + JSON.stringify({ ...r, secretHash: r.secretHash.toString('hex') }) + JSON.stringify({ ...r, secretHash: r.secretHash.toString('base64') });
      for (const form of forms) assert.ok(!dump.includes(form), `record holds ${form}`);
      assert.ok(!r.secretHash.includes(secretBytes), 'not the raw secret bytes');
      assert.ok(!r.secretHash.includes(Buffer.from(secret)), 'not the secret text');
      assert.equal(r.secretHash.length, 32, 'a SHA-256');
    }
  });
});

describe('tokenAuthenticator', () => {
  it('a valid token gives its principal', async () => {
    const { token } = await issue();
    assert.deepEqual(await auth.authenticate(`Bearer ${token}`, PEER), asAlice);
  });

  it('the scheme is case-insensitive and surrounding spaces are tolerated', async () => {
    const { token } = await issue();
    assert.deepEqual(await auth.authenticate(`bearer ${token}`, PEER), asAlice);
    assert.deepEqual(await auth.authenticate(`BEARER  ${token} `, PEER), asAlice);
  });

  it('a token works until its expiry and not from then on', async () => {
    const { token } = await issue({}, T0 + HOUR);
    now = T0 + HOUR - 1;
    assert.deepEqual(await auth.authenticate(`Bearer ${token}`, PEER), asAlice);
    now = T0 + HOUR;
    await unauthenticated(`Bearer ${token}`, TOKEN_FAILURE);
  });

  it('every token failure gets UNAUTHENTICATED with one and the same message', async () => {
    const { token } = await issue();
    const [prefix, id, secret] = token.split('.') as [string, string, string];
    const expired = (await issue({}, T0 - 1)).token;
    const revoked = (await issue({ revokedAt: T0 - 1 })).token;
    const unknownId = issueToken(cryptoRandom, alice.id, T0).token; // never stored
    const wrongSecret = `${prefix}.${id}.${secret.slice(0, -1)}${other(secret.slice(-1))}`;
    const swappedSecret = `${prefix}.${id}.${issueToken(cryptoRandom, alice.id, T0).token.split('.')[2]}`;

    const failures: [string, string][] = [
      ['wrong secret', `Bearer ${wrongSecret}`],
      ['another token’s secret', `Bearer ${swappedSecret}`],
      ['unknown id', `Bearer ${unknownId}`],
      ['expired', `Bearer ${expired}`],
      ['revoked', `Bearer ${revoked}`],
      ['malformed: garbage', 'Bearer not-a-token'],
      ['malformed: truncated', `Bearer ${token.slice(0, -1)}`],
      ['malformed: too long', `Bearer ${token}A`],
      ['malformed: wrong prefix', `Bearer kmsd2.${id}.${secret}`],
      ['malformed: upper-case id', `Bearer ${prefix}.${id.toUpperCase()}.${secret}`],
      ['malformed: two tokens', `Bearer ${token} ${token}`],
      ['Basic scheme', `Basic ${Buffer.from(`user:${token}`).toString('base64')}`],
      ['Basic scheme with the token', `Basic ${token}`],
      ['no scheme', token],
      ['scheme only', 'Bearer'],
      ['scheme and blank', 'Bearer   '],
    ];
    for (const [what, header] of failures) {
      const message = await unauthenticated(header);
      assert.equal(message, TOKEN_FAILURE, what);
      assert.ok(!message.includes(id) && !message.includes(secret), `${what}: the message echoes the token`);
    }
  });

  it('a missing header makes the caller anonymous (only system:allUsers bindings apply to it)', async () => {
    assert.equal(await auth.authenticate(undefined, PEER), ANONYMOUS_CALLER);
    assert.equal(await auth.authenticate('', PEER), ANONYMOUS_CALLER);
  });

  it('accepts the Api-Key scheme of the Yandex APIs for the same tokens', async () => {
    const { token } = await issue();
    assert.deepEqual(await auth.authenticate(`Api-Key ${token}`, PEER), asAlice);
    assert.deepEqual(await auth.authenticate(`api-key ${token}`, PEER), asAlice);
  });

  it('a revoked token stays revoked even before its expiry', async () => {
    const { token } = await issue({ revokedAt: T0 + HOUR }, T0 + 10 * HOUR);
    now = T0 + 2 * HOUR;
    await unauthenticated(`Bearer ${token}`, TOKEN_FAILURE);
  });
});

describe('devModeAuthenticator', () => {
  it('treats every caller, with or without a token, as the development administrator', async () => {
    const dev = devModeAuthenticator(DEV_MODE_CALLER);
    for (const header of [undefined, '', 'Bearer whatever', 'Basic x']) assert.equal(await dev.authenticate(header, PEER), DEV_MODE_CALLER);
  });
});

describe('tokenAuthenticator cache', () => {
  it('reads the store once per token while cached, still checks the secret and expiry every time, and forgets on demand', async () => {
    const { token, record } = await issue({}, T0 + HOUR);
    let reads = 0;
    const counting = {
      getToken: (id: string) => (reads++, store.getToken(id)),
      getPrincipal: (id: string) => (reads++, store.getPrincipal(id)),
    };
    const cached = tokenAuthenticator({ store: counting, clock: { now: () => now }, cache: { maxTokens: 10, ttlMs: 60_000 } });
    for (let i = 0; i < 5; i++) assert.deepEqual(await cached.authenticate(`Bearer ${token}`, PEER), asAlice);
    assert.equal(reads, 2, 'one token read and one principal read for five requests');

    const [prefix, id, secret] = token.split('.') as [string, string, string];
    const wrong = `${prefix}.${id}.${other(secret[0]!)}${secret.slice(1)}`;
    await assert.rejects(cached.authenticate(`Bearer ${wrong}`, PEER), { code: Code.Unauthenticated });

    now = T0 + HOUR;
    await assert.rejects(cached.authenticate(`Bearer ${token}`, PEER), { code: Code.Unauthenticated }, 'expiry is checked on cached tokens');
    now = T0;
    cached.forget(record.id);
    await cached.authenticate(`Bearer ${token}`, PEER);
    assert.equal(reads, 4, 'forget makes the next request read the store again');
  });

  it('forgets everything on forgetAll, and a lookup that raced a forget is not kept', async () => {
    const { token } = await issue();
    let reads = 0;
    let hold: Promise<void> | undefined;
    const counting = {
      getToken: async (id: string) => {
        reads++;
        const found = await store.getToken(id);
        await hold;
        return found;
      },
      getPrincipal: (id: string) => store.getPrincipal(id),
    };
    const cached = tokenAuthenticator({ store: counting, clock: { now: () => now }, cache: { maxTokens: 10, ttlMs: 60_000 } });
    await cached.authenticate(`Bearer ${token}`, PEER);
    cached.forgetAll();
    await cached.authenticate(`Bearer ${token}`, PEER);
    assert.equal(reads, 2);

    cached.forgetAll();
    let release!: () => void;
    hold = new Promise((r) => (release = r));
    const racing = cached.authenticate(`Bearer ${token}`, PEER); // reads, then waits …
    await new Promise((r) => setImmediate(r));
    cached.forgetAll(); // … while the token changes elsewhere
    release();
    hold = undefined;
    await racing;
    await cached.authenticate(`Bearer ${token}`, PEER);
    assert.equal(reads, 4, 'what the racing lookup read was not kept');
  });

  it('neither uses nor keeps cached tokens while it may not trust them', async () => {
    const { token } = await issue();
    let reads = 0;
    const counting = {
      getToken: (id: string) => (reads++, store.getToken(id)),
      getPrincipal: (id: string) => store.getPrincipal(id),
    };
    let trusted = false;
    const cached = tokenAuthenticator({ store: counting, clock: { now: () => now }, cache: { maxTokens: 10, ttlMs: 60_000, trusted: () => trusted } });
    for (let i = 0; i < 3; i++) await cached.authenticate(`Bearer ${token}`, PEER);
    assert.equal(reads, 3, 'every request reads the store');
    trusted = true;
    for (let i = 0; i < 3; i++) await cached.authenticate(`Bearer ${token}`, PEER);
    assert.equal(reads, 4, 'cached again once trusted');
  });
});

describe('failed-authentication limit per peer', () => {
  it('blocks a peer after too many bad tokens with RESOURCE_EXHAUSTED, without store reads, and lets other peers and cached good tokens through', async () => {
    const { token } = await issue();
    let reads = 0;
    const counting = {
      getToken: (id: string) => (reads++, store.getToken(id)),
      getPrincipal: (id: string) => (reads++, store.getPrincipal(id)),
    };
    let t = T0;
    const limiter = new FailureLimiter({ now: () => t }, 5, 60_000);
    const limited = tokenAuthenticator({ store: counting, clock: { now: () => now }, limiter });
    // A good token of this peer, verified before the attack, is cached.
    assert.deepEqual(await limited.authenticate(`Bearer ${token}`, PEER), asAlice);
    const guess = () => `Bearer ${issueToken(cryptoRandom, alice.id, T0).token}`;
    for (let i = 0; i < 5; i++) await assert.rejects(limited.authenticate(guess(), PEER), { code: Code.Unauthenticated });
    const readsBefore = reads;
    for (let i = 0; i < 50; i++) await assert.rejects(limited.authenticate(guess(), PEER), { code: Code.ResourceExhausted });
    assert.equal(reads, readsBefore, 'a blocked peer costs no store reads');
    await assert.rejects(limited.authenticate('Bearer garbage', PEER), { code: Code.ResourceExhausted });
    assert.deepEqual(await limited.authenticate(`Bearer ${token}`, PEER), asAlice, 'a cached good token of the blocked peer still works');
    await assert.rejects(limited.authenticate(guess(), '192.0.2.2'), { code: Code.Unauthenticated }, 'another peer is not blocked');
    t += 60_000;
    await assert.rejects(limited.authenticate(guess(), PEER), { code: Code.Unauthenticated }, 'the block ends with its window');
  });
});
