import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

// CPU time a target's server process spends, read from /proc (Linux). Requests per second depend
// on what else the machine runs — the load generator on the other core, a test suite beside the
// bench — but the server's CPU time per request hardly does, so it is the steadier measure of
// what kmsd costs compared with its baseline on a shared machine. Undefined where /proc is absent.

function clockTicksPerSecond(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

const TICKS = clockTicksPerSecond();

/** User + system CPU seconds used so far by the process `pid` (its own threads, not its children). */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / TICKS : undefined;
  } catch {
    return undefined;
  }
}

/** The parent of `pid`, or undefined when it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds used so far by `pid` and every live process under it: a server that runs in several
 * processes (`kmsd serve --workers N`: a supervisor and its workers) is all of them.
 */
export function treeCpuSeconds(pid: number): number | undefined {
  const own = processCpuSeconds(pid);
  if (own === undefined) return undefined;
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const p = Number(entry);
    const parent = Number.isInteger(p) ? parentOf(p) : undefined;
    if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), p]);
  }
  let total = own;
  const pending = [...(children.get(pid) ?? [])];
  while (pending.length > 0) {
    const p = pending.pop()!;
    total += processCpuSeconds(p) ?? 0;
    pending.push(...(children.get(p) ?? []));
  }
  return total;
}

/**
 * Follows the CPU time of a process that will exit by itself (a load generator run as a child): read
 * every `everyMs` while it runs; the last reading stands once it is gone.
 */
export function followCpu(pid: number, everyMs = 100): { stop(): number | undefined } {
  let last = processCpuSeconds(pid);
  const timer = setInterval(() => {
    last = processCpuSeconds(pid) ?? last;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return last;
    },
  };
}
