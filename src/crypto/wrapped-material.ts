import type { Random } from '../ports/random.js';
import { GCM_NONCE_LENGTH, GCM_TAG_LENGTH, gcmOpen, gcmSeal, lengthPrefixed } from './aes-gcm.js';
import { SecretBytes } from './secret-bytes.js';

// Key-version material at rest, wrapped by a software root key (DESIGN.md §5):
//
//   0      1 byte   magic 0x57 ('W')
//   1      1 byte   format 0x01
//   2      1 byte   R = length of the root key id
//   3      R bytes  root key id (ASCII), so a root-key rotation knows what made each blob
//   3+R    12 bytes nonce
//   15+R   …        AES-256-GCM(material) ‖ tag
//
// AAD = header ‖ lp(key id) ‖ lp(version id): a blob copied to another key or version fails.

const WRAP_MAGIC = 0x57;
const WRAP_V1 = 0x01;

export function wrappedAad(keyId: string, versionId: string): Buffer {
  return Buffer.concat([lengthPrefixed(Buffer.from(keyId, 'utf8')), lengthPrefixed(Buffer.from(versionId, 'utf8'))]);
}

export function wrapV1(p: { rootKey: SecretBytes; rootKeyId: string; material: SecretBytes; aad: Buffer; random: Random }): Buffer {
  const id = Buffer.from(p.rootKeyId, 'latin1');
  if (id.length === 0 || id.length > 255) throw new Error('root key id must be 1-255 bytes');
  const header = Buffer.concat([Buffer.of(WRAP_MAGIC, WRAP_V1, id.length), id]);
  const nonce = p.random.bytes(GCM_NONCE_LENGTH);
  return Buffer.concat([header, nonce, gcmSeal(p.rootKey, nonce, p.material.exposeSecret(), Buffer.concat([header, p.aad]))]);
}

/** The root key id a blob was wrapped with, or undefined if it is not a v1 blob. */
export function wrappedRootKeyId(blob: Buffer): string | undefined {
  if (blob.length < 3 || blob[0] !== WRAP_MAGIC || blob[1] !== WRAP_V1) return undefined;
  const end = 3 + blob[2]!;
  return blob.length >= end ? blob.toString('latin1', 3, end) : undefined;
}

/** Returns undefined when the blob is malformed, was wrapped by another root key, or was altered. */
export function unwrapV1(p: { rootKey: SecretBytes; rootKeyId: string; wrapped: Buffer; aad: Buffer }): SecretBytes | undefined {
  if (wrappedRootKeyId(p.wrapped) !== p.rootKeyId) return undefined;
  const headerLength = 3 + p.wrapped[2]!;
  if (p.wrapped.length < headerLength + GCM_NONCE_LENGTH + GCM_TAG_LENGTH) return undefined;
  const header = p.wrapped.subarray(0, headerLength);
  const nonce = p.wrapped.subarray(headerLength, headerLength + GCM_NONCE_LENGTH);
  const plain = gcmOpen(p.rootKey, nonce, p.wrapped.subarray(headerLength + GCM_NONCE_LENGTH), Buffer.concat([header, p.aad]));
  if (plain === undefined) return undefined;
  const secret = new SecretBytes(plain);
  plain.fill(0);
  return secret;
}
