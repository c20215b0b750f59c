import type { FastifyInstance } from 'fastify';
import type { Readiness } from '../../observability/health.js';
import type { Scrape } from '../../observability/metrics.js';

// Operations endpoints on the REST listener, outside the KMS API: no authentication, no audit
// record, no request metrics of their own. /metrics holds counts and latencies by method and code
// only (no key ids, principals, tokens or peers), meant to be scraped from the operator's network
// (README: "Metrics and health"); --metrics off removes it.

export interface OpsRoutes {
  /** The exposition (all workers' of --workers, summed); undefined with --metrics off: /metrics then answers 404 like any unknown path. */
  readonly scrape?: Scrape;
  readonly readiness: Readiness;
  /** This process's number among the workers of --workers: /healthz says which worker answered. */
  readonly worker?: number;
}

export function opsRoutes(o: OpsRoutes) {
  return (app: FastifyInstance): void => {
    // A liveness probe reaches one worker per connection; the answer names it.
    const alive = JSON.stringify(o.worker === undefined ? { status: 'ok' } : { status: 'ok', worker: o.worker });
    app.get('/healthz', async (_req, reply) => reply.code(200).header('content-type', 'application/json; charset=utf-8').send(alive));
    app.get('/readyz', async (_req, reply) => {
      const report = await o.readiness.probe();
      return reply
        .code(report.ready ? 200 : 503)
        .header('content-type', 'application/json; charset=utf-8')
        .send(JSON.stringify({ status: report.ready ? 'ready' : 'not ready', checks: report.checks }));
    });
    const scrape = o.scrape;
    if (scrape) {
      app.get('/metrics', async (_req, reply) => {
        const { contentType, body } = await scrape();
        return reply.code(200).header('content-type', contentType).send(body);
      });
    }
  };
}
