import { createHmac, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { Code, KmsError } from '../../errors/kms-error.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { unwrapV1, wrapV1 } from '../../crypto/wrapped-material.js';
import type { Random } from '../../ports/random.js';
import type { RootKeyProvider } from '../../ports/root-key.js';

// A 256-bit root key held in process memory, read from a file (`file:PATH`) or an environment
// variable (`env:VAR`, base64). The same bytes give the same id whichever way they arrive, so a
// deployment can move its key from a file to the environment.

const ROOT_KEY_LENGTH = 32;

export class RootKeyError extends Error {
  override name = 'RootKeyError';
}

export function softwareRootKey(key: SecretBytes, random: Random): RootKeyProvider {
  if (key.length !== ROOT_KEY_LENGTH) throw new RootKeyError(`root key must be ${ROOT_KEY_LENGTH} bytes, got ${key.length}`);
  // A key check value: identifies the key without revealing anything usable about it.
  const id = `sw:${createHmac('sha256', key.exposeSecret()).update('kmsd root key id').digest('hex').slice(0, 16)}`;
  return {
    id,
    async wrap(material, aad) {
      return wrapV1({ rootKey: key, rootKeyId: id, material, aad, random });
    },
    async unwrap(wrapped, aad) {
      const material = unwrapV1({ rootKey: key, rootKeyId: id, wrapped, aad });
      if (material === undefined) throw new KmsError(Code.Internal, 'stored key material does not unwrap with the configured root key');
      return material;
    },
  };
}

/**
 * Reads `path`, or — when `mayCreate` (a data directory that holds nothing yet) — creates it with 32
 * random bytes and mode 0600. A missing file for existing data is an error, never a new key.
 */
export function readOrCreateRootKeyFile(path: string, mayCreate = true): { key: SecretBytes; created: boolean } {
  if (!existsSync(path)) {
    if (!mayCreate) throw new RootKeyError(`root key file ${path} does not exist, but the store already holds keys wrapped by a root key`);
    const bytes = randomBytes(ROOT_KEY_LENGTH);
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const key = new SecretBytes(bytes);
    bytes.fill(0);
    return { key, created: true };
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new RootKeyError(`root key file ${path} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
  }
  const bytes = readFileSync(path);
  if (bytes.length !== ROOT_KEY_LENGTH) {
    throw new RootKeyError(`root key file ${path} must hold exactly ${ROOT_KEY_LENGTH} bytes, it holds ${bytes.length}`);
  }
  const key = new SecretBytes(bytes);
  bytes.fill(0);
  return { key, created: false };
}

export function readRootKeyFromEnv(variable: string, env: NodeJS.ProcessEnv): SecretBytes {
  const text = env[variable];
  if (text === undefined || text === '') throw new RootKeyError(`environment variable ${variable} (the root key) is not set`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text.trim())) throw new RootKeyError(`environment variable ${variable} is not base64`);
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length !== ROOT_KEY_LENGTH) {
    throw new RootKeyError(`environment variable ${variable} must hold ${ROOT_KEY_LENGTH} base64-encoded bytes, it holds ${bytes.length}`);
  }
  const key = new SecretBytes(bytes);
  bytes.fill(0);
  return key;
}
