import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { loadServeConfig, type ServeConfig } from '../config/config.js';
import { Supervisor, WORKER_SLOT_VARIABLE, WorkerStartError } from '../cluster/supervisor.js';
import { reportStartFailure, WorkerLink } from '../cluster/worker-link.js';
import type { Addresses } from '../cluster/protocol.js';
import { createLogger, logWritten, prepareDataDir, startKmsd, StartupError, type RunningKmsd } from '../main.js';
import { SeedError } from '../seed/seed-file.js';
import { configOrExit } from './offline-config.js';

// `kmsd serve`: one process (--workers 1), or a supervisor that prepares the data directory and
// forks the workers that serve (src/cluster/). The same command line runs in every worker
// (node:cluster re-runs it), which node:cluster marks as one.

export async function serve(flags: Record<string, string | boolean>): Promise<void> {
  const config = configOrExit(() => loadServeConfig(flags, process.env));
  if (cluster.isWorker) return serveAsWorker(config);
  const logger = createLogger(config);
  if (config.workers > 1) return supervise(config, logger);
  let server: RunningKmsd;
  try {
    server = await startKmsd(config, logger);
  } catch (e) {
    return failedToStart(e, logger);
  }
  onSignals(logger, () => server.close().then(() => true));
  await ready(config, logger, { rest: server.restAddress, grpc: server.grpcAddress, ...(server.caFile === undefined ? {} : { caFile: server.caFile }) });
}

/** The supervisor of --workers N: prepares the data directory once while the workers load, then lets them start, and keeps them. */
async function supervise(config: ServeConfig, logger: Logger): Promise<void> {
  const supervisor = new Supervisor({ workers: config.workers, logger });
  onSignals(logger, () => supervisor.stop());
  let addresses: Addresses;
  try {
    addresses = await supervisor.start(() => prepareDataDir(config, logger));
  } catch (e) {
    await supervisor.stop();
    return failedToStart(e instanceof WorkerStartError ? new StartupError(e.message) : e, logger);
  }
  await ready(config, logger, addresses);
}

/** One worker of --workers N: serves until SIGTERM; a start that fails is reported to the supervisor. */
async function serveAsWorker(config: ServeConfig): Promise<void> {
  const slot = Number(process.env[WORKER_SLOT_VARIABLE]);
  const logger = createLogger(config, { worker: slot });
  let server: RunningKmsd | undefined;
  // Installed before the start: the supervisor may stop a worker that is still starting, which
  // then has nothing to drain. A second signal does not cut the drain short: Ctrl-C reaches the
  // whole process group, and the supervisor's SIGTERM follows.
  onSignals(
    logger,
    async () => {
      await server?.close();
      return true;
    },
    { again: 'ignore' },
  );
  try {
    const link = await WorkerLink.connect(slot);
    server = await startKmsd(config, logger, { worker: link });
    // The supervisor's ready line follows this: the worker's start lines are written by then.
    await logWritten(logger);
    link.listening({ rest: server.restAddress, grpc: server.grpcAddress, ...(server.caFile === undefined ? {} : { caFile: server.caFile }) });
  } catch (e) {
    const message = (e as Error).message;
    logger.fatal({ err: e }, message);
    logger.flush();
    await reportStartFailure(message);
    process.exit(1);
  }
}

function failedToStart(e: unknown, logger: Logger): never {
  if (!(e instanceof StartupError || e instanceof SeedError)) throw e;
  logger.fatal(e.message);
  process.stderr.write(`kmsd: ${e.message}\n`);
  logger.flush();
  process.exit(1);
}

/**
 * SIGTERM and SIGINT drain and stop (`stop` resolves true when that went cleanly), then exit 0,
 * else 1. A second signal kills at once (the default action), unless `again` is 'ignore'.
 */
function onSignals(logger: Logger, stop: () => Promise<boolean>, o: { readonly again: 'kill' | 'ignore' } = { again: 'kill' }): void {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining in-flight requests and stopping');
    stop().then(
      (clean) => {
        if (!clean) logger.error('a worker did not stop cleanly');
        logger.flush();
        process.exit(clean ? 0 : 1);
      },
      (err: unknown) => {
        logger.error({ err }, 'unclean shutdown');
        logger.flush();
        process.exit(1);
      },
    );
  };
  const on = o.again === 'ignore' ? process.on.bind(process) : process.once.bind(process);
  on('SIGTERM', () => shutdown('SIGTERM'));
  on('SIGINT', () => shutdown('SIGINT'));
}

/**
 * The ready line on stdout, once every listener serves and the start's log lines are written, so
 * that whoever waits for it (a CI job, a supervisor) reads them before it. Only after onSignals: a
 * supervisor may send SIGTERM the moment it reads this line, and it must find the handler
 * installed (else the default action kills kmsd undrained).
 */
async function ready(config: ServeConfig, logger: Logger, addresses: Addresses): Promise<void> {
  await logWritten(logger);
  const line = {
    event: 'ready',
    rest: addresses.rest,
    grpc: addresses.grpc,
    auth: config.auth,
    caFile: addresses.caFile ?? null,
    restTls: config.rest.tls,
    dataDir: config.dataDir,
    workers: config.workers,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  logger.info(line, 'kmsd is ready');
}
