import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type ServerProcess, type StopResult } from './child.js';

// The servers a scenario can load. A target is started once, shared by every scenario that names
// it, and stopped at the end of the run. Later targets (kmsd on PostgreSQL, with an HSM, the gRPC
// listener) are more entries in TARGETS.

export interface RunningTarget {
  readonly name: string;
  /** http://host:port of the REST listener. */
  readonly origin: string;
  /** Headers every request to this target carries (authentication). */
  readonly headers: Readonly<Record<string, string>>;
  /** The key the crypto scenarios use. */
  readonly keyId: string;
  readonly process: ServerProcess;
  stop(): Promise<StopResult>;
}

export interface TargetContext {
  /** The repository root. */
  readonly root: string;
  /** Extra node flags for a target's process, e.g. --cpu-prof (BENCH_NODE_ARGS_<TARGET>). */
  nodeArgs(target: string): readonly string[];
}

export interface TargetDef {
  readonly name: string;
  readonly description: string;
  start(ctx: TargetContext): Promise<RunningTarget>;
}

const BASELINE_KEY_ID = 'abjbench0000baseline'; // 20 characters, like a kmsd key id

const baseline: TargetDef = {
  name: 'baseline',
  description: 'bare node:http + sealV1 (bench/baseline-server.ts)',
  async start(ctx) {
    const proc = await startServer({
      name: 'baseline',
      command: process.execPath,
      args: [...ctx.nodeArgs('baseline'), '--import', 'tsx', join(ctx.root, 'bench', 'baseline-server.ts'), '--addr', '127.0.0.1:0'],
      cwd: ctx.root,
    });
    return {
      name: 'baseline',
      origin: `http://${proc.ready.rest}`,
      // Ignored by the baseline; sent so both targets receive requests of the same shape and size class.
      headers: { authorization: 'Bearer baseline-does-not-check-this-token' },
      keyId: BASELINE_KEY_ID,
      process: proc,
      stop: () => proc.stop(),
    };
  },
};

const kmsdSqlite: TargetDef = {
  name: 'kmsd',
  description: 'kmsd serve, SQLite store, --auth iam (dist/cli/kmsd.js)',
  async start(ctx) {
    const entry = join(ctx.root, 'dist', 'cli', 'kmsd.js');
    if (!existsSync(entry)) throw new Error(`kmsd: ${entry} is missing; run "npm run build" (npm run bench does)`);
    const dataDir = await mkdtemp(join(tmpdir(), 'kmsd-bench-'));
    let proc: ServerProcess | undefined;
    try {
      proc = await startServer({
        name: 'kmsd',
        command: process.execPath,
        args: [...ctx.nodeArgs('kmsd'), entry, 'serve', '--data-dir', dataDir, '--rest-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', '--auth', 'iam', '--log-level', 'warn'],
        cwd: ctx.root,
      });
      const origin = `http://${proc.ready.rest}`;
      const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
      const headers = { authorization: `Bearer ${token}` };
      const keyId = await createKey(origin, headers);
      const running = proc;
      return {
        name: 'kmsd',
        origin,
        headers,
        keyId,
        process: running,
        async stop() {
          try {
            return await running.stop();
          } finally {
            await rm(dataDir, { recursive: true, force: true });
          }
        },
      };
    } catch (e) {
      await proc?.stop();
      await rm(dataDir, { recursive: true, force: true });
      throw e;
    }
  },
};

async function createKey(origin: string, headers: Record<string, string>): Promise<string> {
  const res = await fetch(`${origin}/kms/v1/keys`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ folderId: 'bench', defaultAlgorithm: 'AES_256' }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`kmsd: creating the bench key answered ${res.status}: ${text.slice(0, 500)}`);
  const op = JSON.parse(text) as { done?: boolean; metadata?: { keyId?: unknown } };
  const keyId = op.metadata?.keyId;
  if (typeof keyId !== 'string' || op.done !== true) throw new Error(`kmsd: unexpected CreateSymmetricKey answer: ${text.slice(0, 500)}`);
  return keyId;
}

export const TARGETS: readonly TargetDef[] = [baseline, kmsdSqlite];
