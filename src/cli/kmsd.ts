#!/usr/bin/env node
import { Command, Option } from 'commander';
import { ENV_VARS, loadServeConfig, loadStoreConfig, type StoreConfig } from '../config/config.js';
import { BackupFormatError } from '../backup/backup-file.js';
import { isKmsError } from '../errors/kms-error.js';
import { createLogger, runBackup, runRestore, startKmsd, StartupError } from '../main.js';
import { SeedError } from '../seed/seed-file.js';
import { addAdminCommands } from './admin-commands.js';
import { addAuditCommands } from './audit-command.js';
import { configOrExit } from './offline-config.js';
import { addRootKeyCommands, collect } from './root-key-command.js';

// The `kmsd` command. `serve` starts the server; later commands are thin clients of the same API.

const program = new Command()
  .name('kmsd')
  .description('Self-hosted Key Management Service, wire-compatible with the Yandex Cloud KMS API')
  .showHelpAfterError();

program
  .command('serve')
  .description('start the server')
  .addOption(new Option('--data-dir <dir>', `database, root key and admin token [${ENV_VARS.dataDir}] (default ./kmsd-data)`))
  .addOption(new Option('--rest-addr <host:port>', `REST listener, port 0 picks a free port [${ENV_VARS.restAddr}] (default 127.0.0.1:8080)`))
  .addOption(new Option('--grpc-addr <host:port>', `gRPC listener, always TLS; port 0 picks a free port [${ENV_VARS.grpcAddr}] (default 127.0.0.1:8443)`))
  .addOption(new Option('--tls-cert <file>', `PEM certificate (chain) for gRPC and HTTPS [${ENV_VARS.tlsCert}] (default: generated in the data dir)`))
  .addOption(new Option('--tls-key <file>', `PEM private key of --tls-cert [${ENV_VARS.tlsKey}]`))
  .addOption(new Option('--rest-tls', `serve REST over HTTPS with the same certificate [${ENV_VARS.restTls}]`))
  .addOption(new Option('--store <kind>', `sqlite (in the data dir) or postgres (several nodes may share it) [${ENV_VARS.store}] (default sqlite)`))
  .addOption(new Option('--postgres-url <url>', `postgres://user@host:port/database, with --store postgres [${ENV_VARS.postgresUrl}]`))
  .addOption(new Option('--postgres-pool-size <n>', `connections in the pool, at least 2; each node opens one more to LISTEN [${ENV_VARS.postgresPoolSize}] (default 10)`))
  .addOption(new Option('--root-key <spec>', `file:PATH, env:VARIABLE or pkcs11:module=…;token=…;pin-file=…;key-label=… [${ENV_VARS.rootKey}] (default file:<data-dir>/root.key)`))
  .addOption(new Option('--previous-root-key <spec>', `a former root key still needed until \`kmsd root-key rotate\` has run; repeatable [${ENV_VARS.previousRootKey}]`).argParser(collect))
  .addOption(new Option('--auth <mode>', `iam: tokens required; none: DEV MODE, everyone is admin [${ENV_VARS.auth}] (default iam)`))
  .addOption(new Option('--seed <file>', `YAML or JSON keys to create at start if missing [${ENV_VARS.seed}]`))
  .addOption(new Option('--test-clock [mode]', `enable POST /kmsd/v1/testing/clock:advance; "force" allows it with --auth iam [${ENV_VARS.testClock}]`))
  .addOption(new Option('--cache-max-keys <n>', `keys cached for crypto calls [${ENV_VARS.cacheMaxKeys}] (default 10000)`))
  .addOption(new Option('--cache-ttl-ms <ms>', `cache entry lifetime [${ENV_VARS.cacheTtlMs}] (default 60000)`))
  .addOption(new Option('--scheduler-interval-ms <ms>', `how often due rotations and destructions run [${ENV_VARS.schedulerIntervalMs}] (default 5000)`))
  .addOption(new Option('--log-level <level>', `fatal|error|warn|info|debug|trace|silent [${ENV_VARS.logLevel}] (default info)`))
  .addOption(new Option('--metrics <on|off>', `GET /metrics (Prometheus, unauthenticated) on the REST listener [${ENV_VARS.metrics}] (default on)`))
  .action(async (flags: Record<string, string | boolean>) => {
    const config = configOrExit(() => loadServeConfig(flags, process.env));
    const logger = createLogger(config);
    let server;
    try {
      server = await startKmsd(config, logger);
    } catch (e) {
      if (e instanceof StartupError || e instanceof SeedError) {
        logger.fatal(e.message);
        process.stderr.write(`kmsd: ${e.message}\n`);
        logger.flush();
        process.exit(1);
      }
      throw e;
    }
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'draining in-flight requests and stopping');
      server.close().then(
        () => {
          logger.flush();
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'unclean shutdown');
          logger.flush();
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    // Only now announce readiness: a supervisor may send SIGTERM the moment it reads this line, and
    // it must find the handler above installed (else the default action kills kmsd undrained).
    const ready = {
      event: 'ready',
      rest: server.restAddress,
      grpc: server.grpcAddress,
      auth: config.auth,
      caFile: server.caFile ?? null,
      restTls: config.rest.tls,
      dataDir: config.dataDir,
    };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    logger.info(ready, 'kmsd is ready');
  });

/** The options that say where the store is, shared by serve, backup and restore. */
function storeOptions(command: Command): Command {
  return command
    .addOption(new Option('--data-dir <dir>', `where the SQLite database is [${ENV_VARS.dataDir}] (default ./kmsd-data)`))
    .addOption(new Option('--store <kind>', `sqlite or postgres [${ENV_VARS.store}] (default sqlite)`))
    .addOption(new Option('--postgres-url <url>', `postgres://user@host:port/database, with --store postgres [${ENV_VARS.postgresUrl}]`))
    .addOption(new Option('--postgres-pool-size <n>', `connections in the pool [${ENV_VARS.postgresPoolSize}] (default 10)`));
}

/** Runs a store command: config errors exit 2, refusals and failures exit 1 with one line on stderr. */
async function storeCommand(flags: Record<string, string | boolean>, run: (config: { dataDir: string; store: StoreConfig }) => Promise<void>): Promise<void> {
  const config = configOrExit(() => loadStoreConfig(flags, process.env));
  try {
    await run(config);
  } catch (e) {
    if (e instanceof StartupError || e instanceof BackupFormatError || isKmsError(e)) {
      process.stderr.write(`kmsd: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
}

storeOptions(
  program
    .command('backup')
    .description('write a consistent snapshot of the store (key material stays wrapped by the root key) to a file')
    .requiredOption('--out <file>', 'the backup file to create (never overwritten), or - for standard output'),
).action(async (flags: Record<string, string | boolean>) => {
  const out = String(flags.out);
  await storeCommand(flags, async (config) => {
    const { counts } = await runBackup(config, out);
    const summary = `${JSON.stringify({ event: 'backup', file: out === '-' ? null : out, counts })}\n`;
    (out === '-' ? process.stderr : process.stdout).write(summary);
  });
});

storeOptions(
  program
    .command('restore')
    .description('restore a backup into an empty store (SQLite or PostgreSQL, whichever wrote it)')
    .requiredOption('--in <file>', 'the backup file, or - for standard input'),
).action(async (flags: Record<string, string | boolean>) => {
  await storeCommand(flags, async (config) => {
    const { counts, header } = await runRestore(config, String(flags.in));
    process.stdout.write(`${JSON.stringify({ event: 'restore', backupCreatedAt: header.createdAt, backupSource: header.source, counts })}\n`);
  });
});

addAuditCommands(program);
addRootKeyCommands(program);
addAdminCommands(program);

await program.parseAsync(process.argv);
