import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { envNumber } from './env.js';
import { gitRevision, machine, resultFileName, root } from './machine.js';

// npm run bench:start: how long `kmsd serve` takes from spawn to its ready line on stdout (issue
// #7: under 1 s with --auth none and an empty data directory; kmsd is an emulator in CI
// pipelines). Each row spawns kmsd BENCH_START_RUNS times, round robin with the other rows so
// that a change in the machine's load spreads over all of them, and stops it with SIGTERM once
// it is ready. "fresh": an empty data directory each time (the first start makes the database,
// root key, certificates); "warm": one data directory that an unmeasured start made. The floor is
// `node -e ""` from spawn to exit: what any node process costs here. BENCH_START_COMPARE=<another
// dist/cli/kmsd.js> measures that build in the same run, for before/after ratios. See
// bench/README.md.

const config = {
  runs: Math.round(envNumber('BENCH_START_RUNS', 10, 1)),
  compare: process.env.BENCH_START_COMPARE ? resolve(process.env.BENCH_START_COMPARE) : undefined,
  /** Extra node flags for kmsd, e.g. "--cpu-prof --cpu-prof-dir=.tmp/prof". */
  nodeArgs: (process.env.BENCH_START_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== ''),
  readyTimeoutMs: 30_000,
};

const log = (msg: string) => process.stderr.write(`bench:start: ${msg}\n`);

interface Build {
  readonly name: string;
  readonly kmsd: string;
}
interface Variant {
  readonly name: string;
  readonly auth?: 'none' | 'iam';
  readonly warm?: boolean;
}

const builds: Build[] = [{ name: 'this', kmsd: join(root, 'dist', 'cli', 'kmsd.js') }, ...(config.compare ? [{ name: 'compare', kmsd: config.compare }] : [])];
const variants: Variant[] = [
  { name: 'floor: node -e ""' },
  { name: '--auth none, fresh', auth: 'none' },
  { name: '--auth none, warm', auth: 'none', warm: true },
  { name: '--auth iam, fresh', auth: 'iam' },
  { name: '--auth iam, warm', auth: 'iam', warm: true },
];

// kmsd's own KMSD_* settings from the runner's environment would change what is measured.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMSD_')));
const dirs: string[] = [];
const newDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'kmsd-start-'));
  dirs.push(d);
  return d;
};

/** Spawns a command and resolves with the ms from spawn to `until` (a stdout line), or to its exit when `until` is undefined. */
function timed(args: readonly string[], until?: (line: string) => boolean): Promise<number> {
  return new Promise((resolveMs, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let readyMs: number | undefined;
    const stderr: string[] = [];
    createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l));
    const timer = setTimeout(() => child.kill('SIGKILL'), config.readyTimeoutMs);
    if (until) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (readyMs !== undefined || !until(line)) return;
        readyMs = performance.now() - started;
        child.kill('SIGTERM');
      });
    } else {
      child.stdout.resume();
    }
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const ms = until ? readyMs : performance.now() - started;
      if (ms !== undefined && code === 0) resolveMs(ms);
      else reject(new Error(`${args.join(' ')}: ${ms === undefined ? 'never ready' : 'did not stop cleanly'} (exit ${code ?? signal})\n${stderr.slice(-20).join('\n')}`));
    });
  });
}

const isReady = (line: string) => {
  try {
    return (JSON.parse(line) as { event?: unknown }).event === 'ready';
  } catch {
    return false;
  }
};

function serveArgs(build: Build, auth: 'none' | 'iam', dataDir: string): string[] {
  return [...config.nodeArgs, build.kmsd, 'serve', '--auth', auth, '--data-dir', dataDir, '--rest-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'];
}

interface Row {
  readonly build: string;
  readonly variant: string;
  readonly samplesMs: number[];
}

const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
function stats(samples: readonly number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x);
  return { n: s.length, min: round(s[0]!), median: round(quantile(s, 0.5)), p90: round(quantile(s, 0.9)), max: round(s.at(-1)!) };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = loadavg();
  if (loadBefore[0]! > machine.cores / 2) log(`WARNING: 1-minute load average is ${loadBefore[0]!.toFixed(1)} on ${machine.cores} cores; other work on the machine skews the numbers`);
  log(`${config.runs} runs per row; builds: ${builds.map((b) => `${b.name} = ${b.kmsd}`).join(', ')}`);

  const rows: Row[] = [];
  const warmDirs = new Map<string, string>();
  rows.push({ build: 'node', variant: variants[0]!.name, samplesMs: [] });
  for (const build of builds) {
    for (const v of variants.filter((x) => x.auth)) {
      rows.push({ build: build.name, variant: v.name, samplesMs: [] });
      if (!v.auth || !v.warm) continue;
      // The unmeasured start that makes the data directory the warm rows reuse.
      const dir = newDir();
      await timed(serveArgs(build, v.auth, dir), isReady);
      warmDirs.set(`${build.name}/${v.name}`, dir);
    }
  }
  for (let i = 0; i < config.runs; i++) {
    for (const build of builds) {
      // The floor does not depend on the build: measured once per round.
      if (build === builds[0]) rows[0]!.samplesMs.push(await timed(['-e', '']));
      for (const v of variants) {
        if (!v.auth) continue;
        const row = rows.find((r) => r.build === build.name && r.variant === v.name)!;
        const dir = v.warm ? warmDirs.get(`${build.name}/${v.name}`)! : newDir();
        row.samplesMs.push(await timed(serveArgs(build, v.auth, dir), isReady));
        if (!v.warm) rmSync(dir, { recursive: true, force: true });
      }
    }
    log(`round ${i + 1}/${config.runs} done`);
  }
  const measured = rows.filter((r) => r.samplesMs.length > 0);
  const loadAfter = loadavg();

  const table = measured.map((r) => ({ build: r.build, variant: r.variant, ...stats(r.samplesMs) }));
  const compared = config.compare
    ? variants
        .filter((v) => v.auth)
        .map((v) => {
          const of = (b: string) => table.find((t) => t.build === b && t.variant === v.name)!;
          return { variant: v.name, medianThisMs: of('this').median, medianCompareMs: of('compare').median, ratio: Math.round((of('this').median / of('compare').median) * 100) / 100 };
        })
    : [];

  const pad = (s: string | number, n: number) => String(s).padStart(n);
  process.stdout.write(`\n${machine.cpu} × ${machine.cores}, node ${machine.node}; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${loadAfter.map((x) => x.toFixed(2)).join(' ')} after\n`);
  process.stdout.write('ms from spawn to the ready line on stdout (floor: to exit)\n\n');
  process.stdout.write(`${'build'.padEnd(8)} ${'row'.padEnd(22)} ${pad('n', 3)} ${pad('min', 6)} ${pad('median', 7)} ${pad('p90', 6)} ${pad('max', 6)}\n`);
  for (const t of table) process.stdout.write(`${t.build.padEnd(8)} ${t.variant.padEnd(22)} ${pad(t.n, 3)} ${pad(t.min, 6)} ${pad(t.median, 7)} ${pad(t.p90, 6)} ${pad(t.max, 6)}\n`);
  if (compared.length > 0) {
    process.stdout.write('\nmedian this ÷ median compare\n');
    for (const c of compared) process.stdout.write(`${c.variant.padEnd(22)} ${pad(c.medianThisMs, 6)} / ${pad(c.medianCompareMs, 6)} = ${c.ratio.toFixed(2)}\n`);
  }

  const results = {
    kind: 'start',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { ...machine, loadAverageBefore: loadBefore, loadAverageAfter: loadAfter },
    git: gitRevision(),
    config: { runs: config.runs, nodeArgs: config.nodeArgs },
    builds: builds.map((b) => ({ ...b, git: gitRevision(dirname(b.kmsd)) })),
    results: table.map((t) => ({ ...t, samplesMs: measured.find((r) => r.build === t.build && r.variant === t.variant)!.samplesMs.map((x) => Math.round(x * 10) / 10) })),
    ratios: compared,
  };
  const dir = join(root, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, resultFileName(startedAt, '-start'));
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nwrote ${file}\n`);
}

try {
  await main();
} catch (e) {
  process.stderr.write(`bench:start: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
