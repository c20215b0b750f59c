import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAllChildren } from './child.js';
import { envNumber } from './env.js';
import { runAutocannon, type HttpRequestSpec, type Measurement } from './load.js';
import { processCpuSeconds } from './process-cpu.js';
import { LIST_FOLDER } from './seed-keys.js';
import { kmsdScale, TARGETS, type RunningTarget } from './targets.js';

// npm run bench:scale — issue #7 targets 5 and 6, with many keys (see bench/README.md, "Scale"):
//   hot     REST Encrypt on 1 key of a 1-key store (`kmsd`) against round robin over a hot set of
//           100 keys of a 100 000-key store (`kmsd-100k`); the 100k store's own 1-key rate too.
//   cold    REST Encrypt where every request names a key not used before: req/s, p99, and the
//           store reads and root-key unwraps per call, from the server's /metrics.
//   list    List of a folder of 10 000 keys, walking every page of 100: ms per page.
//   memory  The server's RSS under sustained Encrypt load over all 100 000 keys for BENCH_SOAK
//           seconds, sampled every BENCH_SOAK_SAMPLE seconds; growth = least-squares slope of the
//           second half.
// BENCH_SCALE=hot,cold,list,memory picks parts (default: all). Exits 1 when a run saw errors or a
// target was missed.

const root = fileURLToPath(new URL('..', import.meta.url));

const PARTS = ['hot', 'cold', 'list', 'memory'] as const;
type Part = (typeof PARTS)[number];
const picked = (process.env.BENCH_SCALE ?? '').split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '');
for (const p of picked) {
  if (!(PARTS as readonly string[]).includes(p)) {
    process.stderr.write(`bench: BENCH_SCALE names "${p}"; the parts are ${PARTS.join(', ')}\n`);
    process.exit(2);
  }
}
const parts = new Set<Part>(picked.length === 0 ? PARTS : (picked as Part[]));

const config = {
  connections: Math.round(envNumber('BENCH_CONNECTIONS', 64, 1)),
  warmupS: envNumber('BENCH_WARMUP', 2, 0),
  durationS: envNumber('BENCH_DURATION', 10, 1),
  hotKeys: Math.round(envNumber('BENCH_SCALE_HOT_KEYS', 100, 1)),
  listWalks: Math.round(envNumber('BENCH_LIST_WALKS', 3, 1)),
  soakS: envNumber('BENCH_SOAK', 300, 10),
  soakSampleS: envNumber('BENCH_SOAK_SAMPLE', 5, 1),
};

/** Issue #7's numbers. */
const TARGET = { hotRatio: 0.9, coldReadsPerCall: 1, coldUnwrapsPerCall: 1, listPageMs: 50, rssMb: 200 } as const;

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const failures: string[] = [];
const running: RunningTarget[] = [];
process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllChildren();
    process.exit(130);
  });
}

const PLAINTEXT = randomBytes(64).toString('base64');
const ENCRYPT_BODY = JSON.stringify({ plaintext: PLAINTEXT, aadContext: Buffer.from('ctx').toString('base64') });

function origin(t: RunningTarget): string {
  if (t.origin === undefined) throw new Error(`${t.name} serves no REST`);
  return t.origin;
}

/**
 * Encrypt requests to `keys` in turn. The path is set per request even for one key, so the load
 * generator (on the same 2 cores) does the same work whatever the number of keys.
 */
function encrypts(t: RunningTarget, keys: readonly string[]): HttpRequestSpec {
  const paths = keys.map((id) => `/kms/v1/keys/${id}:encrypt`);
  let next = 0;
  return {
    method: 'POST',
    url: `${origin(t)}${paths[0]}`,
    headers: { ...t.headers, 'content-type': 'application/json' },
    body: ENCRYPT_BODY,
    nextPath: () => paths[next++ % paths.length]!,
  };
}

function checked(what: string, m: Measurement): Measurement {
  if (m.non2xx > 0 || m.errors > 0) failures.push(`${what}: ${m.non2xx} non-2xx (${JSON.stringify(m.statusCodes)}), ${m.errors} connection errors`);
  return m;
}

/** One autocannon run with warm-up, and the server's CPU time per answered request. */
async function measure(what: string, t: RunningTarget, req: HttpRequestSpec, o: { warmupS?: number; durationS: number }) {
  const warmupS = o.warmupS ?? config.warmupS;
  if (warmupS > 0) {
    log(`${what}: warm-up ${warmupS} s`);
    checked(`${what} (warm-up)`, await runAutocannon(req, { connections: config.connections, durationS: warmupS }));
  }
  log(`${what}: measuring ${o.durationS} s`);
  const cpu0 = processCpuSeconds(t.process.pid);
  const m = checked(what, await runAutocannon(req, { connections: config.connections, durationS: o.durationS }));
  const cpu1 = processCpuSeconds(t.process.pid);
  const answered = m.responses2xx + m.non2xx;
  const cpuUsPerRequest = cpu0 === undefined || cpu1 === undefined || answered === 0 ? undefined : ((cpu1 - cpu0) * 1e6) / answered;
  return { ...m, cpuUsPerRequest };
}

/** The counters of a Prometheus exposition: "name{labels}" → value. */
async function scrape(t: RunningTarget): Promise<Map<string, number>> {
  const res = await fetch(`${origin(t)}/metrics`);
  if (res.status !== 200) throw new Error(`${t.name}: GET /metrics answered ${res.status}`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Store calls by operation between two scrapes (kmsd_store_call_duration_seconds_count). */
function storeCallsBetween(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const calls: Record<string, number> = {};
  for (const [series, n] of after) {
    const m = /^kmsd_store_call_duration_seconds_count\{operation="(\w+)"\}$/.exec(series);
    if (!m) continue;
    const d = n - (before.get(series) ?? 0);
    if (d > 0) calls[m[1]!] = d;
  }
  return calls;
}

/**
 * A scrape once the server has finished the calls still in flight when the load stopped (autocannon
 * does not wait for them): two scrapes in a row that agree on the calls answered and the store calls.
 */
async function settled(t: RunningTarget): Promise<Map<string, number>> {
  const sig = (m: Map<string, number>) =>
    [...m].filter(([name]) => name.startsWith('kmsd_requests_total') || name.startsWith('kmsd_store_call_duration_seconds_count')).map(([n, v]) => `${n}=${v}`).join();
  let last = await scrape(t);
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const next = await scrape(t);
    if (sig(next) === sig(last)) return next;
    last = next;
  }
  return last;
}

const between = (before: Map<string, number>, after: Map<string, number>, series: string) => (after.get(series) ?? 0) - (before.get(series) ?? 0);

/** The growth of every series whose name and labels match. */
function sumBetween(before: Map<string, number>, after: Map<string, number>, series: RegExp): number {
  let sum = 0;
  for (const [name, n] of after) if (series.test(name)) sum += n - (before.get(name) ?? 0);
  return sum;
}

/** Store operations that read a key or its versions (the ones a crypto call's cache miss makes). */
const KEY_READS = ['getKeyWithVersions', 'getKey', 'getVersion', 'getWrappedMaterial'];

/** Resident set size of a process in MB (VmRSS of /proc/<pid>/status). */
function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  return sxx === 0 ? 0 : points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0) / sxx;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Spread `count` picks evenly over `ids`. */
function spread(ids: readonly string[], count: number): string[] {
  const step = ids.length / count;
  return Array.from({ length: Math.min(count, ids.length) }, (_, i) => ids[Math.floor(i * step)]!);
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomBytes(4).readUInt32BE(0) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const fmt = (n: number | undefined, digits = 0) => (n === undefined ? '' : n.toFixed(digits));
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');

async function main() {
  const startedAt = new Date();
  const loadBefore = loadavg();
  if (loadBefore[0]! > cpus().length / 2) log(`WARNING: 1-minute load average is ${loadBefore[0]!.toFixed(1)} on ${cpus().length} cores; other work skews the numbers`);
  const ctx = { root, nodeArgs: (name: string) => (process.env[`BENCH_NODE_ARGS_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] ?? '').split(/\s+/).filter((a) => a !== '') };

  const results: Record<string, unknown> = {};
  const lines: string[] = [];

  log('starting kmsd-100k (seeding its data directory first)');
  const scale = await kmsdScale.start(ctx);
  running.push(scale);
  const seeded = scale.seeded!;
  log(`kmsd-100k ready (pid ${scale.process.pid}): ${seeded.ids.length} keys, ${seeded.versions} versions, seeded in ${seeded.seconds.toFixed(1)} s`);
  results.seed = { keys: seeded.ids.length, listKeys: seeded.listIds.length, versions: seeded.versions, seconds: seeded.seconds };
  const rssAtStart = rssMb(scale.process.pid);

  const bulk = seeded.ids.slice(seeded.listIds.length);
  const hot = spread(bulk, config.hotKeys);
  const hotSet = new Set(hot);

  if (parts.has('hot')) {
    const one = await TARGETS.find((t) => t.name === 'kmsd')!.start(ctx);
    running.push(one);
    const a = await measure('hot: kmsd, 1 key (1-key store)', one, encrypts(one, [one.keyId]), { durationS: config.durationS });
    const b = await measure('hot: kmsd-100k, 1 key', scale, encrypts(scale, [scale.keyId]), { durationS: config.durationS });
    const c = await measure(`hot: kmsd-100k, round robin over ${hot.length} keys`, scale, encrypts(scale, hot), { durationS: config.durationS });
    const ratio = c.reqPerSec / a.reqPerSec;
    const cpuRatio = a.cpuUsPerRequest && c.cpuUsPerRequest ? a.cpuUsPerRequest / c.cpuUsPerRequest : undefined;
    results.hot = { oneKeyStore: a, scaleOneKey: b, scaleHotSet: c, hotKeys: hot.length, ratio, cpuRatio };
    lines.push(
      `hot set (REST Encrypt 64 B, ${config.connections} conns, ${config.durationS} s each)`,
      `  kmsd, 1 key of a 1-key store            ${fmt(a.reqPerSec)} req/s  p50 ${fmt(a.p50Ms, 1)} ms  p99 ${fmt(a.p99Ms, 1)} ms  cpu ${fmt(a.cpuUsPerRequest)} µs/req`,
      `  kmsd-100k, 1 key                        ${fmt(b.reqPerSec)} req/s  p50 ${fmt(b.p50Ms, 1)} ms  p99 ${fmt(b.p99Ms, 1)} ms  cpu ${fmt(b.cpuUsPerRequest)} µs/req`,
      `  kmsd-100k, round robin over ${String(hot.length).padEnd(4)} keys  ${fmt(c.reqPerSec)} req/s  p50 ${fmt(c.p50Ms, 1)} ms  p99 ${fmt(c.p99Ms, 1)} ms  cpu ${fmt(c.cpuUsPerRequest)} µs/req`,
      `  ratio hot set ÷ 1-key store: ${ratio.toFixed(2)} (cpu ratio ${fmt(cpuRatio, 2)}); target ≥ ${TARGET.hotRatio}: ${verdict(ratio >= TARGET.hotRatio)}`,
    );
    await one.stop();
    running.splice(running.indexOf(one), 1);
  }

  if (parts.has('cold')) {
    // Keys outside the hot set in random order, each named once; kmsd has not used any of them.
    const cold = shuffled(bulk.filter((id) => !hotSet.has(id)));
    const before = await scrape(scale);
    const m = await measure('cold: kmsd-100k, a key not used before on every request', scale, encrypts(scale, cold), { warmupS: 0, durationS: config.durationS });
    const after = await settled(scale);
    // Counted by the server: autocannon stops counting the calls in flight when its time is up.
    const answered = sumBetween(before, after, /^kmsd_requests_total\{[^}]*method="[^"]*Encrypt"/);
    const calls = storeCallsBetween(before, after);
    // The reads of a key on the crypto path; the rest are not per call (the token and grant caches
    // refresh every few seconds, the scheduler looks for due work) and the audit group commits are
    // the calls' writes.
    const keyReads = KEY_READS.reduce((x, op) => x + (calls[op] ?? 0), 0);
    const others = Object.entries(calls).filter(([op]) => !KEY_READS.includes(op));
    const keyMisses = between(before, after, 'kmsd_key_cache_lookups_total{kind="key",result="miss"}');
    const unwraps = between(before, after, 'kmsd_key_cache_unwraps_total');
    const wrapped = answered > cold.length;
    const readsPerCall = keyReads / answered;
    const unwrapsPerCall = unwraps / answered;
    results.cold = { ...m, answered, storeCalls: calls, keyReadsPerCall: readsPerCall, unwrapsPerCall, keyMisses, wrappedAround: wrapped };
    lines.push(
      `cold keys (REST Encrypt 64 B, every request a key not used before, ${config.connections} conns, ${config.durationS} s)`,
      `  kmsd-100k  ${fmt(m.reqPerSec)} req/s  p50 ${fmt(m.p50Ms, 1)} ms  p99 ${fmt(m.p99Ms, 1)} ms  cpu ${fmt(m.cpuUsPerRequest)} µs/req${wrapped ? '  (ran out of unused keys: some were named twice)' : ''}`,
      `  store reads of keys per call ${readsPerCall.toFixed(3)} (${KEY_READS.map((op) => `${op} ${calls[op] ?? 0}`).join(', ')}; ${answered} calls answered)`,
      `  other store calls meanwhile: ${others.map(([op, n]) => `${op} ${n}`).join(', ') || 'none'}`,
      `  root-key unwraps per call ${unwrapsPerCall.toFixed(3)}; key cache misses ${keyMisses}`,
      `  target ≤ ${TARGET.coldReadsPerCall} read and ≤ ${TARGET.coldUnwrapsPerCall} unwrap per cold call: ${verdict(readsPerCall <= TARGET.coldReadsPerCall && unwrapsPerCall <= TARGET.coldUnwrapsPerCall)}`,
    );
  }

  if (parts.has('list')) {
    // One client walks every page, one request at a time, as an operator's script would.
    const pageMs: number[] = [];
    let listed = 0;
    for (let walk = 0; walk < config.listWalks; walk++) {
      const seen = new Set<string>();
      let token = '';
      do {
        const url = `${origin(scale)}/kms/v1/keys?folderId=${LIST_FOLDER}&pageSize=100${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`;
        const t0 = performance.now();
        const res = await fetch(url, { headers: scale.adminHeaders! });
        const body = (await res.json()) as { keys?: { id: string }[]; nextPageToken?: string };
        pageMs.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`List answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
        for (const k of body.keys ?? []) seen.add(k.id);
        token = body.nextPageToken ?? '';
      } while (token !== '');
      if (seen.size !== seeded.listIds.length) failures.push(`list: a walk saw ${seen.size} keys, the folder holds ${seeded.listIds.length}`);
      listed += seen.size;
    }
    const sorted = [...pageMs].sort((x, y) => x - y);
    const stats = { pages: pageMs.length, keysListed: listed, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1)!, meanMs: pageMs.reduce((x, y) => x + y, 0) / pageMs.length };
    results.list = stats;
    lines.push(
      `list (GET /kms/v1/keys of a folder of ${seeded.listIds.length} keys, 100 per page, every page, ${config.listWalks} walks, 1 client)`,
      `  ${stats.pages} pages: p50 ${stats.p50Ms.toFixed(1)} ms  p99 ${stats.p99Ms.toFixed(1)} ms  max ${stats.maxMs.toFixed(1)} ms  mean ${stats.meanMs.toFixed(1)} ms per page`,
      `  target ≤ ${TARGET.listPageMs} ms per page: ${verdict(stats.maxMs <= TARGET.listPageMs)} (max), ${verdict(stats.p99Ms <= TARGET.listPageMs)} (p99)`,
    );
  }

  if (parts.has('memory')) {
    // Round robin over every key: with a cache smaller than the store, every request loads a key
    // and evicts another, the most a node's memory can be churned by key count.
    const all = shuffled(seeded.ids);
    const samples: { s: number; rssMb: number; heapTotalMb?: number; heapUsedMb?: number; externalMb?: number }[] = [];
    const t0 = performance.now();
    // RSS from /proc; the V8 heap (committed and used) and external memory from kmsd's /metrics,
    // to tell the JavaScript heap from native memory when RSS moves.
    const sample = async () => {
      const s = (performance.now() - t0) / 1000;
      const rss = rssMb(scale.process.pid);
      const m = await scrape(scale).catch(() => undefined);
      const mb = (name: string) => (m?.get(name) === undefined ? undefined : m.get(name)! / 2 ** 20);
      samples.push({ s, rssMb: rss, heapTotalMb: mb('nodejs_heap_size_total_bytes'), heapUsedMb: mb('nodejs_heap_size_used_bytes'), externalMb: mb('nodejs_external_memory_bytes') });
    };
    await sample();
    const timer = setInterval(() => void sample(), config.soakSampleS * 1000);
    let m: Awaited<ReturnType<typeof measure>>;
    try {
      m = await measure(`memory: kmsd-100k, round robin over all ${all.length} keys`, scale, encrypts(scale, all), { warmupS: 0, durationS: config.soakS });
    } finally {
      clearInterval(timer);
    }
    await sample();
    const metrics = await scrape(scale);
    const second = samples.filter((x) => x.s >= config.soakS / 2);
    const mbPerMin = slope(second.map((x) => ({ x: x.s / 60, y: x.rssMb })));
    const max = Math.max(...samples.map((x) => x.rssMb));
    const cacheKeys = metrics.get('kmsd_key_cache_keys');
    const heapMb = (metrics.get('nodejs_heap_size_used_bytes') ?? 0) / 2 ** 20;
    results.memory = { ...m, rssAtStartMb: rssAtStart, samples, startMb: samples[0]!.rssMb, endMb: samples.at(-1)!.rssMb, maxMb: max, secondHalfSlopeMbPerMin: mbPerMin, cacheKeys, heapUsedMb: heapMb };
    // "No growth": the second half's trend would add less than 5 % of the 200 MB budget per 5 minutes.
    const flat = Math.abs(mbPerMin) * 5 <= TARGET.rssMb * 0.05;
    lines.push(
      `memory (REST Encrypt round robin over all ${all.length} keys, ${config.connections} conns, ${config.soakS} s, RSS every ${config.soakSampleS} s)`,
      `  ${fmt(m.reqPerSec)} req/s  p99 ${fmt(m.p99Ms, 1)} ms; key cache holds ${cacheKeys ?? '?'} keys; heap used ${heapMb.toFixed(0)} MB at the end`,
      `  RSS: ${rssAtStart.toFixed(0)} MB after start, ${samples[0]!.rssMb.toFixed(0)} MB before the soak, ${samples.at(-1)!.rssMb.toFixed(0)} MB at its end, max ${max.toFixed(0)} MB; second-half slope ${mbPerMin.toFixed(2)} MB/min`,
      `  at the end: V8 heap ${fmt(samples.at(-1)!.heapTotalMb)} MB committed, ${fmt(samples.at(-1)!.heapUsedMb)} MB used; external ${fmt(samples.at(-1)!.externalMb)} MB; max V8 heap committed ${fmt(Math.max(...samples.map((x) => x.heapTotalMb ?? 0)))} MB`,
      `  target RSS < ${TARGET.rssMb} MB: ${verdict(max < TARGET.rssMb)}; flat (|slope| × 5 min ≤ ${TARGET.rssMb * 0.05} MB): ${verdict(flat)}`,
    );
  }

  const loadAfter = loadavg();
  process.stdout.write(`\n${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, node ${process.version}; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${loadAfter.map((x) => x.toFixed(2)).join(' ')} after\n`);
  process.stdout.write(`kmsd-100k: ${seeded.ids.length} keys (${seeded.listIds.length} in ${LIST_FOLDER}), ${seeded.versions} versions (${seeded.rotated.length} keys rotated once)\n\n`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const dir = join(root, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `scale-${startedAt.toISOString().replace(/:/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify({ startedAt: startedAt.toISOString(), loadAverageBefore: loadBefore, loadAverageAfter: loadAfter, config, parts: [...parts], results, failures }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${file}\n`);
}

try {
  await main();
} catch (e) {
  failures.push(e instanceof Error ? (e.stack ?? e.message) : String(e));
} finally {
  for (const t of running.reverse()) {
    const r = await t.stop().catch((e: unknown) => ({ clean: false, code: null, signal: null, error: String(e) }));
    if (!r.clean) failures.push(`${t.name} did not stop cleanly: ${JSON.stringify(r)}\n${t.process.stderrTail()}`);
  }
}
if (failures.length > 0) {
  process.stderr.write(`\nbench: FAILED\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
  process.exitCode = 1;
}
