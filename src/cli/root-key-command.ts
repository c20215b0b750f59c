import { Option, type Command } from 'commander';
import { ENV_VARS } from '../config/config.js';
import { offlineConfig } from './offline-config.js';
import { AUDIT_MAC_KEY, AUDIT_MAC_KEY_AAD, createLogger, openStorage, ROOT_KEY_CHECK, ROOT_KEY_CHECK_AAD, StartupError } from '../main.js';
import { RotationError, rotateRootKey } from '../services/root-key/root-key-rotation.js';

// `kmsd root-key rotate`: rewraps all stored material with the current root key (--root-key),
// unwrapping it with whichever configured key made it (--previous-root-key). It opens the data
// directory with the same storage flags as `serve` and may run while servers are up. It prints one
// JSON line with what it did and exits 0 once nothing is left wrapped by a previous key.

/** Collects a repeatable option's values. */
export const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export function addRootKeyCommands(program: Command): void {
  const rootKey = program.command('root-key').description('the root key that wraps all key material');
  rootKey
    .command('rotate')
    .description('rewrap all stored key material with --root-key (the new root-key version), online and resumable')
    .option('--data-dir <dir>', `data directory [${ENV_VARS.dataDir}] (default ./kmsd-data)`)
    .option('--store <kind>', `sqlite [${ENV_VARS.store}]`)
    .option('--postgres-url <url>', `[${ENV_VARS.postgresUrl}]`)
    .option('--root-key <spec>', `the new current root key: file:PATH, env:VARIABLE or pkcs11:... [${ENV_VARS.rootKey}]`)
    .addOption(new Option('--previous-root-key <spec>', `a root key that may still wrap stored material; repeatable [${ENV_VARS.previousRootKey}]`).argParser(collect))
    .option('--log-level <level>', `[${ENV_VARS.logLevel}] (default warn)`)
    .action(async (flags: { dataDir?: string; store?: string; postgresUrl?: string; rootKey?: string; previousRootKey?: string[]; logLevel?: string }) => {
      const config = offlineConfig({ logLevel: 'warn', ...flags });
      const logger = createLogger(config);
      // Tests inject a crash here: the process dies as abruptly as a power cut after N rewraps.
      const crashAfter = Number(process.env.KMSD_TEST_CRASH_AFTER_REWRAPS ?? NaN);
      let opened;
      try {
        opened = await openStorage(config, logger);
      } catch (e) {
        if (e instanceof StartupError) {
          process.stderr.write(`kmsd: ${e.message}\n`);
          process.exit(1);
        }
        throw e;
      }
      const { store, rootKey, closeRootKeys } = opened;
      try {
        const report = await rotateRootKey({
          store,
          rootKey,
          meta: [
            { name: AUDIT_MAC_KEY, aad: AUDIT_MAC_KEY_AAD },
            { name: ROOT_KEY_CHECK, aad: ROOT_KEY_CHECK_AAD },
          ],
          onRewrap: (n) => {
            if (n === crashAfter) process.kill(process.pid, 'SIGKILL');
            if (n % 1000 === 0) logger.warn({ rewrapped: n }, 'root-key rotation in progress');
          },
        });
        process.stdout.write(`${JSON.stringify({ event: 'root-key-rotated', ...report })}\n`);
      } catch (e) {
        if (e instanceof RotationError) {
          process.stderr.write(`kmsd: root-key rotation stopped: ${e.message}\n`);
          process.exitCode = 1;
        } else {
          throw e;
        }
      } finally {
        await store.close();
        closeRootKeys();
        logger.flush();
      }
    });
}
