import autocannon from 'autocannon';

// One autocannon run, reduced to the numbers the report needs.

export interface HttpRequestSpec {
  readonly method: 'POST' | 'GET';
  /** Absolute URL. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  /** When set, each request goes to the path (with query) it returns instead of the URL's. */
  readonly nextPath?: () => string;
}

export interface Measurement {
  /** Mean of autocannon's per-second request counts (all responses). */
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  /** Connection errors, including timeouts. */
  readonly errors: number;
  readonly timeouts: number;
  readonly responses2xx: number;
  readonly durationS: number;
  readonly statusCodes: Readonly<Record<string, number>>;
  /** CPU seconds the load generator used (autocannon: the runner's process; h2load: its process). */
  readonly generatorCpuSeconds?: number;
}

export async function runAutocannon(req: HttpRequestSpec, o: { connections: number; durationS: number }): Promise<Measurement> {
  const nextPath = req.nextPath;
  // autocannon runs in this process, which does nothing else meanwhile.
  const cpuBefore = process.cpuUsage();
  const r = await autocannon({
    url: req.url,
    method: req.method,
    headers: { ...req.headers },
    ...(req.body === undefined ? {} : { body: req.body }),
    ...(nextPath === undefined ? {} : { requests: [{ setupRequest: (r: autocannon.Request) => ({ ...r, path: nextPath() }) }] }),
    connections: o.connections,
    duration: o.durationS,
    pipelining: 1,
    timeout: 10,
  });
  const cpu = process.cpuUsage(cpuBefore);
  const statusCodes: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = s.count ?? 0;
  return {
    reqPerSec: r.requests.mean,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    responses2xx: r['2xx'],
    durationS: r.duration,
    statusCodes,
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}
