import { wrappedRootKeyId } from '../../crypto/wrapped-material.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import type { RootKeyProvider } from '../../ports/root-key.js';

// The root keys a data directory may need at once: the current one, which wraps everything new,
// and previous ones whose blobs `kmsd root-key rotate` has not rewrapped yet. Every wrapped blob
// names the root key that made it (src/crypto/wrapped-material.ts), so unwrap goes straight to
// that key; a rotation in progress is invisible to the crypto path.

export interface RootKeyring extends RootKeyProvider {
  readonly current: RootKeyProvider;
  /** The current key first, then the previous ones. */
  readonly all: readonly RootKeyProvider[];
  /** The configured key that made `wrapped`, if any. */
  providerOf(wrapped: Buffer): RootKeyProvider | undefined;
}

export function rootKeyring(current: RootKeyProvider, previous: readonly RootKeyProvider[]): RootKeyring {
  const all = [current, ...previous.filter((p) => p.id !== current.id)];
  const byId = new Map(all.map((p) => [p.id, p]));
  const providerOf = (wrapped: Buffer): RootKeyProvider | undefined => {
    const id = wrappedRootKeyId(wrapped);
    return id === undefined ? undefined : byId.get(id);
  };
  return {
    id: current.id,
    current,
    all,
    providerOf,
    wrap: (material, aad) => current.wrap(material, aad),
    unwrap(wrapped, aad) {
      const provider = providerOf(wrapped);
      // Same message as a failed unwrap: which root keys exist is nobody's business but the operator's logs.
      if (!provider) return Promise.reject(new KmsError(Code.Internal, 'stored key material does not unwrap with the configured root key'));
      return provider.unwrap(wrapped, aad);
    },
  };
}
