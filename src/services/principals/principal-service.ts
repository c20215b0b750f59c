import { newId } from '../../domain/ids.js';
import type { Page } from '../../domain/paging.js';
import { effectivePageSize } from '../../domain/paging.js';
import type { Principal, PrincipalType, TokenRecord } from '../../domain/principal.js';
import { ERR } from '../../errors/kms-error.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { PrincipalStore } from '../../ports/store.js';
import type { Authorizer } from '../access/authorizer.js';
import type { AuditLog } from '../audit/audit-log.js';
import { note } from '../audit/trail.js';
import { issueToken } from '../auth/tokens.js';
import type { CallContext } from '../context.js';

// kmsd's own identity API: principals (user and service accounts) and their tokens. Managing them
// needs kms.admin on the whole installation. A token is returned once, when it is issued.

const MAX_NAME = 63;
const MAX_DESCRIPTION = 256;
/** Tokens live at most ten years; without expiresIn they do not expire. */
const MAX_TOKEN_LIFETIME_MS = 3650 * 86_400_000;

export interface PrincipalServiceDeps {
  readonly store: PrincipalStore;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
  readonly random: Random;
  readonly audit?: Pick<AuditLog, 'forCommit' | 'committed'>;
  /** A principal or token stopped being valid: forget cached credentials and grants at once. */
  readonly onRevoke: (tokenIds: readonly string[]) => void;
}

export interface IssuedToken {
  /** The bearer token; shown only in this response. */
  readonly token: string;
  readonly record: TokenRecord;
}

export function principalService(d: PrincipalServiceDeps) {
  const admin = (ctx: CallContext) => d.authorizer.authorize(ctx.caller, 'kmsd.principals.manage', {});

  async function existing(principalId: string): Promise<Principal> {
    const p = await d.store.getPrincipal(principalId);
    if (!p) throw ERR.notFound(`principal ${principalId} not found`);
    return p;
  }

  function text(value: unknown, field: string, max: number, required: boolean): string | undefined {
    if (value === undefined || value === '') {
      if (required) throw ERR.field(field, 'required');
      return undefined;
    }
    if (typeof value !== 'string') throw ERR.field(field, 'must be a string');
    if (value.length > max) throw ERR.field(field, `at most ${max} characters`);
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (/[\u0000-\u001f\u007f]/.test(value)) throw ERR.field(field, 'must not contain control characters');
    return value;
  }

  return {
    async create(ctx: CallContext, input: { type: unknown; name: unknown; description?: unknown }): Promise<Principal> {
      await admin(ctx);
      if (input.type !== 'serviceAccount' && input.type !== 'userAccount') throw ERR.field('type', 'must be serviceAccount or userAccount');
      const name = text(input.name, 'name', MAX_NAME, true)!;
      const description = text(input.description, 'description', MAX_DESCRIPTION, false);
      const p: Principal = {
        id: newId(d.random, 'aje'),
        type: input.type as PrincipalType,
        name,
        ...(description === undefined ? {} : { description }),
        createdAt: d.clock.now(),
      };
      note(ctx, { resourceId: p.id });
      const audit = d.audit?.forCommit(ctx);
      await d.store.createPrincipal(p, audit);
      d.audit?.committed(ctx);
      return p;
    },

    async get(ctx: CallContext, id: string): Promise<Principal> {
      note(ctx, { resourceId: id });
      await admin(ctx);
      return existing(id);
    },

    async list(ctx: CallContext, pageSize: number, pageToken: string): Promise<Page<Principal>> {
      await admin(ctx);
      return d.store.listPrincipals({ pageSize: effectivePageSize(pageSize), pageToken });
    },

    /** Removes the principal, its tokens and every binding naming it, in one transaction. */
    async delete(ctx: CallContext, id: string): Promise<void> {
      note(ctx, { resourceId: id });
      await admin(ctx);
      if (ctx.caller.kind === 'principal' && ctx.caller.principal.id === id) throw ERR.failedPrecondition('a principal cannot delete itself');
      const audit = d.audit?.forCommit(ctx);
      const tokens = await d.store.deletePrincipal(id, audit);
      if (tokens === undefined) throw ERR.notFound(`principal ${id} not found`);
      d.audit?.committed(ctx);
      d.onRevoke(tokens);
    },

    async issueToken(ctx: CallContext, principalId: string, input: { expiresInMs?: number; description?: unknown }): Promise<IssuedToken> {
      note(ctx, { resourceId: principalId });
      await admin(ctx);
      await existing(principalId);
      const description = text(input.description, 'description', MAX_DESCRIPTION, false);
      if (input.expiresInMs !== undefined && !(input.expiresInMs > 0 && input.expiresInMs <= MAX_TOKEN_LIFETIME_MS)) {
        throw ERR.field('expires_in', 'must be a positive duration of at most 3650 days');
      }
      const now = d.clock.now();
      const issued = issueToken(d.random, principalId, now, input.expiresInMs === undefined ? undefined : now + input.expiresInMs);
      const record: TokenRecord = description === undefined ? issued.record : { ...issued.record, description };
      const audit = d.audit?.forCommit(ctx);
      await d.store.createToken(record, audit);
      d.audit?.committed(ctx);
      return { token: issued.token, record };
    },

    async listTokens(ctx: CallContext, principalId: string): Promise<TokenRecord[]> {
      note(ctx, { resourceId: principalId });
      await admin(ctx);
      await existing(principalId);
      return d.store.listTokens(principalId);
    },

    async revokeToken(ctx: CallContext, tokenId: string): Promise<void> {
      note(ctx, { resourceId: tokenId });
      await admin(ctx);
      const audit = d.audit?.forCommit(ctx);
      if (!(await d.store.revokeToken(tokenId, d.clock.now(), audit))) throw ERR.notFound(`token ${tokenId} not found`);
      d.audit?.committed(ctx);
      d.onRevoke([tokenId]);
    },
  };
}

export type PrincipalService = ReturnType<typeof principalService>;
