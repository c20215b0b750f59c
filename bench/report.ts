import type { Measurement } from './load.js';

// The printed table and the machine description; bench/run.ts writes the same data as JSON.

export interface ResultRow {
  readonly scenario: string;
  readonly target: string;
  readonly role: 'baseline' | 'subject';
  /** Concurrent requests (REST connections, gRPC streams). */
  readonly connections: number;
  readonly measurement: Measurement;
  /** undefined when BENCH_WARMUP=0. */
  readonly warmup: Measurement | undefined;
  /** The server's CPU time (all its processes) per answered request during the measurement (µs); undefined without /proc. */
  readonly serverCpuUsPerRequest: number | undefined;
  /**
   * Cores busy during the measurement (CPU seconds ÷ wall seconds, Linux only): the server with all
   * its processes, and the load generator, which shares the machine's cores with it.
   */
  readonly serverCores?: number;
  readonly generatorCores?: number;
}

export interface RatioRow {
  readonly scenario: string;
  readonly baseline: string;
  readonly subject: string;
  /** subject req/s ÷ baseline req/s. */
  readonly reqPerSecRatio: number;
  /**
   * baseline CPU per request ÷ subject CPU per request: the req/s ratio the two would reach if each
   * had the same CPU to itself, the measure that other work on the machine disturbs least.
   */
  readonly cpuRatio: number | undefined;
}

export function ratios(rows: readonly ResultRow[]): RatioRow[] {
  const out: RatioRow[] = [];
  for (const s of rows.filter((r) => r.role === 'subject')) {
    const b = rows.find((r) => r.scenario === s.scenario && r.role === 'baseline');
    if (!b || b.measurement.reqPerSec === 0) continue;
    const cpuRatio = s.serverCpuUsPerRequest && b.serverCpuUsPerRequest ? b.serverCpuUsPerRequest / s.serverCpuUsPerRequest : undefined;
    out.push({ scenario: s.scenario, baseline: b.target, subject: s.target, reqPerSecRatio: s.measurement.reqPerSec / b.measurement.reqPerSec, cpuRatio });
  }
  return out;
}

export function formatTable(rows: readonly ResultRow[], ratioRows: readonly RatioRow[]): string {
  const header = ['scenario', 'target', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'cpu µs/req', 'srv cores', 'gen cores', 'ratio', 'cpu ratio'];
  const coresText = (c: number | undefined) => (c === undefined ? '' : c.toFixed(2));
  const body = rows.map((r) => {
    const m = r.measurement;
    const ratio = r.role === 'subject' ? ratioRows.find((x) => x.scenario === r.scenario && x.subject === r.target) : undefined;
    return [
      r.scenario,
      r.target,
      String(r.connections),
      m.reqPerSec.toFixed(0),
      m.p50Ms.toFixed(1),
      m.p99Ms.toFixed(1),
      String(m.non2xx),
      String(m.errors),
      r.serverCpuUsPerRequest === undefined ? '' : r.serverCpuUsPerRequest.toFixed(0),
      coresText(r.serverCores),
      coresText(r.generatorCores),
      ratio ? ratio.reqPerSecRatio.toFixed(2) : '',
      ratio?.cpuRatio === undefined ? '' : ratio.cpuRatio.toFixed(2),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const numeric = (i: number) => i >= 2;
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
