import type { Logger } from 'pino';
import { callerId, callerType } from '../../domain/principal.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import type { AuditLog } from '../../services/audit/audit-log.js';
import type { AuditTrail } from '../../services/audit/trail.js';
import type { Authenticator } from '../../services/auth/tokens.js';
import type { CallContext } from '../../services/context.js';
import type { Metrics } from '../../observability/metrics.js';

// Every call of every transport — the KMS API over REST and gRPC, kmsd's own REST API — runs
// through here: authenticate, run, and leave exactly one audit record with the outcome, allowed or
// denied. A successful result is returned only once its record is durable.

export interface CallRequest {
  /** Audit event name: `yandex.cloud.audit.kms.Encrypt`, `kmsd.CreatePrincipal`, … */
  readonly event: string;
  /** Full method name or REST route, for the audit record. */
  readonly method: string;
  readonly authorization: string | undefined;
  readonly peer: string;
  readonly requestId: string;
  readonly idempotencyKey?: string;
  readonly transport: 'rest' | 'grpc';
}

export interface CallRunner {
  run<T>(req: CallRequest, work: (ctx: CallContext) => Promise<T>): Promise<T>;
}

const codeOf = (e: unknown): Code => (e instanceof KmsError ? e.code : Code.Internal);

export function callRunner(d: { authenticator: Authenticator; audit: AuditLog; logger: Logger; metrics?: Pick<Metrics, 'call'> }): CallRunner {
  const metrics = d.metrics;
  return {
    async run(req, work) {
      const start = performance.now();
      const trail: AuditTrail = {
        event: req.event,
        method: req.method,
        requestId: req.requestId,
        peer: req.peer,
        transport: req.transport,
        subject: { type: 'anonymous', id: 'anonymous' },
        written: false,
      };
      try {
        const caller = await d.authenticator.authenticate(req.authorization, req.peer);
        trail.subject = { type: callerType(caller), id: callerId(caller) };
        const ctx: CallContext = { caller, requestId: req.requestId, trail, ...(req.idempotencyKey === undefined ? {} : { idempotencyKey: req.idempotencyKey }) };
        const result = await work(ctx);
        await d.audit.record(trail, 0);
        metrics?.call(req.transport, req.method, 0, (performance.now() - start) / 1000);
        return result;
      } catch (e) {
        if (!trail.written) {
          // The call already failed; a failed record of it is logged, and the caller gets the call's own error.
          await d.audit.record(trail, codeOf(e)).catch((auditError: unknown) => {
            d.logger.error({ err: auditError, requestId: req.requestId, event: req.event }, 'could not record a failed call in the audit log');
          });
        }
        metrics?.call(req.transport, req.method, codeOf(e), (performance.now() - start) / 1000);
        throw e;
      }
    },
  };
}
