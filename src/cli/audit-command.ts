import { Option, type Command } from 'commander';
import { collect } from './root-key-command.js';
import { ENV_VARS } from '../config/config.js';
import { offlineConfig } from './offline-config.js';
import { auditMacKey, createLogger, openStorage, StartupError } from '../main.js';
import { verifyExportFile, verifyStoredAudit, type VerifyReport } from '../services/audit/verify.js';

// `kmsd audit verify`: offline check of the audit chain. It opens the data directory with the same
// storage flags as `serve` (the chain key is kept wrapped by the root key) and reads only.

function report(r: VerifyReport, what: string): never {
  if (r.problems.length === 0) {
    process.stdout.write(`${what}: OK, ${r.records} records, chain intact up to seq ${r.lastSeq}\n`);
    process.exit(0);
  }
  process.stdout.write(`${what}: ${r.problems.length} problem(s) in ${r.records} records\n`);
  for (const p of r.problems) process.stdout.write(`  - ${p}\n`);
  process.exit(1);
}

export function addAuditCommands(program: Command): void {
  const audit = program.command('audit').description('the tamper-evident audit log');
  audit
    .command('verify')
    .description('check the hash chain of the audit log (exit 1 and say where when it was altered)')
    .option('--data-dir <dir>', `data directory [${ENV_VARS.dataDir}] (default ./kmsd-data)`)
    .option('--store <kind>', `sqlite or postgres [${ENV_VARS.store}]`)
    .option('--postgres-url <url>', `[${ENV_VARS.postgresUrl}]`)
    .option('--root-key <spec>', `file:PATH, env:VARIABLE or pkcs11:... [${ENV_VARS.rootKey}] (default file:<data-dir>/root.key)`)
    .addOption(new Option('--previous-root-key <spec>', `a former root key, during a root-key rotation; repeatable [${ENV_VARS.previousRootKey}]`).argParser(collect))
    .option('--in <file>', 'verify an exported JSON-lines file (GET /kmsd/v1/audit:export) instead of the store')
    .action(async (flags: { dataDir?: string; store?: string; postgresUrl?: string; rootKey?: string; previousRootKey?: string[]; in?: string }) => {
      const config = offlineConfig({ ...(flags.dataDir ? { dataDir: flags.dataDir } : {}), ...(flags.store ? { store: flags.store } : {}), ...(flags.postgresUrl ? { postgresUrl: flags.postgresUrl } : {}), ...(flags.rootKey ? { rootKey: flags.rootKey } : {}), ...(flags.previousRootKey ? { previousRootKey: flags.previousRootKey } : {}), logLevel: 'error' });
      const logger = createLogger(config);
      try {
        const { store, rootKey } = await openStorage(config, logger);
        try {
          const key = await auditMacKey(store, rootKey);
          const result = flags.in !== undefined ? await verifyExportFile(flags.in, key) : await verifyStoredAudit(store, key);
          key.wipe();
          await store.close();
          report(result, flags.in ?? 'audit log');
        } finally {
          await store.close().catch(() => undefined);
        }
      } catch (e) {
        if (e instanceof StartupError) {
          process.stderr.write(`kmsd: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
    });
}
