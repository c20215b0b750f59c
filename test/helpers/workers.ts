// Talking to one particular worker of `kmsd serve --workers N`. The workers share the listening
// sockets, so a client cannot choose a worker, but a connection stays with the worker that accepted
// it: a PinnedConnection is one keep-alive socket, asks /healthz which worker holds it, and sends
// every call over that same socket (it fails the test if the socket ever changes).
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import type { Caller, KmsdProcess, KmsdResponse } from './kmsd-process.js';
import { logLines } from './logs.js';

export class PinnedConnection implements Caller {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 });
  readonly #origin: string;
  readonly #token: string | undefined;
  #socket: Socket | undefined;
  #worker = 0;

  private constructor(kmsd: KmsdProcess) {
    this.#origin = kmsd.baseUrl;
    this.#token = kmsd.token;
  }

  /** A new connection, and the worker that accepted it. */
  static async open(kmsd: KmsdProcess): Promise<PinnedConnection> {
    const c = new PinnedConnection(kmsd);
    const health = await c.call<{ status: string; worker?: number }>('GET', '/healthz');
    assert.equal(health.status, 200);
    assert.ok(typeof health.json.worker === 'number', `/healthz names no worker: ${health.text}`);
    c.#worker = health.json.worker;
    return c;
  }

  get worker(): number {
    return this.#worker;
  }

  /** As KmsdProcess.call: the admin token unless `headers` sets authorization ('' sends none). */
  call<T = unknown>(method: string, path: string, body?: unknown, headers: Readonly<Record<string, string>> = {}): Promise<KmsdResponse<T>> {
    const h: Record<string, string> = {};
    if (this.#token !== undefined) h.authorization = `Bearer ${this.#token}`;
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    if (payload !== undefined) h['content-type'] = 'application/json';
    for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
    if (h.authorization === '') delete h.authorization;
    return new Promise((resolve, reject) => {
      const req = request(`${this.#origin}${path}`, { method, headers: h, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') out.set(k, v);
          resolve({ status: res.statusCode ?? 0, json: (text === '' ? undefined : JSON.parse(text)) as T, headers: out, text });
        });
      });
      req.on('socket', (socket: Socket) => {
        this.#socket ??= socket;
        if (socket !== this.#socket) reject(new Error(`the connection to worker ${this.#worker} was replaced by another one`));
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/**
 * Opens connections until every one of the `workers` workers holds one (the supervisor hands
 * connections out round robin, so a few suffice); the first of each worker is returned, in worker
 * order, and the others closed.
 */
export async function connectionPerWorker(kmsd: KmsdProcess, workers: number): Promise<PinnedConnection[]> {
  const byWorker = new Map<number, PinnedConnection>();
  for (let attempt = 0; attempt < 20 * workers && byWorker.size < workers; attempt++) {
    const c = await PinnedConnection.open(kmsd);
    if (byWorker.has(c.worker)) c.close();
    else byWorker.set(c.worker, c);
  }
  const found = [...byWorker.keys()].sort();
  assert.equal(byWorker.size, workers, `connections reached only workers ${found.join(', ')} of ${workers}`);
  return found.map((w) => byWorker.get(w)!);
}

/** Each slot's current worker process, from the supervisor's "worker listening" lines. */
export function workerPids(stderr: string): Map<number, number> {
  const pids = new Map<number, number>();
  for (const l of logLines(stderr)) if (l.msg === 'worker listening') pids.set(l.worker as number, l.pid as number);
  return pids;
}
