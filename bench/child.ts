import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

// A server under test as a child process: started, awaited until it prints its ready line,
// stopped with SIGTERM (SIGKILL after a grace period). Every child ever started is registered so
// the runner can kill leftovers when it is itself interrupted.

export interface ReadyLine {
  readonly event: 'ready';
  /** HOST:PORT of the REST listener, when the server has one. */
  readonly rest?: string;
  /** HOST:PORT of the gRPC listener, when the server has one. */
  readonly grpc?: string;
  readonly [field: string]: unknown;
}

export interface StopResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when the child exited 0 on SIGTERM within the grace period. */
  readonly clean: boolean;
}

export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly ready: ReadyLine;
  /** The last lines the child wrote to stderr, for failure messages. */
  stderrTail(): string;
  stop(graceMs?: number): Promise<StopResult>;
}

const STDERR_TAIL_LINES = 40;
const live = new Set<ChildProcess>();

/** Synchronous last resort for process 'exit' and signal handlers. */
export function killAllChildren(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export function startServer(p: {
  name: string;
  command: string;
  args: readonly string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
}): Promise<ServerProcess> {
  const child = spawn(p.command, p.args, { cwd: p.cwd, env: p.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);

  const tail: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    tail.push(line);
    if (tail.length > STDERR_TAIL_LINES) tail.shift();
  });
  const stderrTail = () => tail.join('\n');

  const exited = new Promise<StopResult>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal, clean: code === 0 });
    });
  });

  const stop = async (graceMs = 10_000): Promise<StopResult> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const first = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (first !== 'timeout') return first;
    child.kill('SIGKILL');
    const result = await exited;
    return { ...result, clean: false };
  };

  return new Promise<ServerProcess>((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop(2_000).then(() => {
        const err = stderrTail();
        reject(new Error(`${p.name}: ${why}${err ? `\n--- stderr (last lines) ---\n${err}` : ''}`));
      });
    };
    const timer = setTimeout(() => fail(`no ready line within ${p.readyTimeoutMs ?? 15_000} ms`), p.readyTimeoutMs ?? 15_000);

    child.once('error', (e) => fail(`could not start: ${e.message}`));
    child.once('exit', (code, signal) => fail(`exited before it was ready (code ${code}, signal ${signal})`));

    // Keep reading stdout for the child's whole life, so a chatty child never blocks on a full pipe.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (settled) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return; // not the ready line
      }
      const r = parsed as Partial<ReadyLine> | null;
      if (r === null || typeof r !== 'object' || r.event !== 'ready' || (typeof r.rest !== 'string' && typeof r.grpc !== 'string')) return;
      settled = true;
      clearTimeout(timer);
      resolve({ name: p.name, pid: child.pid!, ready: r as ReadyLine, stderrTail, stop });
    });
  });
}
