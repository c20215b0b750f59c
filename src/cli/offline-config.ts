import { existsSync } from 'node:fs';
import { ConfigError, loadServeConfig, type ServeConfig } from '../config/config.js';

/**
 * The configuration of a command that works on a data directory offline (`audit verify`,
 * `root-key rotate`): a configuration error, or a SQLite database that does not exist (opening it
 * would create an empty one), ends the process with exit code 2 and one line on stderr.
 */
export function offlineConfig(flags: Parameters<typeof loadServeConfig>[0]): ServeConfig {
  const config = configOrExit(() => loadServeConfig(flags, process.env));
  if (config.store.kind === 'sqlite' && !existsSync(config.store.path)) {
    process.stderr.write(`kmsd: no database at ${config.store.path}; point --data-dir at a kmsd data directory\n`);
    process.exit(2);
  }
  return config;
}

/** Every command's configuration: a ConfigError ends the process with exit code 2 and its one line on stderr. */
export function configOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`kmsd: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
