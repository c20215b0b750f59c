// A benchmarking switch, not a feature: kmsd answers crypto (and other non-mutating) calls without
// writing their audit records, so `npm run bench` can report what the audit log costs (audit on
// vs off in the same run). It is deliberately no flag and in no --help: it takes two environment
// variables, one of them an acknowledgement that must be spelled out, and a kmsd started with it
// logs an error and answers /readyz with 503, so no load balancer sends it traffic by accident.
// Mutations are still audited (their record commits in the same transaction as the change).

export const BENCH_DISCARD_AUDIT = 'KMSD_BENCH_DISCARD_AUDIT';
export const BENCH_ONLY = 'KMSD_BENCH_ONLY';
export const BENCH_ONLY_ACK = 'unaudited-calls-for-benchmarking';

/**
 * True when both variables ask for it; throws (refusing to start) when KMSD_BENCH_DISCARD_AUDIT is
 * set any other way, so a half-set switch never silently runs either way.
 */
export function benchAuditDiscardRequested(env: NodeJS.ProcessEnv): boolean {
  const value = env[BENCH_DISCARD_AUDIT];
  if (value === undefined || value === '') return false;
  if (value !== '1' || env[BENCH_ONLY] !== BENCH_ONLY_ACK) {
    throw new Error(
      `${BENCH_DISCARD_AUDIT} is a benchmarking switch that leaves calls unaudited; it needs ${BENCH_DISCARD_AUDIT}=1 and ${BENCH_ONLY}=${BENCH_ONLY_ACK}. Refusing to start`,
    );
  }
  return true;
}
