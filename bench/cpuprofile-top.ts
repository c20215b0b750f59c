import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

// Summarises a V8 .cpuprofile (node --cpu-prof): top functions by self time, by total (inclusive)
// time, and self time per package. See bench/README.md, "Profiling kmsd".
//
//   node --import tsx bench/cpuprofile-top.ts [-n N] FILE.cpuprofile…

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = process.argv.slice(2);
let topN = 15;
const nAt = args.indexOf('-n');
if (nAt >= 0) {
  topN = Number(args[nAt + 1]);
  args.splice(nAt, 2);
}
if (args.length === 0 || !Number.isInteger(topN) || topN < 1) {
  process.stderr.write('usage: cpuprofile-top [-n N] FILE.cpuprofile…\n');
  process.exit(2);
}
const cwd = process.cwd();

function shortUrl(url: string): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.startsWith('/') ? relative(cwd, path) : path;
}

function frameKey(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  return f.url === '' ? name : `${name}  ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

/** node_modules/<package>, node:internal, dist/<dir>, or the pseudo-frame name. */
function bucket(f: CallFrame): string {
  if (f.url === '') return f.functionName; // (program), (garbage collector), (idle), native
  if (f.url.startsWith('node:')) return 'node: (core)';
  const p = shortUrl(f.url);
  const nm = p.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = p.slice(nm + 'node_modules/'.length).split('/');
    return `npm ${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const parts = p.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : p;
}

function summarise(file: string): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const buckets = new Map<string, number>();
  let all = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id)!;
    all += dt;
    if (node.callFrame.functionName === '(idle)') idle += dt;
    const key = frameKey(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const b = bucket(node.callFrame);
    buckets.set(b, (buckets.get(b) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = frameKey(byId.get(cur)!.callFrame);
      if (seen.has(k)) continue; // recursion counts once
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  });

  const busy = all - idle;
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  const print = (title: string, m: Map<string, number>, n: number, skip?: (k: string) => boolean) => {
    process.stdout.write(`\n${title}\n`);
    [...m.entries()]
      .filter(([k]) => !skip?.(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .forEach(([k, us]) => process.stdout.write(`${ms(us)} ${pct(us)}  ${k}\n`));
  };

  process.stdout.write(`${file}\nsampled ${(all / 1e6).toFixed(1)} s, idle ${(idle / 1e6).toFixed(1)} s; percentages are of non-idle time (${(busy / 1e6).toFixed(1)} s)\n`);
  print('self time by package', buckets, 20, (k) => k === '(idle)');
  print(`top ${topN} functions by self time`, self, topN, (k) => k === '(idle)');
  const pseudo = new Set(['(root)', '(program)', '(idle)', '(garbage collector)']);
  print(`top ${topN * 2} functions by total (inclusive) time`, total, topN * 2, (k) => pseudo.has(k));
}

for (const file of args) summarise(file);
