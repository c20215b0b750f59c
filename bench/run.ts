import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { killAllChildren, type StopResult } from './child.js';
import { envNumber } from './env.js';
import { gitRevision, machine, resultFileName, root } from './machine.js';
import { treeCpuSeconds } from './process-cpu.js';
import { formatTable, ratios, type ResultRow } from './report.js';
import { SCENARIOS, type Scenario } from './scenarios.js';
import { TARGETS, type RunningTarget } from './targets.js';

// npm run bench: start every target the scenarios name, check each answers correctly, then for
// each scenario warm up and measure the baseline and the subject back to back (baseline GDK, kmsd
// GDK, baseline Encrypt, kmsd Encrypt, for REST then for gRPC), print a table and write
// bench/results/<time>.json. Exits non-zero when anything failed: a target did not start or stop
// cleanly, a check failed, or a run saw non-2xx answers (gRPC: non-OK calls) or connection errors.
// Scenarios whose load generator is missing (h2load, when it cannot be installed) are skipped
// with a warning, without failing the run. See bench/README.md.

const config = {
  connections: Math.round(envNumber('BENCH_CONNECTIONS', 64, 1)),
  /** gRPC: the concurrent calls are streams spread over this many HTTP/2 connections. */
  h2Connections: Math.round(envNumber('BENCH_GRPC_CONNECTIONS', 4, 1)),
  warmupS: envNumber('BENCH_WARMUP', 2, 0),
  durationS: envNumber('BENCH_DURATION', 10, 1),
};
if (config.connections % config.h2Connections !== 0) {
  process.stderr.write(`bench: BENCH_CONNECTIONS (${config.connections}) must be a multiple of BENCH_GRPC_CONNECTIONS (${config.h2Connections})\n`);
  process.exit(2);
}
/** BENCH_SCENARIOS=grpc,rest encrypt: scenarios whose name contains one of the parts (any case); `=REST Encrypt 64 B`: that name exactly. */
const selection = (process.env.BENCH_SCENARIOS ?? '').split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '');
const matches = (name: string, part: string) => (part.startsWith('=') ? name.toLowerCase() === part.slice(1) : name.toLowerCase().includes(part));
const selected = SCENARIOS.filter((s) => selection.length === 0 || selection.some((part) => matches(s.name, part)));
if (selected.length === 0) {
  process.stderr.write(`bench: BENCH_SCENARIOS="${process.env.BENCH_SCENARIOS}" selects none of: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
  process.exit(2);
}
const shapes = {
  autocannon: `autocannon, ${config.connections} HTTP/1.1 keep-alive connections, no pipelining`,
  h2load: `h2load -c ${config.h2Connections} -m ${config.connections / config.h2Connections} -t 1: ${config.connections} concurrent streams over ${config.h2Connections} TLS HTTP/2 connections`,
} as const;

/** BENCH_NODE_ARGS_KMSD="--cpu-prof --cpu-prof-dir=.tmp/prof": extra node flags for one target. */
const nodeArgsEnv = (target: string) => `BENCH_NODE_ARGS_${target.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
const nodeArgs = (target: string): string[] => (process.env[nodeArgsEnv(target)] ?? '').split(/\s+/).filter((a) => a !== '');

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** "autocannon 9.0.0", from the installed package. */
function packageVersion(name: string): string {
  try {
    const pkg = createRequire(import.meta.url)(`${name}/package.json`) as { version?: string };
    return `${name} ${pkg.version ?? '(version unknown)'}`;
  } catch {
    return name;
  }
}


const running = new Map<string, RunningTarget>();
const stopped = new Map<string, StopResult>();
const failures: string[] = [];
const skipped: { scenario: string; reason: string }[] = [];
const tools: Record<string, string> = {};
const rows: ResultRow[] = [];

async function stopAll(): Promise<void> {
  // Reverse start order; each stop is independent of the others' failures.
  for (const t of [...running.values()].reverse()) {
    running.delete(t.name);
    try {
      const r = await t.stop();
      stopped.set(t.name, r);
      if (!r.clean) failures.push(`${t.name} did not stop cleanly on SIGTERM (code ${r.code}, signal ${r.signal})\n${t.process.stderrTail()}`);
    } catch (e) {
      failures.push(`${t.name}: stopping failed: ${errorText(e)}`);
    }
  }
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping servers`);
    void stopAll().finally(() => process.exit(130));
  });
}
process.on('exit', killAllChildren);

/** Skipped scenarios by reason, so one missing tool is reported once. */
function groupByReason(list: readonly { scenario: string; reason: string }[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of list) out.set(s.reason, [...(out.get(s.reason) ?? []), s.scenario]);
  return out;
}

function checkRun(s: Scenario, target: string, phase: string, m: { non2xx: number; errors: number; timeouts: number; statusCodes: Readonly<Record<string, number>> }) {
  if (m.non2xx > 0 || m.errors > 0) {
    failures.push(`${s.name} / ${target} (${phase}): ${m.non2xx} non-2xx (${JSON.stringify(m.statusCodes)}), ${m.errors} connection errors, ${m.timeouts} timeouts`);
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = loadavg();
  if (loadBefore[0]! > machine.cores / 2) {
    log(`WARNING: 1-minute load average is ${loadBefore[0]!.toFixed(1)} on ${machine.cores} cores; other work on the machine skews the numbers`);
  }
  log(`${machine.cpu}, ${machine.cores} cores, node ${machine.node}; ${config.connections} concurrent requests, warm-up ${config.warmupS} s, measure ${config.durationS} s`);

  // A scenario whose load generator is missing (and cannot be installed) is skipped, loudly.
  const scenarios: Scenario[] = [];
  for (const s of selected) {
    const pre = s.prerequisite ? await s.prerequisite(log) : { tool: packageVersion(s.generator) };
    if ('skip' in pre) {
      skipped.push({ scenario: s.name, reason: pre.skip });
      continue;
    }
    tools[s.generator] = pre.tool;
    scenarios.push(s);
  }
  for (const [reason, names] of groupByReason(skipped)) log(`WARNING: SKIPPING ${names.join(', ')}: ${reason}`);

  // Start every target up front, in TARGETS order, so no start-up lands between measurements.
  const wanted = new Set(scenarios.flatMap((s) => [s.baseline, s.subject]));
  for (const def of TARGETS.filter((t) => wanted.has(t.name))) {
    try {
      const t = await def.start({ root, nodeArgs });
      running.set(t.name, t);
      const at = [t.origin, t.grpc && `grpcs://${t.grpc.address}`].filter((x) => x !== undefined).join(' and ');
      log(`${t.name} ready at ${at} (pid ${t.process.pid}): ${def.description}`);
    } catch (e) {
      failures.push(`${def.name} did not start: ${errorText(e)}`);
    }
  }

  // Every scenario answers correctly on both targets before anything is measured.
  const runnable: Scenario[] = [];
  for (const s of scenarios) {
    const pair = [running.get(s.baseline), running.get(s.subject)];
    if (pair.some((t) => t === undefined)) {
      failures.push(`${s.name}: skipped, target ${[s.baseline, s.subject].filter((n) => !running.has(n)).join(', ')} not running`);
      continue;
    }
    try {
      for (const t of pair) await s.verify(t!);
      runnable.push(s);
    } catch (e) {
      failures.push(`${s.name}: skipped, ${errorText(e)}`);
    }
  }

  for (const s of runnable) {
    for (const [role, name] of [['baseline', s.baseline], ['subject', s.subject]] as const) {
      if (interrupted) return;
      const t = running.get(name)!;
      const o = { connections: s.connections ?? config.connections, h2Connections: config.h2Connections };
      try {
        log(`${s.name} / ${name}: warm-up ${config.warmupS} s`);
        const warmup = config.warmupS > 0 ? await s.measure(t, { ...o, durationS: config.warmupS }) : undefined;
        if (warmup) checkRun(s, name, 'warm-up', warmup);
        log(`${s.name} / ${name}: measuring ${config.durationS} s (${s.connections === undefined ? shapes[s.generator] : `${s.connections} connections`})`);
        // The server's CPU is that of its process and of every process under it (--workers).
        const cpuBefore = treeCpuSeconds(t.process.pid);
        const started = performance.now();
        const m = await s.measure(t, { ...o, durationS: config.durationS });
        const wallS = (performance.now() - started) / 1000;
        const cpuAfter = treeCpuSeconds(t.process.pid);
        checkRun(s, name, 'measurement', m);
        const answered = m.responses2xx + m.non2xx;
        const serverCpuUsPerRequest = cpuBefore === undefined || cpuAfter === undefined || answered === 0 ? undefined : ((cpuAfter - cpuBefore) * 1e6) / answered;
        const cores = {
          ...(cpuBefore === undefined || cpuAfter === undefined ? {} : { serverCores: (cpuAfter - cpuBefore) / wallS }),
          ...(m.generatorCpuSeconds === undefined ? {} : { generatorCores: m.generatorCpuSeconds / wallS }),
        };
        rows.push({ scenario: s.name, target: name, role, connections: o.connections, measurement: m, warmup, serverCpuUsPerRequest, ...cores });
      } catch (e) {
        failures.push(`${s.name} / ${name}: ${errorText(e)}`);
      }
    }
  }

  await stopAll();
  const finishedAt = new Date();
  const loadAfter = loadavg();
  const ratioRows = ratios(rows);

  const used = new Set(scenarios.map((s) => s.generator));
  process.stdout.write(`\n${machine.cpu} × ${machine.cores}, node ${machine.node}, ${machine.os}\n`);
  for (const g of used) process.stdout.write(`${g === 'h2load' ? 'gRPC' : 'REST'}: ${shapes[g]} (${tools[g] ?? g})\n`);
  process.stdout.write(
    `warm-up ${config.warmupS} s, measured ${config.durationS} s per run; ratio = subject req/s ÷ baseline req/s (kmsd ÷ bare server; the AES_256_HSM row: kmsd-hsm ÷ kmsd with AES_256; the "PostgreSQL vs SQLite store" rows: kmsd-postgres ÷ kmsd; the "--workers vs one process" rows: kmsd-workers ÷ kmsd); cpu µs/req = the server's CPU time (all its processes) per answered request, cpu ratio = baseline's ÷ subject's; srv/gen cores = CPU the server and the load generator used ÷ wall time\n\n`,
  );
  process.stdout.write(`${formatTable(rows, ratioRows)}\n`);
  for (const [reason, names] of groupByReason(skipped)) process.stdout.write(`\nSKIPPED, not measured: ${names.join(', ')}\n  ${reason}\n`);

  const results = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    machine: { ...machine, loadAverageBefore: loadBefore, loadAverageAfter: loadAfter },
    git: gitRevision(),
    config: { ...config, scenarios: selected.map((s) => s.name) },
    load: Object.fromEntries([...used].map((g) => [g, { shape: shapes[g], version: tools[g] }])),
    targets: TARGETS.filter((t) => wanted.has(t.name)).map((t) => ({
      name: t.name,
      description: t.description,
      nodeArgs: nodeArgs(t.name),
      stop: stopped.get(t.name),
    })),
    results: rows,
    ratios: ratioRows,
    skipped,
    failures,
    ok: failures.length === 0,
  };
  const dir = join(root, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, resultFileName(startedAt));
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nwrote ${file}\n`);
}

try {
  await main();
} catch (e) {
  failures.push(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
} finally {
  await stopAll();
}
for (const [reason, names] of groupByReason(skipped)) {
  process.stderr.write(`\nbench: WARNING: SKIPPED, not measured: ${names.join(', ')}\n  ${reason}\n`);
}
if (failures.length > 0) {
  process.stderr.write(`\nbench: FAILED\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
  process.exitCode = 1;
}
