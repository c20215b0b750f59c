import type { Random } from '../ports/random.js';
import { GCM_NONCE_LENGTH, GCM_TAG_LENGTH, gcmOpen, gcmSeal, lengthPrefixed } from './aes-gcm.js';
import { SecretBytes } from './secret-bytes.js';

// Key-version material at rest, wrapped by a root key (DESIGN.md §5):
//
//   0      1 byte   magic 0x57 ('W')
//   1      1 byte   format 0x01
//   2      1 byte   R = length of the root key id
//   3      R bytes  root key id (ASCII), so a root-key rotation knows what made each blob
//   3+R    12 bytes nonce
//   15+R   …        AES-256-GCM(material) ‖ tag
//
// AAD = header ‖ lp(key id) ‖ lp(version id): a blob copied to another key or version fails.
// A PKCS#11 root key (src/adapters/rootkey-pkcs11) writes the same layout: the AES-256-GCM runs
// inside the HSM with the same nonce, AAD and tag length, so only the root key id tells them apart.

const WRAP_MAGIC = 0x57;
const WRAP_V1 = 0x01;

export function wrappedAad(keyId: string, versionId: string): Buffer {
  return Buffer.concat([lengthPrefixed(Buffer.from(keyId, 'utf8')), lengthPrefixed(Buffer.from(versionId, 'utf8'))]);
}

/** The header of a blob wrapped by root key `rootKeyId`; it is also the first part of the AAD. */
export function wrappedHeaderV1(rootKeyId: string): Buffer {
  const id = Buffer.from(rootKeyId, 'latin1');
  if (id.length === 0 || id.length > 255) throw new Error('root key id must be 1-255 bytes');
  return Buffer.concat([Buffer.of(WRAP_MAGIC, WRAP_V1, id.length), id]);
}

/** The parts of a v1 blob, or undefined when it is not one (or is too short to hold a tag). */
export function parseWrappedV1(blob: Buffer): { rootKeyId: string; header: Buffer; nonce: Buffer; sealed: Buffer } | undefined {
  const rootKeyId = wrappedRootKeyId(blob);
  if (rootKeyId === undefined) return undefined;
  const headerLength = 3 + blob[2]!;
  if (blob.length < headerLength + GCM_NONCE_LENGTH + GCM_TAG_LENGTH) return undefined;
  return {
    rootKeyId,
    header: blob.subarray(0, headerLength),
    nonce: blob.subarray(headerLength, headerLength + GCM_NONCE_LENGTH),
    sealed: blob.subarray(headerLength + GCM_NONCE_LENGTH),
  };
}

export function wrapV1(p: { rootKey: SecretBytes; rootKeyId: string; material: SecretBytes; aad: Buffer; random: Random }): Buffer {
  const header = wrappedHeaderV1(p.rootKeyId);
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
  const parts = parseWrappedV1(p.wrapped);
  if (parts === undefined || parts.rootKeyId !== p.rootKeyId) return undefined;
  const plain = gcmOpen(p.rootKey, parts.nonce, parts.sealed, Buffer.concat([parts.header, p.aad]));
  if (plain === undefined) return undefined;
  const secret = new SecretBytes(plain);
  plain.fill(0);
  return secret;
}
