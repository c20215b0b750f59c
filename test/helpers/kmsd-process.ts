// A real `kmsd serve` child process for integration tests: the built server from dist/, started
// with this Node binary on an ephemeral port in a fresh temporary data directory, driven over
// plain fetch. One instance per describe block; always stop()/dispose() it in `after`.
//
//   const kmsd = await KmsdProcess.start({ auth: 'iam' });
//   const res = await kmsd.call<Operation>('POST', '/kms/v1/keys', { folderId: 'b1g', defaultAlgorithm: 'AES_256' });
//   await kmsd.dispose();
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI. Integration tests run what a user runs: build first (`npx tsc -p tsconfig.build.json`). */
export const KMSD_BIN = fileURLToPath(new URL('../../dist/cli/kmsd.js', import.meta.url));

const DEFAULT_READY_TIMEOUT_MS = 20_000;
const DEFAULT_EXIT_TIMEOUT_MS = 15_000;
/** Only the tail of a child's output is kept for error messages and log assertions. */
const MAX_CAPTURE = 4 * 1024 * 1024;

export interface KmsdOptions {
  /** `--auth`; default `iam`. */
  readonly auth?: 'iam' | 'none';
  /** `--test-clock` (true) or `--test-clock=force`. */
  readonly testClock?: boolean | 'force';
  /** `--seed FILE`. */
  readonly seed?: string;
  /** `--root-key SPEC`. */
  readonly rootKey?: string;
  /** Reuse this data directory instead of creating a temporary one (it is then not removed by dispose()). */
  readonly dataDir?: string;
  /** Extra environment for the child. KMSD_* variables of the test runner are never inherited. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * `--workers N`; default 1. The suites start a few hundred servers, several at once, on machines
   * with two cores: one process each keeps that affordable, and workers.test.ts (and the one
   * multi-node case) tests the workers.
   */
  readonly workers?: number;
  /** Extra command-line arguments after `serve`. */
  readonly args?: readonly string[];
  readonly readyTimeoutMs?: number;
}

export interface ReadyLine {
  readonly event: 'ready';
  readonly rest: string;
  readonly auth: 'iam' | 'none';
  readonly [k: string]: unknown;
}

export interface KmsdResponse<T = unknown> {
  readonly status: number;
  /** The parsed JSON body (undefined for an empty body). */
  readonly json: T;
  readonly headers: Headers;
  readonly text: string;
}

/** What the API helpers (api.ts, identity.ts) call through: a KmsdProcess, or one pinned connection to it (workers.ts). */
export type Caller = Pick<KmsdProcess, 'call'>;

export interface ExitResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** The child's environment: the runner's, minus any KMSD_* setting that would change the server under test. */
function childEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KMSD_')) env[k] = v;
  return { ...env, ...extra };
}

function serveArgs(dataDir: string, o: KmsdOptions): string[] {
  const args = [KMSD_BIN, 'serve', '--data-dir', dataDir, '--rest-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', '--auth', o.auth ?? 'iam'];
  if (o.testClock === true) args.push('--test-clock');
  else if (o.testClock === 'force') args.push('--test-clock=force');
  if (o.seed !== undefined) args.push('--seed', o.seed);
  if (o.rootKey !== undefined) args.push('--root-key', o.rootKey);
  args.push('--workers', String(o.workers ?? 1));
  args.push(...(o.args ?? []));
  return args;
}

function assertBuilt(): void {
  if (!existsSync(KMSD_BIN)) throw new Error(`${KMSD_BIN} is missing: build first with \`npx tsc -p tsconfig.build.json\``);
}

class Capture {
  #text = '';
  append(chunk: Buffer | string): void {
    this.#text += chunk.toString();
    if (this.#text.length > MAX_CAPTURE) this.#text = this.#text.slice(-MAX_CAPTURE);
  }
  get text(): string {
    return this.#text;
  }
}

/** Children still running; killed if the test process exits without stopping them (a crashed suite). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Spawns kmsd and resolves with the ready line, or rejects (with stderr) when it exits or times out first. */
function spawnKmsd(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): { child: ChildProcess; stdout: Capture; stderr: Capture; exited: Promise<ExitResult>; ready: Promise<ReadyLine> } {
  assertBuilt();
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const stdout = new Capture();
  const stderr = new Capture();
  child.stderr!.on('data', (c: Buffer) => stderr.append(c));
  const exited = new Promise<ExitResult>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  const ready = new Promise<ReadyLine>((resolve, reject) => {
    let pending = '';
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      settle(() => {
        child.kill('SIGKILL');
        reject(new Error(`kmsd did not print its ready line within ${timeoutMs} ms\n--- stderr ---\n${stderr.text}\n--- stdout ---\n${stdout.text}`));
      });
    }, timeoutMs);
    child.stdout!.on('data', (c: Buffer) => {
      stdout.append(c);
      pending += c.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        try {
          const parsed = JSON.parse(line) as { event?: unknown };
          if (parsed.event === 'ready') settle(() => resolve(parsed as ReadyLine));
        } catch {
          // not our line
        }
      }
    });
    void exited.then(({ code, signal }) =>
      settle(() => reject(new Error(`kmsd exited (code ${code}, signal ${signal}) before it was ready\n--- stderr ---\n${stderr.text}`))),
    );
    child.once('error', (e) => settle(() => reject(e)));
  });
  return { child, stdout, stderr, exited, ready };
}

export class KmsdProcess {
  readonly dataDir: string;
  #options: KmsdOptions;
  readonly #ownsDir: string | undefined;
  #child!: ChildProcess;
  #exited!: Promise<ExitResult>;
  #stderr!: Capture;
  #stdout!: Capture;
  #ready!: ReadyLine;
  #running = false;
  #token: string | undefined;

  private constructor(dataDir: string, ownsDir: string | undefined, options: KmsdOptions) {
    this.dataDir = dataDir;
    this.#ownsDir = ownsDir;
    this.#options = options;
  }

  get options(): KmsdOptions {
    return this.#options;
  }

  /** Starts kmsd in a fresh temporary data directory (or options.dataDir) and waits for its ready line. */
  static async start(options: KmsdOptions = {}): Promise<KmsdProcess> {
    let ownsDir: string | undefined;
    let dataDir = options.dataDir;
    if (dataDir === undefined) {
      ownsDir = mkdtempSync(join(tmpdir(), 'kmsd-it-'));
      dataDir = join(ownsDir, 'data');
    }
    const kmsd = new KmsdProcess(dataDir, ownsDir, options);
    try {
      await kmsd.#spawn();
    } catch (e) {
      if (ownsDir !== undefined) rmSync(ownsDir, { recursive: true, force: true });
      throw e;
    }
    return kmsd;
  }

  async #spawn(): Promise<void> {
    const s = spawnKmsd(serveArgs(this.dataDir, this.options), childEnv(this.options.env), this.options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
    this.#child = s.child;
    this.#exited = s.exited;
    this.#stderr = s.stderr;
    this.#stdout = s.stdout;
    this.#running = true;
    void s.exited.then(() => {
      this.#running = false;
    });
    this.#ready = await s.ready;
    this.#token = (this.#options.auth ?? 'iam') === 'iam' ? readFileSync(join(this.dataDir, 'admin.token'), 'utf8').trim() : undefined;
  }

  get ready(): ReadyLine {
    return this.#ready;
  }

  get baseUrl(): string {
    return `http://${this.#ready.rest}`;
  }

  /** The administrator token from <data-dir>/admin.token (--auth iam); undefined with --auth none. */
  get token(): string | undefined {
    return this.#token;
  }

  get pid(): number {
    return this.#child.pid!;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Everything the current process has written to stderr (JSON log lines) so far. */
  get stderr(): string {
    return this.#stderr.text;
  }

  get stdout(): string {
    return this.#stdout.text;
  }

  /**
   * One REST call. Sends the admin token unless `headers` sets `authorization` (an empty string
   * there sends no Authorization header at all). A body is sent as JSON.
   */
  async call<T = unknown>(method: string, path: string, body?: unknown, headers: Readonly<Record<string, string>> = {}): Promise<KmsdResponse<T>> {
    const h: Record<string, string> = {};
    const token = this.token;
    if (token !== undefined) h.authorization = `Bearer ${token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
    if (h.authorization === '') delete h.authorization;
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: h,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let json: unknown;
    if (text !== '') {
      try {
        json = JSON.parse(text);
      } catch {
        throw new Error(`${method} ${path}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 500)}`);
      }
    }
    return { status: res.status, json: json as T, headers: res.headers, text };
  }

  /** SIGTERM, waits for the exit and asserts a clean exit (code 0). */
  async stop(timeoutMs = DEFAULT_EXIT_TIMEOUT_MS): Promise<void> {
    if (!this.#running) return;
    this.#child.kill('SIGTERM');
    const result = await this.#waitExit(timeoutMs);
    assert.deepEqual(result, { code: 0, signal: null }, `kmsd did not exit cleanly on SIGTERM\n--- stderr ---\n${this.stderr}`);
  }

  /** SIGKILL, waits for the process to be gone. */
  async kill(): Promise<ExitResult> {
    if (!this.#running) return this.#exited;
    this.#child.kill('SIGKILL');
    return this.#waitExit(DEFAULT_EXIT_TIMEOUT_MS);
  }

  /** Starts a new process on the same data directory (stopping the current one with SIGTERM if it runs). */
  async restart(overrides: Omit<KmsdOptions, 'dataDir'> = {}): Promise<void> {
    await this.stop();
    this.#options = { ...this.#options, ...overrides };
    await this.#spawn();
  }

  /** For `after`: stops the server (asserting a clean exit if it still runs) and removes the temporary directory. */
  async dispose(): Promise<void> {
    try {
      await this.stop();
    } finally {
      if (this.#running) await this.kill();
      if (this.#ownsDir !== undefined) rmSync(this.#ownsDir, { recursive: true, force: true });
    }
  }

  async #waitExit(timeoutMs: number): Promise<ExitResult> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#child.kill('SIGKILL');
        reject(new Error(`kmsd did not exit within ${timeoutMs} ms\n--- stderr ---\n${this.stderr}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.#exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface FailedStart extends ExitResult {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `kmsd serve` expecting it to refuse to start: resolves with its exit status and output.
 * Fails the test if kmsd becomes ready instead (the process is killed first).
 */
export async function expectStartFailure(options: KmsdOptions & { dataDir: string }, timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<FailedStart> {
  const s = spawnKmsd(serveArgs(options.dataDir, options), childEnv(options.env), timeoutMs);
  try {
    const ready = await s.ready;
    s.child.kill('SIGKILL');
    await s.exited;
    assert.fail(`kmsd started (${JSON.stringify(ready)}) but was expected to refuse\n--- stderr ---\n${s.stderr.text}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
  }
  const exit = await s.exited;
  return { ...exit, stdout: s.stdout.text, stderr: s.stderr.text };
}

/** A fresh temporary directory; remove it with rmSync in `after`. */
export function tempDir(prefix = 'kmsd-it-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
