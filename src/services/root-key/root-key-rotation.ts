import { decodeHsmReference } from '../../crypto/hsm-reference.js';
import { wrappedAad, wrappedRootKeyId } from '../../crypto/wrapped-material.js';
import type { RootKeyProvider } from '../../ports/root-key.js';
import type { MetaStore, RewrapStore } from '../../ports/store.js';

// Root-key rotation (`kmsd root-key rotate`): rewraps every stored blob that the current root key
// did not make, with the current root key. It runs beside live servers ("online"): each blob is
// swapped by compare-and-set on its own, so at every moment each blob is wrapped either by the old
// key or by the new one, and servers configured with both (--root-key NEW --previous-root-key OLD)
// unwrap either. A crash loses nothing; running it again carries on where it stopped, because a
// blob names the root key that made it (src/crypto/wrapped-material.ts) and those already made by
// the current key are skipped.
//
// Root-key-wrapped meta values (the audit chain key, then the root-key check value) go last. The
// check value moves only after a full pass found nothing left, so its root key id says whether
// the last rotation finished (main.ts reads it at start).

export interface WrappedMeta {
  readonly name: string;
  readonly aad: Buffer;
}

export interface RotationReport {
  readonly rootKey: string;
  /** Blobs rewrapped by this run. */
  readonly rewrapped: number;
  /** Blobs the current root key had made already (an earlier, interrupted run, or new material). */
  readonly alreadyCurrent: number;
  /** AES_256_HSM versions: their keys live in the HSM and are not wrapped by the root key. */
  readonly hsmHosted: number;
  /** Blobs that changed while being rewrapped (destroyed, purged, or rewrapped by another run). */
  readonly raced: number;
  /** Meta values rewrapped by this run. */
  readonly metaRewrapped: readonly string[];
  /** Whether everything is now wrapped by the current root key. */
  readonly complete: boolean;
}

export class RotationError extends Error {
  override name = 'RotationError';
}

export interface RotationDeps {
  readonly store: RewrapStore & Pick<MetaStore, 'getMeta'>;
  readonly rootKey: RootKeyProvider & { readonly current: RootKeyProvider; providerOf(wrapped: Buffer): RootKeyProvider | undefined };
  /** Meta values holding root-key-wrapped secrets (base64), in the order to rewrap them; the last is the check value. */
  readonly meta: readonly WrappedMeta[];
  /** Called after each rewrapped blob with the running count (progress, and fault injection in tests). */
  readonly onRewrap?: (count: number) => void;
  readonly pageSize?: number;
}

export async function rotateRootKey(d: RotationDeps): Promise<RotationReport> {
  const current = d.rootKey.current;
  let rewrapped = 0;
  let alreadyCurrent = 0;
  let hsmHosted = 0;
  let raced = 0;
  const pageSize = d.pageSize ?? 200;

  async function rewrap(blob: Buffer, aad: Buffer, what: string): Promise<Buffer> {
    const madeBy = d.rootKey.providerOf(blob);
    if (!madeBy) {
      const id = wrappedRootKeyId(blob);
      throw new RotationError(
        id === undefined
          ? `${what} is not wrapped material kmsd can read; nothing was changed for it`
          : `${what} is wrapped by root key ${id}, which is not configured: add it as --previous-root-key`,
      );
    }
    const material = await madeBy.unwrap(blob, aad);
    try {
      return await current.wrap(material, aad);
    } finally {
      material.wipe();
    }
  }

  for (let after = ''; ; ) {
    const page = await d.store.listStoredMaterial(after, pageSize);
    for (const { keyId, versionId, material } of page) {
      if (decodeHsmReference(material) !== undefined) {
        hsmHosted++;
        continue;
      }
      if (wrappedRootKeyId(material) === current.id) {
        alreadyCurrent++;
        continue;
      }
      const next = await rewrap(material, wrappedAad(keyId, versionId), `version ${versionId} of key ${keyId}`);
      if (await d.store.replaceStoredMaterial(keyId, versionId, material, next)) {
        rewrapped++;
        d.onRewrap?.(rewrapped);
      } else {
        raced++;
      }
    }
    if (page.length < pageSize) break;
    after = page[page.length - 1]!.versionId;
  }

  const metaRewrapped: string[] = [];
  for (const { name, aad } of d.meta) {
    const stored = await d.store.getMeta(name);
    if (stored === undefined) continue;
    const blob = Buffer.from(stored, 'base64');
    if (wrappedRootKeyId(blob) === current.id) continue;
    const next = (await rewrap(blob, aad, `meta value ${name}`)).toString('base64');
    if (!(await d.store.replaceMeta(name, stored, next))) throw new RotationError(`meta value ${name} changed during the rotation; run it again`);
    metaRewrapped.push(name);
  }
  return { rootKey: current.id, rewrapped, alreadyCurrent, hsmHosted, raced, metaRewrapped, complete: true };
}
