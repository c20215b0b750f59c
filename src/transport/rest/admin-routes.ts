import { Readable } from 'node:stream';
import { create, fromJson, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { DurationSchema, durationMs } from '@bufbuild/protobuf/wkt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GLOBAL_SCOPE, type BindingDelta, type Scope } from '../../domain/access.js';
import type { AuditFilter } from '../../domain/audit.js';
import type { Principal, TokenRecord } from '../../domain/principal.js';
import { ERR } from '../../errors/kms-error.js';
import {
  AccessBindingAction,
  AccessBindingSchema,
  AccessBindingsOperationResultSchema,
  SetAccessBindingsRequestSchema,
  UpdateAccessBindingsRequestSchema,
} from '../../gen/yandex/cloud/access/access_pb.js';
import type { AccessService } from '../../services/access/access-service.js';
import type { AuditLog } from '../../services/audit/audit-log.js';
import type { Authorizer } from '../../services/access/authorizer.js';
import type { PrincipalService } from '../../services/principals/principal-service.js';
import { actionFromPb, bindingFromPb, bindingToPb } from '../shared/access-messages.js';
import { validateRequest } from '../shared/validation.js';
import { splitCustomVerb } from './http-bindings.js';
import { messageFromJson, messageToJson } from './json-codec.js';
import { sendJson, type RestCall } from './rest-server.js';

// kmsd's own REST API under /kmsd/v1 (not part of the Yandex API): principals and tokens, access
// bindings on folders and on the whole installation, and the audit log. Every route runs through
// the same call runner as the KMS API, so it is authenticated, authorized and audited alike.

export interface AdminServices {
  readonly principals: PrincipalService;
  readonly access: AccessService;
  readonly audit: AuditLog;
  readonly authorizer: Authorizer;
}

const MAX_ID = 50;

function pathId(value: string | undefined, field: string): string {
  if (value === undefined || value === '') throw ERR.field(field, 'required');
  if (value.length > MAX_ID || !/^[A-Za-z0-9_-]+$/.test(value)) throw ERR.field(field, `must be an id of at most ${MAX_ID} letters, digits, - or _`);
  return value;
}

function bodyObject(req: FastifyRequest): JsonObject {
  const body = req.body ?? {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw ERR.invalidArgument('request body must be a JSON object');
  return body as JsonObject;
}

function pageParams(query: Record<string, string | undefined>): { pageSize: number; pageToken: string } {
  const raw = query.pageSize ?? '0';
  const pageSize = /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
  if (!(pageSize >= 0 && pageSize <= 1000)) throw ERR.field('page_size', 'must be 0-1000');
  const pageToken = query.pageToken ?? '';
  if (pageToken.length > 100) throw ERR.field('page_token', 'at most 100 characters');
  return { pageSize, pageToken };
}

function durationField(value: JsonValue | undefined, field: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  try {
    return durationMs(fromJson(DurationSchema, value));
  } catch {
    throw ERR.field(field, 'must be a duration such as "86400s"');
  }
}

function timeParam(value: string | undefined, field: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw ERR.field(field, 'must be an RFC 3339 time such as 2026-11-28T00:00:00Z');
  return t;
}

export const principalJson = (p: Principal) => ({
  id: p.id,
  type: p.type,
  name: p.name,
  ...(p.description === undefined ? {} : { description: p.description }),
  createdAt: new Date(p.createdAt).toISOString(),
});

export const tokenJson = (t: TokenRecord) => ({
  id: t.id,
  principalId: t.principalId,
  createdAt: new Date(t.createdAt).toISOString(),
  ...(t.expiresAt === undefined ? {} : { expiresAt: new Date(t.expiresAt).toISOString() }),
  ...(t.revokedAt === undefined ? {} : { revokedAt: new Date(t.revokedAt).toISOString() }),
  ...(t.description === undefined ? {} : { description: t.description }),
});

const deltasJson = (deltas: readonly BindingDelta[]): JsonValue =>
  messageToJson(
    AccessBindingsOperationResultSchema,
    create(AccessBindingsOperationResultSchema, {
      effectiveDeltas: deltas.map((d) => ({ action: d.action === 'ADD' ? AccessBindingAction.ADD : AccessBindingAction.REMOVE, accessBinding: bindingToPb(d.binding) })),
    }),
  );

/** One line of an audit export: the record's canonical fields plus its chain hash. */
export function exportLine(r: { body: string; hash: string }): string {
  return `${r.body.slice(0, -1)},"hash":"${r.hash}"}\n`;
}

export function adminRoutes(s: AdminServices) {
  return (app: FastifyInstance, call: RestCall): void => {
    const route = (event: string, method: string) => ({ event: `kmsd.${event}`, method });

    app.post('/kmsd/v1/principals', async (req, reply) => {
      const body = bodyObject(req);
      const p = await call(req, route('CreatePrincipal', 'POST /kmsd/v1/principals'), (ctx) => s.principals.create(ctx, { type: body.type, name: body.name, description: body.description }));
      return sendJson(reply, 200, principalJson(p));
    });
    app.get('/kmsd/v1/principals', async (req, reply) => {
      const page = pageParams(req.query as Record<string, string>);
      const result = await call(req, route('ListPrincipals', 'GET /kmsd/v1/principals'), (ctx) => s.principals.list(ctx, page.pageSize, page.pageToken));
      return sendJson(reply, 200, { principals: result.items.map(principalJson), nextPageToken: result.nextPageToken });
    });
    app.get('/kmsd/v1/principals/:id', async (req, reply) => {
      const p = await call(req, route('GetPrincipal', 'GET /kmsd/v1/principals/{id}'), (ctx) => s.principals.get(ctx, pathId((req.params as { id: string }).id, 'principal_id')));
      return sendJson(reply, 200, principalJson(p));
    });
    app.delete('/kmsd/v1/principals/:id', async (req, reply) => {
      await call(req, route('DeletePrincipal', 'DELETE /kmsd/v1/principals/{id}'), (ctx) => s.principals.delete(ctx, pathId((req.params as { id: string }).id, 'principal_id')));
      return sendJson(reply, 200, {});
    });
    app.post('/kmsd/v1/principals/:id/tokens', async (req, reply) => {
      const issued = await call(req, route('CreateToken', 'POST /kmsd/v1/principals/{id}/tokens'), (ctx) => {
        const body = bodyObject(req);
        const expiresInMs = durationField(body.expiresIn, 'expires_in');
        return s.principals.issueToken(ctx, pathId((req.params as { id: string }).id, 'principal_id'), {
          ...(expiresInMs === undefined ? {} : { expiresInMs }),
          description: body.description,
        });
      });
      return sendJson(reply, 200, { token: issued.token, ...tokenJson(issued.record) });
    });
    app.get('/kmsd/v1/principals/:id/tokens', async (req, reply) => {
      const tokens = await call(req, route('ListTokens', 'GET /kmsd/v1/principals/{id}/tokens'), (ctx) => s.principals.listTokens(ctx, pathId((req.params as { id: string }).id, 'principal_id')));
      return sendJson(reply, 200, { tokens: tokens.map(tokenJson) });
    });
    app.delete('/kmsd/v1/tokens/:id', async (req, reply) => {
      await call(req, route('RevokeToken', 'DELETE /kmsd/v1/tokens/{id}'), (ctx) => s.principals.revokeToken(ctx, pathId((req.params as { id: string }).id, 'token_id')));
      return sendJson(reply, 200, {});
    });

    // Access bindings of a folder (/kmsd/v1/folders/{id}:verb) or of the installation (/kmsd/v1/installation:verb),
    // with the request and response shapes of the Yandex access-binding methods.
    const bindingsRoute = async (req: FastifyRequest, reply: FastifyReply, scope: Scope, verb: string | undefined, label: string) => {
      if (verb === 'listAccessBindings' && req.method === 'GET') {
        const bindings = await call(req, route('ListAccessBindings', `GET ${label}:listAccessBindings`), (ctx) => s.access.listScopeBindings(ctx, scope));
        return sendJson(reply, 200, { accessBindings: bindings.map((b) => messageToJson(AccessBindingSchema, bindingToPb(b))) });
      }
      if (verb === 'setAccessBindings' && req.method === 'POST') {
        const deltas = await call(req, route('SetAccessBindings', `POST ${label}:setAccessBindings`), (ctx) => {
          const msg = messageFromJson(SetAccessBindingsRequestSchema, { ...bodyObject(req), resourceId: scope.id || 'installation' });
          validateRequest(SetAccessBindingsRequestSchema, msg);
          const r = msg as ReturnType<typeof create<typeof SetAccessBindingsRequestSchema>>;
          return s.access.setScopeBindings(ctx, scope, r.accessBindings.map(bindingFromPb));
        });
        return sendJson(reply, 200, deltasJson(deltas));
      }
      if (verb === 'updateAccessBindings' && req.method === 'POST') {
        const deltas = await call(req, route('UpdateAccessBindings', `POST ${label}:updateAccessBindings`), (ctx) => {
          const msg = messageFromJson(UpdateAccessBindingsRequestSchema, { ...bodyObject(req), resourceId: scope.id || 'installation' });
          validateRequest(UpdateAccessBindingsRequestSchema, msg);
          const r = msg as ReturnType<typeof create<typeof UpdateAccessBindingsRequestSchema>>;
          return s.access.updateScopeBindings(
            ctx,
            scope,
            r.accessBindingDeltas.map((d) => ({ action: actionFromPb(d.action), binding: bindingFromPb(d.accessBinding) })),
          );
        });
        return sendJson(reply, 200, deltasJson(deltas));
      }
      throw ERR.notFound('no kmsd API method at this path; see the README');
    };
    for (const method of ['GET', 'POST'] as const) {
      app.route({
        method,
        url: '/kmsd/v1/folders/:target',
        handler: (req, reply) => {
          const { value, verb } = splitCustomVerb((req.params as { target: string }).target);
          return bindingsRoute(req, reply, { type: 'folder', id: pathId(value, 'folder_id') }, verb, '/kmsd/v1/folders/{id}');
        },
      });
      app.route({
        method,
        url: '/kmsd/v1/:target',
        handler: (req, reply) => {
          const { value, verb } = splitCustomVerb((req.params as { target: string }).target);
          if (value !== 'installation') throw ERR.notFound('no kmsd API method at this path; see the README');
          return bindingsRoute(req, reply, GLOBAL_SCOPE, verb, '/kmsd/v1/installation');
        },
      });
    }

    const auditFilter = (q: Record<string, string | undefined>): AuditFilter => {
      const from = timeParam(q.from, 'from');
      const to = timeParam(q.to, 'to');
      return {
        ...(from === undefined ? {} : { from }),
        ...(to === undefined ? {} : { to }),
        ...(q.subjectId ? { subjectId: q.subjectId } : {}),
        ...(q.keyId ? { keyId: q.keyId } : {}),
        ...(q.outcome ? { outcome: q.outcome } : {}),
      };
    };
    app.get('/kmsd/v1/audit', async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const page = await call(req, route('QueryAudit', 'GET /kmsd/v1/audit'), async (ctx) => {
        await s.authorizer.authorize(ctx.caller, 'kmsd.audit.read', {});
        return s.audit.query(auditFilter(q), pageParams(q));
      });
      return sendJson(reply, 200, {
        records: page.items.map((r) => ({ ...(JSON.parse(r.body) as JsonObject), hash: r.hash })),
        nextPageToken: page.nextPageToken,
      });
    });
    app.get('/kmsd/v1/audit::export', async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const filter = await call(req, route('ExportAudit', 'GET /kmsd/v1/audit:export'), async (ctx) => {
        await s.authorizer.authorize(ctx.caller, 'kmsd.audit.read', {});
        return auditFilter(q);
      });
      async function* lines() {
        let pageToken = '';
        do {
          const page = await s.audit.query(filter, { pageSize: 1000, pageToken });
          for (const r of page.items) yield exportLine(r);
          pageToken = page.nextPageToken;
        } while (pageToken !== '');
      }
      return reply.code(200).header('content-type', 'application/x-ndjson').send(Readable.from(lines()));
    });
  };
}
