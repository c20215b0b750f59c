import { createHash, timingSafeEqual } from 'node:crypto';
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

export function tokenAuthenticator(d: { store: Pick<PrincipalStore, 'getToken' | 'getPrincipal'>; clock: Clock }): Authenticator {
  return {
    async authenticate(authorization) {
      if (authorization === undefined || authorization === '') throw ERR.unauthenticated('missing Authorization: Bearer token');
      const m = /^Bearer[ ]+(\S+)$/i.exec(authorization.trim());
      const parts = m ? TOKEN_PATTERN.exec(m[1]!) : null;
      if (!parts) throw ERR.unauthenticated('the token is invalid or expired');
      const record = await d.store.getToken(parts[1]!);
      const presented = hashSecret(parts[2]!);
      // Compare even when the record is missing, so timing does not tell which ids exist.
      const stored = record?.secretHash ?? Buffer.alloc(presented.length);
      const matches = stored.length === presented.length && timingSafeEqual(stored, presented);
      const now = d.clock.now();
      if (!record || !matches || record.revokedAt !== undefined || (record.expiresAt !== undefined && now >= record.expiresAt)) {
        throw ERR.unauthenticated('the token is invalid or expired');
      }
      const principal = await d.store.getPrincipal(record.principalId);
      if (!principal) throw ERR.unauthenticated('the token is invalid or expired');
      return principal;
    },
  };
}

/** --auth none: everyone is the development administrator. */
export function devModeAuthenticator(principal: Principal): Authenticator {
  return { authenticate: async () => principal };
}
