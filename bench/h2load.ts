import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { followCpu } from './process-cpu.js';
import type { Measurement } from './load.js';

// gRPC load with h2load (nghttp2's HTTP/2 benchmarking tool, C): a Node gRPC client saturates at
// a few thousand calls/s, before either server does. h2load sends one pre-framed gRPC request
// (5-byte frame header + protobuf bytes) on every stream and knows nothing of gRPC: it counts a
// call as succeeded on HTTP status 200 and never reads the trailers, so a call that fails with
// grpc-status ≠ 0 looks like a success. What gives such calls away is the body: a failed unary
// call has no DATA (its status is all in the trailers), a successful one has exactly one framed
// response message, and for the bench's requests that message always has the same length. So
// every stream that got a 2xx status must account for exactly that many DATA bytes; the shortfall
// is the number of calls that ended without a response message (`noMessage`). The runner also
// checks each target once with a grpc-js call over the same bytes (grpc-status 0, response decodes)
// before anything is measured.

/** What h2load prints at the end of a run (stdout). Byte counts are exact, from the "(N)" fields. */
export interface H2loadSummary {
  readonly elapsedS: number;
  /** h2load's req/s: requests done in the measurement period ÷ its length (-D). */
  readonly reqPerSec: number;
  readonly requests: { readonly total: number; readonly started: number; readonly done: number; readonly succeeded: number; readonly failed: number; readonly errored: number; readonly timeout: number };
  /** Responses by HTTP status class; includes streams still in flight when -D ended if their headers arrived. */
  readonly status: { readonly '2xx': number; readonly '3xx': number; readonly '4xx': number; readonly '5xx': number };
  readonly trafficBytes: { readonly total: number; readonly headers: number; readonly data: number };
  /** "time for request" min/max/mean/sd in ms, when printed. */
  readonly requestTimeMs?: { readonly min: number; readonly max: number; readonly mean: number; readonly sd: number };
}

const UNIT_TO_S: Record<string, number> = { s: 1, ms: 1e-3, us: 1e-6, µs: 1e-6, ns: 1e-9 };
const UNIT_TO_MS: Record<string, number> = { s: 1e3, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 };

function lineAfter(text: string, label: string): string | undefined {
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(label);
    if (i >= 0 && line.slice(0, i).trim() === '') return line.slice(i + label.length);
  }
  return undefined;
}

/** "34496 total, 34560 started, …" → { total: 34496, started: 34560, … }. */
function countsByWord(s: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of s.matchAll(/(\d+)\s+([0-9A-Za-z]+)/g)) out.set(m[2]!, Number(m[1]));
  return out;
}

function need<T>(v: T | undefined, what: string, text: string): T {
  if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) {
    const tail = text.trim().split(/\r?\n/).slice(-15).join('\n');
    throw new Error(`h2load output: cannot read ${what}${tail ? `\n--- h2load output (last lines) ---\n${tail}` : ' (output is empty)'}`);
  }
  return v;
}

/** Parses h2load's final report. Throws, quoting the output, when a required line is missing. */
export function parseH2loadOutput(text: string): H2loadSummary {
  const finished = need(lineAfter(text, 'finished in '), '"finished in …"', text);
  const fm = /^\s*([\d.]+)\s*(ns|us|µs|ms|s)\s*,\s*([\d.]+)\s*req\/s/.exec(finished);
  const elapsedS = need(fm ? Number(fm[1]) * UNIT_TO_S[fm[2]!]! : undefined, 'the elapsed time and req/s', text);
  const reqPerSec = need(fm ? Number(fm[3]) : undefined, 'req/s', text);

  const rq = countsByWord(need(lineAfter(text, 'requests:'), '"requests: …"', text));
  const count = (m: Map<string, number>, word: string, line: string) => need(m.get(word), `"${word}" in the ${line} line`, text);
  const requests = {
    total: count(rq, 'total', 'requests'),
    started: count(rq, 'started', 'requests'),
    done: count(rq, 'done', 'requests'),
    succeeded: count(rq, 'succeeded', 'requests'),
    failed: count(rq, 'failed', 'requests'),
    errored: count(rq, 'errored', 'requests'),
    timeout: rq.get('timeout') ?? 0, // absent before nghttp2 1.24
  };

  const sc = countsByWord(need(lineAfter(text, 'status codes:'), '"status codes: …"', text));
  const status = { '2xx': count(sc, '2xx', 'status codes'), '3xx': count(sc, '3xx', 'status codes'), '4xx': count(sc, '4xx', 'status codes'), '5xx': count(sc, '5xx', 'status codes') };

  // "6.59MB (6913400) total, 169.37KB (173436) headers (space savings 96.39%), 5.47MB (5736960) data"
  // older nghttp2: "6913400 bytes total, 173436 bytes headers (space savings 96.39%), 5736960 bytes data"
  const traffic = need(lineAfter(text, 'traffic:'), '"traffic: …"', text).split(',');
  const bytes = (word: string) => {
    const part = traffic.find((p) => new RegExp(`\\b${word}\\b`).test(p));
    const m = part === undefined ? null : (/\((\d+)\)/.exec(part) ?? /(\d+)\s*bytes/.exec(part));
    return need(m ? Number(m[1]) : undefined, `the ${word} bytes in the traffic line`, text);
  };
  const trafficBytes = { total: bytes('total'), headers: bytes('headers'), data: bytes('data') };

  // "time for request:     1.29ms     40.96ms      5.50ms      2.47ms    85.98%"
  let requestTimeMs: H2loadSummary['requestTimeMs'];
  const rt = lineAfter(text, 'time for request:');
  if (rt !== undefined) {
    const v = [...rt.matchAll(/([\d.]+)(ns|us|µs|ms|s)\b/g)].map((m) => Number(m[1]) * UNIT_TO_MS[m[2]!]!);
    if (v.length >= 4) requestTimeMs = { min: v[0]!, max: v[1]!, mean: v[2]!, sd: v[3]! };
  }
  return { elapsedS, reqPerSec, requests, status, trafficBytes, ...(requestTimeMs ? { requestTimeMs } : {}) };
}

/** --log-file rows: start µs since epoch, HTTP status (-1: failed stream), µs until end of response. */
export function parseH2loadLog(text: string): { latenciesMs: number[]; byStatus: Record<string, number>; malformed: number } {
  const latenciesMs: number[] = [];
  const byStatus: Record<string, number> = {};
  let malformed = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [start, status, us] = line.split('\t');
    if (start === undefined || status === undefined || us === undefined || !/^-?\d+$/.test(status) || !/^\d+$/.test(us.trim())) {
      malformed++;
      continue;
    }
    byStatus[status] = (byStatus[status] ?? 0) + 1;
    if (status.length === 3 && status.startsWith('2')) latenciesMs.push(Number(us) / 1000);
  }
  return { latenciesMs, byStatus, malformed };
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Finished streams with a 2xx status but no response message: each successful call carries exactly
 * `responseFrameBytes` of DATA. Also says whether the DATA total is a whole number of messages.
 *
 * h2load counts a status when the response headers arrive, but a request as succeeded only when its
 * stream closes. kmsd sends its headers (with x-request-id) before it has the answer, so the calls
 * still in flight when the -D period ends have a 2xx status and no DATA yet; they are not failures.
 * Only streams that finished count: min(2xx statuses, succeeded requests).
 */
export function callsWithoutMessage(s: H2loadSummary, responseFrameBytes: number): { noMessage: number; wholeMessages: boolean } {
  const messages = Math.floor(s.trafficBytes.data / responseFrameBytes);
  const finished2xx = Math.min(s.status['2xx'], s.requests.succeeded);
  return { noMessage: Math.max(0, finished2xx - messages), wholeMessages: s.trafficBytes.data % responseFrameBytes === 0 };
}

// ---------------------------------------------------------------------------------------------
// Finding (or installing) h2load
// ---------------------------------------------------------------------------------------------

interface Exit {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly error?: Error;
  /** With followCpu: the CPU seconds the command used (Linux). */
  readonly cpuSeconds?: number;
}

function exec(
  command: string,
  args: readonly string[],
  o: { timeoutMs?: number; passThrough?: boolean; env?: NodeJS.ProcessEnv; followCpu?: boolean } = {},
): Promise<Exit> {
  return new Promise((resolve) => {
    // passThrough: the child's output goes to our stderr (apt-get's progress), never to stdout.
    const child = spawn(command, args, { stdio: ['ignore', o.passThrough ? 2 : 'pipe', o.passThrough ? 2 : 'pipe'], env: o.env ?? process.env });
    const cpu = o.followCpu && child.pid !== undefined ? followCpu(child.pid) : undefined;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    let error: Error | undefined;
    child.once('error', (e) => (error = e));
    child.once('close', (code) => {
      clearTimeout(timer);
      const cpuSeconds = cpu?.stop();
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ...(error ? { error } : {}),
        ...(cpuSeconds === undefined ? {} : { cpuSeconds }),
      });
    });
  });
}

/** The command to run: BENCH_H2LOAD (a path) or `h2load` on PATH. */
export const h2loadCommand = (): string => process.env.BENCH_H2LOAD || 'h2load';

async function h2loadVersion(command: string): Promise<string | undefined> {
  const r = await exec(command, ['--version'], { timeoutMs: 10_000 });
  if (r.error || r.code !== 0) return undefined;
  return r.stdout.trim().split('\n')[0] || 'h2load (version unknown)';
}

export type H2loadAvailability = { readonly ok: true; readonly command: string; readonly version: string; readonly installed: boolean } | { readonly ok: false; readonly reason: string };

const HOW_TO_INSTALL = 'install it with `apt-get install -y nghttp2-client` (Debian/Ubuntu, as root) or `brew install nghttp2` (macOS), or set BENCH_H2LOAD to its path';

/**
 * h2load is there: use it. It is not and we are root on a system with apt-get (the development
 * VM, CI containers): install nghttp2-client, saying so loudly. Otherwise: a reason to skip the
 * gRPC scenarios, for the runner to print.
 */
export async function ensureH2load(log: (msg: string) => void): Promise<H2loadAvailability> {
  const command = h2loadCommand();
  const version = await h2loadVersion(command);
  if (version !== undefined) return { ok: true, command, version, installed: false };
  if (command !== 'h2load') return { ok: false, reason: `BENCH_H2LOAD=${command} does not run (\`${command} --version\` failed); ${HOW_TO_INSTALL}` };

  log('h2load is not installed; the gRPC scenarios need it (Debian/Ubuntu package nghttp2-client)');
  if (process.getuid?.() !== 0) return { ok: false, reason: `h2load is not installed and bench is not running as root, so it does not install it; ${HOW_TO_INSTALL}` };
  const apt = await exec('apt-get', ['--version'], { timeoutMs: 10_000 });
  if (apt.error || apt.code !== 0) return { ok: false, reason: `h2load is not installed and there is no apt-get to install nghttp2-client; ${HOW_TO_INSTALL}` };

  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => {
    log('running as root: apt-get install -y --no-install-recommends nghttp2-client');
    return exec('apt-get', ['install', '-y', '--no-install-recommends', 'nghttp2-client'], { passThrough: true, env, timeoutMs: 600_000 });
  };
  let r = await install();
  if (r.code !== 0) {
    log(`apt-get install failed (exit ${r.code}); running apt-get update and trying once more`);
    await exec('apt-get', ['update'], { passThrough: true, env, timeoutMs: 600_000 });
    r = await install();
  }
  const after = await h2loadVersion(command);
  if (after !== undefined) {
    log(`installed ${after}`);
    return { ok: true, command, version: after, installed: true };
  }
  return { ok: false, reason: `h2load is not installed and \`apt-get install -y nghttp2-client\` did not provide it (exit ${r.code}); ${HOW_TO_INSTALL}` };
}

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

export interface H2loadRun {
  readonly command: string;
  /** https://host:port/package.Service/Method */
  readonly url: string;
  /** The whole request body: one gRPC frame. */
  readonly body: Uint8Array;
  /** content-type, te, authorization … */
  readonly headers: Readonly<Record<string, string>>;
  /** HTTP/2 connections (h2load -c) and concurrent streams on each (-m). */
  readonly h2Connections: number;
  readonly streamsPerConnection: number;
  readonly durationS: number;
  /** Length of one framed response message (5 + protobuf bytes), as the verification saw it. */
  readonly responseFrameBytes: number;
}

/** The gRPC-specific part of a Measurement (kept in the JSON). */
export interface H2loadDetail {
  readonly shape: string;
  /** h2load's arguments, with the authorization value redacted. */
  readonly args: readonly string[];
  readonly summary: H2loadSummary;
  /** Streams with a 2xx status but no response message: calls that failed at the gRPC level. */
  readonly noMessage: number;
  readonly wholeMessages: boolean;
  /** --log-file rows by HTTP status; -1 = failed stream. */
  readonly logByStatus: Readonly<Record<string, number>>;
  readonly meanMs: number;
}

/** "Bearer kmsd1.…" → "Bearer <redacted, 70 characters>": the JSON keeps the size, not the token. */
const redact = (name: string, value: string) => {
  if (name.toLowerCase() !== 'authorization') return value;
  const space = value.indexOf(' ');
  return `${space > 0 ? value.slice(0, space + 1) : ''}<redacted, ${value.length - space - 1} characters>`;
};

export async function runH2load(r: H2loadRun): Promise<Measurement & { readonly h2load: H2loadDetail }> {
  const dir = await mkdtemp(join(tmpdir(), 'kmsd-bench-h2load-'));
  try {
    const bodyFile = join(dir, 'request.bin');
    const logFile = join(dir, 'requests.tsv');
    await writeFile(bodyFile, r.body);
    const fixed = ['-c', String(r.h2Connections), '-m', String(r.streamsPerConnection), '-t', '1', '-D', String(r.durationS), '-d', bodyFile, '--log-file', logFile];
    const headerArgs = (show: (n: string, v: string) => string) => Object.entries(r.headers).flatMap(([n, v]) => ['-H', `${n}: ${show(n, v)}`]);
    const args = [...fixed, ...headerArgs((_, v) => v), r.url];
    const exit = await exec(r.command, args, { timeoutMs: (r.durationS + 60) * 1000, followCpu: true });
    if (exit.error) throw new Error(`h2load did not run: ${exit.error.message}`);
    const output = `${exit.stdout}\n${exit.stderr}`;
    const summary = parseH2loadOutput(output); // throws, quoting the output, when it is not a report
    if (exit.code !== 0) throw new Error(`h2load exited ${exit.code}\n${output.trim().split('\n').slice(-15).join('\n')}`);
    if (summary.requests.done === 0) throw new Error(`h2load completed no request\n${output.trim().split('\n').slice(-15).join('\n')}`);

    const log = parseH2loadLog(await readFile(logFile, 'utf8'));
    const lat = Float64Array.from(log.latenciesMs).sort();
    const { noMessage, wholeMessages } = callsWithoutMessage(summary, r.responseFrameBytes);
    const httpNon2xx = summary.status['3xx'] + summary.status['4xx'] + summary.status['5xx'];
    const statusCodes: Record<string, number> = {};
    for (const [k, v] of Object.entries(summary.status)) if (v > 0) statusCodes[k] = v;
    if (noMessage > 0) statusCodes['2xx without a response message (grpc-status ≠ 0)'] = noMessage;
    const shape = `h2load -c ${r.h2Connections} -m ${r.streamsPerConnection} -t 1: ${r.h2Connections * r.streamsPerConnection} concurrent streams on ${r.h2Connections} TLS connections`;
    return {
      reqPerSec: summary.reqPerSec,
      p50Ms: percentile(lat, 0.5),
      p99Ms: percentile(lat, 0.99),
      non2xx: httpNon2xx + noMessage,
      errors: summary.requests.errored + summary.requests.timeout,
      timeouts: summary.requests.timeout,
      responses2xx: Math.max(0, summary.requests.succeeded - noMessage),
      durationS: r.durationS,
      statusCodes,
      ...(exit.cpuSeconds === undefined ? {} : { generatorCpuSeconds: exit.cpuSeconds }),
      h2load: {
        shape,
        args: [...fixed, ...headerArgs(redact), r.url],
        summary,
        noMessage,
        wholeMessages,
        logByStatus: log.byStatus,
        meanMs: lat.length === 0 ? NaN : lat.reduce((a, b) => a + b, 0) / lat.length,
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
