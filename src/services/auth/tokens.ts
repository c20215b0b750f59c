import { hash, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { ERR } from '../../errors/kms-error.js';
import { newId } from '../../domain/ids.js';
import { ANONYMOUS_CALLER, type Caller, type Principal, type TokenRecord } from '../../domain/principal.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { PrincipalStore } from '../../ports/store.js';

// Bearer tokens: `kmsd1.<token id>.<secret>`. The id finds the record; only SHA-256 of the 256-bit
// secret is stored, and it is compared in constant time. A token is shown once, when issued.

const TOKEN_PATTERN = /^kmsd1\.([0-9a-v]{20})\.([A-Za-z0-9_-]{43})$/;

// crypto.hash: one call, no Hash object, on every authenticated request.
const hashSecret = (secret: string): Buffer => hash('sha256', secret, 'buffer');

export function issueToken(random: Random, principalId: string, now: number, expiresAt?: number): { token: string; record: TokenRecord } {
  const id = newId(random, 'tkn');
  const secret = random.bytes(32).toString('base64url');
  const record: TokenRecord = { id, principalId, secretHash: hashSecret(secret), createdAt: now, ...(expiresAt === undefined ? {} : { expiresAt }) };
  return { token: `kmsd1.${id}.${secret}`, record };
}

export interface Authenticator {
  /**
   * Resolves the Authorization header (or gRPC metadata) to the caller: a principal for a valid
   * token, anonymous without the header (only system:allUsers bindings then apply). A header that
   * is present but invalid is UNAUTHENTICATED; too many of those from one peer, RESOURCE_EXHAUSTED.
   */
  authenticate(authorization: string | undefined, peer: string): Promise<Caller>;
}

/** `Bearer <token>` (IAM tokens, what the SDK sends) and `Api-Key <token>` (the Yandex API-key scheme). */
const SCHEME = /^(?:Bearer|Api-Key)[ ]+(\S+)$/i;

export interface TokenCacheOptions {
  readonly maxTokens: number;
  /** How long a token's record and principal are reused without a store read. */
  readonly ttlMs: number;
  /** Whether cached lookups may be used and kept (false while the change feed may miss changes). Default: always. */
  readonly trusted?: () => boolean;
}

interface Credential {
  readonly record: TokenRecord;
  readonly principal: Principal;
}

/**
 * Resolves bearer tokens through the store, caching each token's record and principal briefly so a
 * crypto call does not pay two store reads. The secret is still hashed and compared on every request,
 * and expiry is checked against the clock every time; only the lookup is cached.
 */
export function tokenAuthenticator(d: {
  store: Pick<PrincipalStore, 'getToken' | 'getPrincipal'>;
  clock: Clock;
  cache?: TokenCacheOptions;
  limiter?: FailureLimiter;
}): Authenticator & { forget(tokenId: string): void; forgetAll(): void } {
  const opts = d.cache ?? { maxTokens: 10_000, ttlMs: 5_000 };
  const trusted = opts.trusted ?? (() => true);
  const credentials = new LRUCache<string, Credential>({ max: opts.maxTokens, ttl: opts.ttlMs });
  // Bumped by every forget: a lookup that started before one must not put what it read back.
  let epoch = 0;

  async function lookup(tokenId: string): Promise<Credential | undefined> {
    const caching = trusted();
    const hit = caching ? credentials.get(tokenId) : undefined;
    if (hit) return hit;
    const started = epoch;
    const record = await d.store.getToken(tokenId);
    const principal = record && (await d.store.getPrincipal(record.principalId));
    if (!record || !principal) return undefined;
    const found = { record, principal };
    if (caching && started === epoch) credentials.set(tokenId, found);
    return found;
  }

  function fail(peer: string, blocked: boolean): never {
    if (blocked) throw ERR.resourceExhausted('too many failed authentication attempts from this address; retry later');
    d.limiter?.failed(peer);
    throw ERR.unauthenticated('the token is invalid or expired');
  }

  return {
    async authenticate(authorization, peer) {
      if (authorization === undefined || authorization === '') return ANONYMOUS_CALLER;
      const blocked = d.limiter?.blocked(peer) ?? false;
      const m = SCHEME.exec(authorization.trim());
      const parts = m ? TOKEN_PATTERN.exec(m[1]!) : null;
      if (!parts) return fail(peer, blocked);
      // A peer that failed too often is served only from tokens already verified and cached, so
      // guessing costs it no store reads and others are not slowed down.
      const found = blocked ? credentials.get(parts[1]!) : await lookup(parts[1]!);
      const presented = hashSecret(parts[2]!);
      // Compare even when the record is missing, so timing does not tell which ids exist.
      const stored = found?.record.secretHash ?? Buffer.alloc(presented.length);
      const matches = stored.length === presented.length && timingSafeEqual(stored, presented);
      const record = found?.record;
      if (!found || !matches || record!.revokedAt !== undefined || (record!.expiresAt !== undefined && d.clock.now() >= record!.expiresAt)) {
        return fail(peer, blocked);
      }
      return { kind: 'principal', principal: found.principal };
    },
    /** Drops a token from the cache at once (revocation, principal deletion). */
    forget(tokenId) {
      epoch++;
      credentials.delete(tokenId);
    },
    /** Drops every cached token (a principal changed, or changes may have been missed). */
    forgetAll() {
      epoch++;
      credentials.clear();
    },
  };
}

/** --auth none: everyone is the development administrator. */
export function devModeAuthenticator(caller: Caller): Authenticator {
  return { authenticate: async () => caller };
}

/**
 * Counts failed authentications per peer address in a fixed window; a peer over the limit is
 * blocked until its window ends. Bounded memory: the least recently seen peers are dropped first.
 */
export class FailureLimiter {
  private readonly windows: LRUCache<string, { start: number; failures: number }>;

  constructor(
    private readonly clock: Clock,
    readonly maxFailures = 20,
    readonly windowMs = 60_000,
    maxPeers = 100_000,
  ) {
    this.windows = new LRUCache({ max: maxPeers });
  }

  private current(peer: string): { start: number; failures: number } | undefined {
    const w = this.windows.get(peer);
    if (w && this.clock.now() - w.start >= this.windowMs) {
      this.windows.delete(peer);
      return undefined;
    }
    return w;
  }

  blocked(peer: string): boolean {
    return (this.current(peer)?.failures ?? 0) >= this.maxFailures;
  }

  failed(peer: string): void {
    const w = this.current(peer);
    if (w) w.failures++;
    else this.windows.set(peer, { start: this.clock.now(), failures: 1 });
  }
}
