import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { Code } from '../errors/kms-error.js';

// kmsd's Prometheus metrics (GET /metrics). Labels are bounded sets only: transport, the API
// method's full name (or the route template of kmsd's own API), the gRPC code name, the store
// operation. Never a key id, principal, token, peer or anything a caller chooses, so the series
// count is fixed by the code, not by the traffic.
//
// The hot path does as little as possible: a call's counter and histogram children are looked up
// once per label set and kept; cache hits and misses are plain integers the cache already keeps,
// read only when Prometheus scrapes.

/** "INVALID_ARGUMENT" for Code.InvalidArgument; "OK" for success. */
export function codeName(code: Code | 0): string {
  if (code === 0) return 'OK';
  const name = Code[code] as string | undefined;
  return name === undefined ? 'UNKNOWN' : name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

/** Request latencies: a warm crypto call is well under a millisecond, a cold one or a mutation a few. */
const CALL_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const STORE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export type Transport = 'rest' | 'grpc';

/** Counters a component keeps itself (plain integers), read at scrape time. */
export interface KeyCacheStats {
  readonly keyHits: number;
  readonly keyMisses: number;
  readonly versionHits: number;
  readonly versionMisses: number;
  /** Version material unwrapped by the root key (or opened in the HSM). */
  readonly unwraps: number;
  readonly size: number;
}

export interface AuditQueueStats {
  /** Records waiting for the next group commit. */
  readonly queued: number;
}

/** The exposition text and its content type. */
export type Scrape = () => Promise<{ contentType: string; body: string }>;

/** A registry's metrics as prom-client's getMetricsAsJSON() gives them: how workers send theirs. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

interface CallSeries {
  readonly duration: ReturnType<Histogram<'transport' | 'method'>['labels']>;
  readonly byCode: Map<Code | 0, ReturnType<Counter<'transport' | 'method' | 'code'>['labels']>>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'transport' | 'method' | 'code'>;
  readonly #durations: Histogram<'transport' | 'method'>;
  readonly #calls = new Map<string, CallSeries>();
  readonly #auditBatch: Histogram;
  readonly #auditFlush: Histogram;
  readonly #auditFailures: Counter;
  readonly #storeCalls: Histogram<'operation'>;
  readonly #storeFailures: Counter<'operation'>;
  readonly #workerCalls: ReturnType<Counter<'worker'>['labels']> | undefined;

  /** `worker`: this process's number among the workers of --workers. */
  constructor(o: { readonly worker?: number } = {}) {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'kmsd_requests_total',
      help: 'API calls finished, by transport, method and gRPC status code (REST answers carry the HTTP status of that code)',
      labelNames: ['transport', 'method', 'code'],
      registers,
    });
    this.#durations = new Histogram({
      name: 'kmsd_request_duration_seconds',
      help: 'Time from authentication to the audited result of an API call (excludes decoding and encoding the message)',
      labelNames: ['transport', 'method'],
      buckets: CALL_BUCKETS,
      registers,
    });
    this.#auditBatch = new Histogram({
      name: 'kmsd_audit_batch_records',
      help: 'Audit records written per group commit',
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.#auditFlush = new Histogram({
      name: 'kmsd_audit_flush_duration_seconds',
      help: 'Time to make one group of audit records durable',
      buckets: STORE_BUCKETS,
      registers,
    });
    this.#auditFailures = new Counter({
      name: 'kmsd_audit_flush_failures_total',
      help: 'Group commits of audit records that failed (their calls failed with UNAVAILABLE)',
      registers,
    });
    this.#storeCalls = new Histogram({
      name: 'kmsd_store_call_duration_seconds',
      help: 'Store calls by operation, successful or not',
      labelNames: ['operation'],
      buckets: STORE_BUCKETS,
      registers,
    });
    this.#storeFailures = new Counter({
      name: 'kmsd_store_call_failures_total',
      help: 'Store calls that failed, by operation',
      labelNames: ['operation'],
      registers,
    });
    // The one series per worker: whether connections are spread over the workers. Every other
    // series is summed over them (aggregate).
    this.#workerCalls =
      o.worker === undefined
        ? undefined
        : new Counter({
            name: 'kmsd_worker_requests_total',
            help: 'API calls finished by each worker process of kmsd serve --workers N',
            labelNames: ['worker'],
            registers,
          }).labels(String(o.worker));
    // Shown from the start, so that a worker no connection reached yet shows as 0.
    this.#workerCalls?.inc(0);
  }

  /** One finished API call. */
  call(transport: Transport, method: string, code: Code | 0, seconds: number): void {
    const id = `${transport} ${method}`;
    let series = this.#calls.get(id);
    if (series === undefined) {
      series = { duration: this.#durations.labels(transport, method), byCode: new Map() };
      this.#calls.set(id, series);
    }
    series.duration.observe(seconds);
    let counter = series.byCode.get(code);
    if (counter === undefined) {
      counter = this.#requests.labels(transport, method, codeName(code));
      series.byCode.set(code, counter);
    }
    counter.inc();
    this.#workerCalls?.inc();
  }

  /** One group commit of the audit log. */
  auditFlush(records: number, seconds: number, ok: boolean): void {
    this.#auditBatch.observe(records);
    this.#auditFlush.observe(seconds);
    if (!ok) this.#auditFailures.inc();
  }

  storeCall(operation: string, seconds: number, ok: boolean): void {
    this.#storeCalls.labels(operation).observe(seconds);
    if (!ok) this.#storeFailures.labels(operation).inc();
  }

  /** Key cache hits, misses and size, read from the cache at each scrape. */
  watchKeyCache(stats: () => KeyCacheStats): void {
    const read = stats;
    let last = { keyHits: 0, keyMisses: 0, versionHits: 0, versionMisses: 0 };
    new Counter({
      name: 'kmsd_key_cache_lookups_total',
      help: 'Key cache lookups of the crypto path by kind (key metadata, version material) and result',
      labelNames: ['kind', 'result'],
      registers: [this.registry],
      collect() {
        const now = read();
        // The cache's own totals only grow; add what happened since the last scrape.
        this.labels('key', 'hit').inc(now.keyHits - last.keyHits);
        this.labels('key', 'miss').inc(now.keyMisses - last.keyMisses);
        this.labels('version', 'hit').inc(now.versionHits - last.versionHits);
        this.labels('version', 'miss').inc(now.versionMisses - last.versionMisses);
        last = { keyHits: now.keyHits, keyMisses: now.keyMisses, versionHits: now.versionHits, versionMisses: now.versionMisses };
      },
    });
    let lastUnwraps = 0;
    new Counter({
      name: 'kmsd_key_cache_unwraps_total',
      help: 'Key version material unwrapped by the root key (or opened in the HSM) for the crypto path: once per version and cache load',
      registers: [this.registry],
      collect() {
        const now = read().unwraps;
        this.inc(now - lastUnwraps);
        lastUnwraps = now;
      },
    });
    new Gauge({
      name: 'kmsd_key_cache_keys',
      help: 'Keys held in the key cache',
      registers: [this.registry],
      collect() {
        this.set(read().size);
      },
    });
  }

  watchAuditQueue(stats: () => AuditQueueStats): void {
    new Gauge({
      name: 'kmsd_audit_queue_depth',
      help: 'Audit records waiting for the next group commit (their calls wait too)',
      registers: [this.registry],
      collect() {
        this.set(stats().queued);
      },
    });
  }

  async scrape(): ReturnType<Scrape> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /**
   * The workers' metrics (--workers) as one exposition: each series summed over the workers, as
   * prom-client's cluster support does (a few process gauges take the first, the mean or the most
   * instead, by prom-client's own choice).
   */
  static async aggregate(workers: readonly unknown[]): ReturnType<Scrape> {
    const registry = AggregatorRegistry.aggregate(workers.filter((w): w is MetricsJson => Array.isArray(w)));
    return { contentType: registry.contentType, body: await registry.metrics() };
  }
}

/**
 * The store with every call timed, by operation (the method's name). Properties that are not
 * functions pass through; a call that returns no promise (an async iterable) is timed until it returns.
 */
export function timedStore<T extends object>(store: T, metrics: Pick<Metrics, 'storeCall'>): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string' || prop === 'constructor') return value;
      let fn = wrapped.get(prop);
      if (fn === undefined) {
        const original = value as (...args: unknown[]) => unknown;
        fn = function timed(...args: unknown[]): unknown {
          const start = performance.now();
          const done = (ok: boolean) => metrics.storeCall(prop, (performance.now() - start) / 1000, ok);
          let result: unknown;
          try {
            result = original.apply(target, args);
          } catch (e) {
            done(false);
            throw e;
          }
          if (result instanceof Promise) {
            return result.then(
              (v: unknown) => {
                done(true);
                return v;
              },
              (e: unknown) => {
                done(false);
                throw e;
              },
            );
          }
          done(true);
          return result;
        };
        wrapped.set(prop, fn);
      }
      return fn;
    },
  });
}
