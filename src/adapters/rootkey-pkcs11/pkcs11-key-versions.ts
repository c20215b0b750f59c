import pkcs11js from 'pkcs11js';
import { decodeHsmReference, encodeHsmReference } from '../../crypto/hsm-reference.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import type { HsmKey, HsmKeyVersions } from '../../ports/hsm.js';
import { aesKeyTemplate, findSecretKeys, gcmOpenIn, gcmSealIn, type Pkcs11Token } from './pkcs11-token.js';

// AES_256_HSM key versions as AES-256 secret-key objects in the token: generated there
// (CKM_AES_KEY_GEN) as sensitive, non-extractable, encrypt/decrypt-only token objects, used there
// (CKM_AES_GCM), destroyed there (C_DestroyObject). The store keeps the object's label:
//   CKA_LABEL = "kmsd-version:<key id>/<version id>", CKA_ID = the version id (ASCII)
// Labels are unique because version ids are.

export const VERSION_LABEL_PREFIX = 'kmsd-version:';

export function versionLabel(keyId: string, versionId: string): string {
  return `${VERSION_LABEL_PREFIX}${keyId}/${versionId}`;
}

export function pkcs11KeyVersions(token: Pkcs11Token): HsmKeyVersions {
  function labelOf(reference: Buffer): string {
    const label = decodeHsmReference(reference);
    if (label === undefined) throw new KmsError(Code.Internal, 'the stored reference of an HSM key version is malformed');
    return label;
  }

  return {
    async generate(keyId, versionId) {
      const label = versionLabel(keyId, versionId);
      await token.withSession((s) =>
        s.p11.C_GenerateKeyAsync(s.handle, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aesKeyTemplate(label, Buffer.from(versionId, 'ascii'))),
      );
      return encodeHsmReference(label);
    },

    async open(reference): Promise<HsmKey> {
      const label = labelOf(reference);
      const found = await token.withSession((s) => findSecretKeys(s, label));
      if (found.length !== 1) {
        throw new KmsError(Code.Internal, `HSM key ${label} is ${found.length === 0 ? 'missing from' : 'not unique in'} PKCS#11 token "${token.label}"`);
      }
      const key = found[0]!;
      return {
        seal: (nonce, plaintext, aad) => gcmSealIn(token, key, nonce, plaintext, aad),
        open: (nonce, sealed, aad) => gcmOpenIn(token, key, nonce, sealed, aad),
      };
    },

    async destroy(reference) {
      const label = labelOf(reference);
      await token.withSession((s) => {
        for (const key of findSecretKeys(s, label)) s.p11.C_DestroyObject(s.handle, key);
      });
    },
  };
}
