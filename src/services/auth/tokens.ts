import { createHash, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { ERR } from '../../errors/kms-error.js';
import { newId } from '../../domain/ids.js';
import type { Principal, TokenRecord } from '../../domain/principal.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { PrincipalStore } from '../../ports/store.js';

// Bearer tokens: `kmsd1.<token id>.<secret>`. The id finds the record; only SHA-256 of the 256-bit
// secret is stored, and it is compared in constant time. A token is shown once, when issued.

const TOKEN_PATTERN = /^kmsd1\.([0-9a-v]{20})\.([A-Za-z0-9_-]{43})$/;

const hashSecret = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

export function issueToken(random: Random, principalId: string, now: number, expiresAt?: number): { token: string; record: TokenRecord } {
  const id = newId(random, 'tkn');
  const secret = random.bytes(32).toString('base64url');
  const record: TokenRecord = { id, principalId, secretHash: hashSecret(secret), createdAt: now, ...(expiresAt === undefined ? {} : { expiresAt }) };
  return { token: `kmsd1.${id}.${secret}`, record };
}

export interface Authenticator {
  /** Resolves the Authorization header (or gRPC metadata) to a principal, or throws UNAUTHENTICATED. */
  authenticate(authorization: string | undefined): Promise<Principal>;
}

export interface TokenCacheOptions {
  readonly maxTokens: number;
  /** How long a token's record and principal are reused without a store read. */
  readonly ttlMs: number;
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
}): Authenticator & { forget(tokenId: string): void } {
  const opts = d.cache ?? { maxTokens: 10_000, ttlMs: 5_000 };
  const credentials = new LRUCache<string, Credential>({ max: opts.maxTokens, ttl: opts.ttlMs });

  async function lookup(tokenId: string): Promise<Credential | undefined> {
    const hit = credentials.get(tokenId);
    if (hit) return hit;
    const record = await d.store.getToken(tokenId);
    const principal = record && (await d.store.getPrincipal(record.principalId));
    if (!record || !principal) return undefined;
    const found = { record, principal };
    credentials.set(tokenId, found);
    return found;
  }

  return {
    async authenticate(authorization) {
      if (authorization === undefined || authorization === '') throw ERR.unauthenticated('missing Authorization: Bearer token');
      const m = /^Bearer[ ]+(\S+)$/i.exec(authorization.trim());
      const parts = m ? TOKEN_PATTERN.exec(m[1]!) : null;
      if (!parts) throw ERR.unauthenticated('the token is invalid or expired');
      const found = await lookup(parts[1]!);
      const presented = hashSecret(parts[2]!);
      // Compare even when the record is missing, so timing does not tell which ids exist.
      const stored = found?.record.secretHash ?? Buffer.alloc(presented.length);
      const matches = stored.length === presented.length && timingSafeEqual(stored, presented);
      const record = found?.record;
      if (!found || !matches || record!.revokedAt !== undefined || (record!.expiresAt !== undefined && d.clock.now() >= record!.expiresAt)) {
        throw ERR.unauthenticated('the token is invalid or expired');
      }
      return found.principal;
    },
    /** Drops a token from the cache at once (revocation, principal deletion). */
    forget(tokenId) {
      credentials.delete(tokenId);
    },
  };
}

/** --auth none: everyone is the development administrator. */
export function devModeAuthenticator(principal: Principal): Authenticator {
  return { authenticate: async () => principal };
}
