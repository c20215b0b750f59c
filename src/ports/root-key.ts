import type { SecretBytes } from '../crypto/secret-bytes.js';

/**
 * Wraps and unwraps key-version material. Wrapped blobs start with the root key's own id so a
 * deployment can tell which root key (or root-key version) made them. Unwrap failures are
 * KmsError INTERNAL (the store or the root key is wrong, never the caller).
 */
export interface RootKeyProvider {
  /** Identifies the root key without revealing it, e.g. `file:1a2b3c4d5e6f7a8b`. */
  readonly id: string;
  wrap(material: SecretBytes, aad: Buffer): Promise<Buffer>;
  unwrap(wrapped: Buffer, aad: Buffer): Promise<SecretBytes>;
}
