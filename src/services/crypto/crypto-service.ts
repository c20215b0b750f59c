import { ERR, type KmsError } from '../../errors/kms-error.js';
import { assertKeyUsable, assertVersionUsable, DATA_KEY_LENGTH, type KeyVersion, type SymmetricAlgorithm, type SymmetricKey } from '../../domain/key.js';
import { openV1, openV1With, parseCiphertextV1, sealV1, sealV1With } from '../../crypto/ciphertext-v1.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import type { Random } from '../../ports/random.js';
import { missingKey, type Authorizer, type Permission } from '../access/authorizer.js';
import { note } from '../audit/trail.js';
import type { CallContext } from '../context.js';
import type { KeyCache, UsableVersion } from '../keys/key-cache.js';

// SymmetricCryptoService (SPEC.md §4.2). Reads only through the KeyCache and never writes to the
// store, so a warm Encrypt costs one AES-GCM call plus the transport.

export interface EncryptInput {
  readonly keyId: string;
  readonly versionId: string;
  readonly aadContext: Buffer;
  readonly plaintext: Buffer;
}
export interface EncryptOutput {
  readonly keyId: string;
  readonly versionId: string;
  readonly ciphertext: Buffer;
}
export interface DecryptInput {
  readonly keyId: string;
  readonly aadContext: Buffer;
  readonly ciphertext: Buffer;
}
export interface DecryptOutput {
  readonly keyId: string;
  readonly versionId: string;
  readonly plaintext: Buffer;
}
export interface ReEncryptInput {
  readonly keyId: string;
  readonly versionId: string;
  readonly aadContext: Buffer;
  readonly sourceKeyId: string;
  readonly sourceAadContext: Buffer;
  readonly ciphertext: Buffer;
}
export interface ReEncryptOutput {
  readonly keyId: string;
  readonly versionId: string;
  readonly sourceKeyId: string;
  readonly sourceVersionId: string;
  readonly ciphertext: Buffer;
}
export interface GenerateDataKeyInput {
  readonly keyId: string;
  readonly versionId: string;
  readonly aadContext: Buffer;
  readonly dataKeySpec: SymmetricAlgorithm | undefined;
  readonly skipPlaintext: boolean;
}
export interface GenerateDataKeyOutput {
  readonly keyId: string;
  readonly versionId: string;
  readonly dataKeyPlaintext?: Buffer;
  readonly dataKeyCiphertext: Buffer;
}

export interface CryptoServiceDeps {
  readonly cache: Pick<KeyCache, 'getKey' | 'getVersion'>;
  readonly authorizer: Authorizer;
  readonly random: Random;
}

function noMaterial(key: SymmetricKey, version: KeyVersion): KmsError {
  if (version.hostedByHsm) {
    return ERR.failedPrecondition(`key ${key.id}: version ${version.id} is hosted by an HSM, and this kmsd has none configured (start it with --root-key pkcs11:... of that HSM)`);
  }
  return ERR.failedPrecondition(`key ${key.id}: version ${version.id} has no usable material`);
}

export function cryptoService(d: CryptoServiceDeps) {
  async function usableKey(ctx: CallContext, keyId: string, permission: Permission): Promise<SymmetricKey> {
    const key = await d.cache.getKey(keyId);
    if (!key || key.deletedAt !== undefined) return missingKey(d.authorizer, ctx.caller, permission, keyId, () => ERR.keyNotFound(keyId));
    await d.authorizer.authorize(ctx.caller, permission, { folderId: key.folderId, keyId });
    assertKeyUsable(key);
    return key;
  }

  /** The version that encrypts: the named one or the primary; it must be ACTIVE. */
  async function encryptingVersion(key: SymmetricKey, versionId: string): Promise<Required<UsableVersion>> {
    const id = versionId === '' ? key.primaryVersionId : versionId;
    const usable = await d.cache.getVersion(key, id);
    if (!usable) throw ERR.versionNotFound(key.id, id);
    assertVersionUsable(usable.version);
    if (!usable.material) throw noMaterial(key, usable.version);
    return usable as Required<UsableVersion>;
  }

  async function open(key: SymmetricKey, ciphertext: Buffer, aadContext: Buffer): Promise<{ versionId: string; plaintext: Buffer }> {
    const parsed = parseCiphertextV1(ciphertext);
    const usable = await d.cache.getVersion(key, parsed.versionId);
    // A version this key does not have: forged, or made by another key. Same answer as tampering.
    if (!usable) throw ERR.invalidCiphertext();
    assertVersionUsable(usable.version);
    if (!usable.material) throw noMaterial(key, usable.version);
    const m = usable.material;
    const plaintext =
      m instanceof SecretBytes
        ? openV1({ key: m, keyId: key.id, parsed, aadContext })
        : await openV1With({ open: (nonce, sealed, aad) => m.open(nonce, sealed, aad), keyId: key.id, parsed, aadContext });
    return { versionId: parsed.versionId, plaintext };
  }

  /** Software versions seal right here (synchronously); HSM-hosted ones have the HSM run the same AES-GCM. */
  function seal(key: SymmetricKey, usable: Required<UsableVersion>, plaintext: Buffer, aadContext: Buffer): Buffer | Promise<Buffer> {
    const m = usable.material;
    const common = { keyId: key.id, versionId: usable.version.id, plaintext, aadContext, random: d.random };
    return m instanceof SecretBytes ? sealV1({ key: m, ...common }) : sealV1With({ seal: (nonce, pt, aad) => m.seal(nonce, pt, aad), ...common });
  }

  return {
    async encrypt(ctx: CallContext, input: EncryptInput): Promise<EncryptOutput> {
      note(ctx, { keyId: input.keyId, versionId: input.versionId });
      const key = await usableKey(ctx, input.keyId, 'kms.keys.encrypt');
      note(ctx, { folderId: key.folderId });
      const usable = await encryptingVersion(key, input.versionId);
      note(ctx, { versionId: usable.version.id });
      return { keyId: key.id, versionId: usable.version.id, ciphertext: await seal(key, usable, input.plaintext, input.aadContext) };
    },

    async decrypt(ctx: CallContext, input: DecryptInput): Promise<DecryptOutput> {
      note(ctx, { keyId: input.keyId });
      const key = await usableKey(ctx, input.keyId, 'kms.keys.decrypt');
      note(ctx, { folderId: key.folderId });
      const { versionId, plaintext } = await open(key, input.ciphertext, input.aadContext);
      note(ctx, { versionId });
      return { keyId: key.id, versionId, plaintext };
    },

    async reEncrypt(ctx: CallContext, input: ReEncryptInput): Promise<ReEncryptOutput> {
      // The record names the target key; the source key is its other resource.
      note(ctx, { keyId: input.keyId, resourceId: input.sourceKeyId });
      const source = await usableKey(ctx, input.sourceKeyId, 'kms.keys.decrypt');
      const target = await usableKey(ctx, input.keyId, 'kms.keys.encrypt');
      note(ctx, { folderId: target.folderId });
      const { versionId: sourceVersionId, plaintext } = await open(source, input.ciphertext, input.sourceAadContext);
      try {
        const usable = await encryptingVersion(target, input.versionId);
        note(ctx, { versionId: usable.version.id });
        return {
          keyId: target.id,
          versionId: usable.version.id,
          sourceKeyId: source.id,
          sourceVersionId,
          ciphertext: await seal(target, usable, plaintext, input.aadContext),
        };
      } finally {
        plaintext.fill(0); // the recovered plaintext never leaves the service
      }
    },

    async generateDataKey(ctx: CallContext, input: GenerateDataKeyInput): Promise<GenerateDataKeyOutput> {
      note(ctx, { keyId: input.keyId });
      const key = await usableKey(ctx, input.keyId, 'kms.keys.encrypt');
      note(ctx, { folderId: key.folderId });
      const usable = await encryptingVersion(key, input.versionId);
      note(ctx, { versionId: usable.version.id });
      const dataKey = d.random.bytes(DATA_KEY_LENGTH[input.dataKeySpec ?? 'AES_256']);
      const dataKeyCiphertext = await seal(key, usable, dataKey, input.aadContext);
      if (input.skipPlaintext) {
        dataKey.fill(0);
        return { keyId: key.id, versionId: usable.version.id, dataKeyCiphertext };
      }
      return { keyId: key.id, versionId: usable.version.id, dataKeyPlaintext: dataKey, dataKeyCiphertext };
    },
  };
}

export type CryptoService = ReturnType<typeof cryptoService>;
