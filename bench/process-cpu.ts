import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
