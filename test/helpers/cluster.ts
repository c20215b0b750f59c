// Several `kmsd serve` nodes over one PostgreSQL schema, as an operator runs them behind a load
// balancer: each node has its own data directory (TLS certificate, admin token) and all share the
// database and the root key (given as an environment variable, as one would from a secret store).
import { randomBytes } from 'node:crypto';
import { KmsdProcess, type KmsdOptions } from './kmsd-process.js';

export const ROOT_KEY_VARIABLE = 'KMSD_TEST_ROOT_KEY';

/** A fresh random root key in the form `--root-key env:VAR` reads (base64 of 32 bytes). */
export const newRootKey = (): string => randomBytes(32).toString('base64');

export interface NodeOptions extends Omit<KmsdOptions, 'rootKey' | 'env' | 'dataDir'> {
  /** Base64 root key shared by the nodes. */
  readonly rootKey: string;
  /** --postgres-pool-size; small by default, the tests' nodes share one server with other tests. */
  readonly poolSize?: number;
  readonly env?: Readonly<Record<string, string>>;
}

/** The `serve` arguments of a node over `postgresUrl`. */
export function postgresArgs(postgresUrl: string, poolSize = 3): string[] {
  return ['--store', 'postgres', '--postgres-url', postgresUrl, '--postgres-pool-size', String(poolSize)];
}

/** Starts one node over `postgresUrl`. */
export function startNode(postgresUrl: string, o: NodeOptions): Promise<KmsdProcess> {
  return KmsdProcess.start({
    ...o,
    rootKey: `env:${ROOT_KEY_VARIABLE}`,
    env: { ...o.env, [ROOT_KEY_VARIABLE]: o.rootKey },
    args: [...postgresArgs(postgresUrl, o.poolSize), ...(o.args ?? [])],
  });
}

/** Starts `count` nodes at the same time; if any fails to start, the others are stopped. */
export async function startNodes(count: number, postgresUrl: string, o: NodeOptions): Promise<KmsdProcess[]> {
  const started = await Promise.allSettled(Array.from({ length: count }, () => startNode(postgresUrl, o)));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.flatMap((s) => (s.status === 'fulfilled' ? [s.value.dispose()] : [])));
    throw failed.reason;
  }
  return started.map((s) => (s as PromiseFulfilledResult<KmsdProcess>).value);
}

/** Stops every node (asserting clean exits of those still running) and removes their directories. */
export async function disposeAll(nodes: readonly (KmsdProcess | undefined)[]): Promise<void> {
  const results = await Promise.allSettled(nodes.map((n) => n?.dispose()));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}
