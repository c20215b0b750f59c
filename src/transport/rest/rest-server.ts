import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { fromJson, type DescMethod, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { DurationSchema, durationMs } from '@bufbuild/protobuf/wkt';
import { Code, ERR, KmsError } from '../../errors/kms-error.js';
import type { CallRunner } from '../shared/call-runner.js';
import type { Metrics } from '../../observability/metrics.js';
import type { CallContext } from '../../services/context.js';
import type { ApiMethod } from '../shared/api-methods.js';
import { errorBody, HTTP_STATUS, publicError } from '../shared/status.js';
import { idempotencyKeyFrom, requestIdFrom } from '../shared/request-metadata.js';
import { httpBindings, splitCustomVerb, type HttpBinding } from './http-bindings.js';
import { jsonFromQuery, messageFromJson, messageToJson } from './json-codec.js';

// The REST transport: a thin shell that decodes proto3 JSON, authenticates, calls the shared
// method table and renders the result or the error. No KMS behaviour lives here.

/** Large enough for a 32 KiB plaintext or a ReEncrypt of it, base64-encoded, with both AADs. */
export const DEFAULT_BODY_LIMIT = 256 * 1024;

/** Body media types accepted as JSON. curl -d sends form-urlencoded, and the Yandex docs' curl examples rely on that. */
const JSON_MEDIA_TYPES = new Set(['application/json', 'application/x-www-form-urlencoded', 'text/plain']);


export interface TestClockControl {
  /** Throws unless the caller administers the whole installation. */
  authorize(ctx: CallContext): Promise<void>;
  /** Moves kmsd's clock forward and runs whatever background work fell due; returns the new now. */
  advance(ms: number): Promise<number>;
}

/** Runs `work` as one audited, authenticated call of this request. */
export type RestCall = <T>(req: FastifyRequest, names: { event: string; method: string }, work: (ctx: CallContext) => Promise<T>) => Promise<T>;

export { send as sendJson };

export interface RestServerDeps {
  readonly methods: readonly ApiMethod[];
  readonly calls: CallRunner;
  /** kmsd's own API under /kmsd/v1 (principals, tokens, bindings, audit). */
  readonly adminRoutes?: (app: FastifyInstance, call: RestCall) => void;
  readonly logger: Logger;
  readonly bodyLimit?: number;
  readonly testClock?: TestClockControl;
  /** Serve HTTPS with this certificate instead of plain HTTP. */
  readonly https?: { readonly cert: Buffer; readonly key: Buffer };
  /** /healthz, /readyz, /metrics (ops-routes.ts). */
  readonly opsRoutes?: (app: FastifyInstance) => void;
  /** Counts requests refused before they became a call (bad JSON, unknown path); calls count themselves. */
  readonly metrics?: Pick<Metrics, 'call'>;
}

declare module 'fastify' {
  interface FastifyRequest {
    rawJson?: JsonValue;
    /** Set once the request ran through the call runner, which counts it in the metrics. */
    kmsdCall: boolean;
  }
}

function send(reply: FastifyReply, status: number, body: JsonValue): FastifyReply {
  return reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));
}

function parseBody(text: string): JsonValue {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    throw ERR.invalidArgument('request body is not valid JSON');
  }
}

const noSchemas = ({ url }: { url?: string }): never => {
  throw new Error(`route ${url ?? '(unnamed)'} declares a schema; kmsd's REST server has no schema compilers`);
};

export async function buildRestServer(d: RestServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(d.https ? { https: { cert: d.https.cert, key: d.https.key } } : {}),
    loggerInstance: d.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger: request logging is off, and errors log their request id themselves.
    childLoggerFactory: (logger) => logger,
    bodyLimit: d.bodyLimit ?? DEFAULT_BODY_LIMIT,
    requestIdHeader: false,
    genReqId: (req) => requestIdFrom(req.headers['x-request-id']),
    // Errors fastify raises before routing (a malformed URL, a bad header) get the API's error shape too.
    frameworkErrors: (err, req, reply) => {
      void reply.header('x-request-id', req.id);
      const pub = publicError(fastifyErrorToKms(err), req.id);
      d.metrics?.call('rest', 'unmatched', pub.code, 0);
      return send(reply, 400, errorBody(pub, req.id));
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: false },
    // No route declares a JSON schema (bodies are checked by the API's own validation, the same for
    // REST and gRPC), so fastify's compilers (ajv, fast-json-stringify) would be loaded at every
    // start for nothing (issue #7: start time). A route that declares one fails to register, loudly.
    schemaController: { compilersFactory: { buildValidator: () => noSchemas, buildSerializer: () => noSchemas } },
  });

  app.decorateRequest('kmsdCall', false);
  /** A request answered without becoming a call, in the metrics under its route template (bounded). */
  const countRefused = (req: FastifyRequest, reply: FastifyReply, code: Code) => {
    if (!d.metrics || req.kmsdCall) return;
    const route = req.routeOptions.url;
    d.metrics.call('rest', route === undefined ? 'unmatched' : `${req.method} ${route}`, code, reply.elapsedTime / 1000);
  };

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== '' && !JSON_MEDIA_TYPES.has(type) && !type.endsWith('+json')) {
      done(ERR.invalidArgument(`unsupported content type "${type.slice(0, 100)}"; send application/json`), undefined);
      return;
    }
    try {
      done(null, parseBody(body as string));
    } catch (e) {
      done(e as Error, undefined);
    }
  });

  // A callback hook rather than an async one: no promise to settle on every request.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    reply.header('x-server-trace-id', req.id);
    done();
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    const e = fastifyErrorToKms(err);
    const pub = publicError(e, req.id);
    if (pub.serverFault) req.log.error({ err, requestId: req.id, url: req.routeOptions.url }, 'request failed');
    countRefused(req, reply, pub.code);
    return send(reply, HTTP_STATUS[pub.code], errorBody(pub, req.id));
  });
  app.setNotFoundHandler(() => {
    throw noSuchMethod();
  });

  /** Runs a call through the shared runner (authentication, audit) with this request's metadata. */
  const call: RestCall = (req, names, work) => {
    req.kmsdCall = true;
    const key = req.method !== 'GET' ? idempotencyKeyFrom(req.headers['idempotency-key']) : undefined;
    return d.calls.run(
      {
        ...names,
        authorization: req.headers.authorization,
        peer: req.ip,
        requestId: req.id,
        transport: 'rest',
        ...(key === undefined ? {} : { idempotencyKey: key }),
      },
      work,
    );
  };

  function requestJson(b: HttpBinding, req: FastifyRequest, pathValues: readonly string[]): JsonObject {
    let json: JsonObject;
    if (b.bodyIsMessage) {
      const body = req.body ?? {};
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw ERR.invalidArgument('request body must be a JSON object');
      json = body as JsonObject;
    } else {
      const body = req.body;
      const empty = body === undefined || (typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 0);
      if (!empty) throw ERR.invalidArgument(`${b.method.name} takes no request body; send its fields in the query string`);
      json = jsonFromQuery(b.method.input, req.query as Record<string, string>);
    }
    b.pathFields.forEach((name, i) => {
      const field = b.method.input.fields.find((f) => f.name === name)!;
      delete json[field.name];
      json[field.jsonName] = pathValues[i]!;
    });
    return json;
  }

  const byMethod = new Map<DescMethod, ApiMethod>(d.methods.map((m) => [m.method, m]));
  const routes = new Map<string, HttpBinding[]>();
  for (const b of httpBindings(d.methods.map((m) => m.method))) {
    const id = `${b.verb} ${b.routePath}`;
    routes.set(id, [...(routes.get(id) ?? []), b]);
  }

  for (const [id, bindings] of routes) {
    const [verb, path] = id.split(' ') as [HttpBinding['verb'], string];
    app.route({
      method: verb,
      url: path,
      handler: async (req, reply) => {
        const params = req.params as Record<string, string>;
        const values = bindings[0]!.pathFields.map((_, i) => params[`p${i}`] ?? '');
        let verbName: string | undefined;
        if (values.length > 0) {
          const split = splitCustomVerb(values[values.length - 1]!);
          values[values.length - 1] = split.value;
          verbName = split.verb;
        }
        const b = bindings.find((x) => x.customVerb === verbName);
        if (!b) throw noSuchMethod();
        const api = byMethod.get(b.method)!;
        const response = await call(req, { event: api.auditEvent, method: api.fullName }, (ctx) =>
          api.invoke(ctx, messageFromJson(b.method.input, requestJson(b, req, values))),
        );
        return send(reply, 200, messageToJson(b.method.output, response));
      },
    });
  }

  d.adminRoutes?.(app, call);
  d.opsRoutes?.(app);

  if (d.testClock) {
    const clock = d.testClock;
    app.post('/kmsd/v1/testing/clock:advance', async (req, reply) => {
      await call(req, { event: 'kmsd.AdvanceTestClock', method: 'POST /kmsd/v1/testing/clock:advance' }, (ctx) => clock.authorize(ctx));
      const body = (req.body ?? {}) as JsonObject;
      if (typeof body !== 'object' || body === null || typeof body.duration !== 'string') throw ERR.field('duration', 'required, e.g. "86400s"');
      let ms: number;
      try {
        ms = durationMs(fromJson(DurationSchema, body.duration));
      } catch {
        throw ERR.field('duration', 'must be a duration such as "86400s"');
      }
      if (!(ms >= 0)) throw ERR.field('duration', 'must not be negative');
      const now = await clock.advance(ms);
      return send(reply, 200, { now: new Date(now).toISOString() });
    });
  }

  return app;
}

const noSuchMethod = () => new KmsError(Code.NotFound, 'no API method at this path; see the Yandex Cloud KMS REST reference');

/** Fastify's own errors (body too large, bad media type, malformed URL …) as KMS errors. */
function fastifyErrorToKms(err: unknown): unknown {
  if (err instanceof KmsError) return err;
  const e = err as { code?: string; statusCode?: number; message?: string };
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return ERR.invalidArgument('request body is too large');
    return ERR.invalidArgument(`malformed request (${e.code ?? e.statusCode})`);
  }
  return err;
}
