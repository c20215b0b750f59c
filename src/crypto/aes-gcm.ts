import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import type { SecretBytes } from './secret-bytes.js';

// AES-GCM over node:crypto (OpenSSL). The caller supplies a fresh random nonce per call; this
// module never chooses or reuses one.

export const GCM_NONCE_LENGTH = 12;
export const GCM_TAG_LENGTH = 16;

function cipherName(key: SecretBytes): CipherGCMTypes {
  switch (key.length) {
    case 16:
      return 'aes-128-gcm';
    case 24:
      return 'aes-192-gcm';
    case 32:
      return 'aes-256-gcm';
    default:
      throw new Error(`AES-GCM key must be 16, 24 or 32 bytes, got ${key.length}`);
  }
}

/** Returns ciphertext ‖ tag. */
export function gcmSeal(key: SecretBytes, nonce: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const cipher = createCipheriv(cipherName(key), key.exposeSecret(), nonce, { authTagLength: GCM_TAG_LENGTH });
  cipher.setAAD(aad);
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([head, tail, cipher.getAuthTag()]);
}

/** Opens ciphertext ‖ tag; returns undefined when authentication fails. */
export function gcmOpen(key: SecretBytes, nonce: Buffer, sealed: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length < GCM_TAG_LENGTH || nonce.length !== GCM_NONCE_LENGTH) return undefined;
  const decipher = createDecipheriv(cipherName(key), key.exposeSecret(), nonce, { authTagLength: GCM_TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_LENGTH));
  const head = decipher.update(sealed.subarray(0, sealed.length - GCM_TAG_LENGTH));
  try {
    return Buffer.concat([head, decipher.final()]);
  } catch {
    head.fill(0); // unauthenticated output never leaves this function
    return undefined;
  }
}

/** A 4-byte big-endian length prefix, so concatenated AAD parts cannot be shifted into each other. */
export function lengthPrefixed(part: Buffer): Buffer {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(part.length);
  return Buffer.concat([len, part]);
}
