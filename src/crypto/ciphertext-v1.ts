import { ERR } from '../errors/kms-error.js';
import type { Random } from '../ports/random.js';
import { GCM_NONCE_LENGTH, GCM_TAG_LENGTH, gcmOpen, gcmSeal, lengthPrefixed } from './aes-gcm.js';
import type { SecretBytes } from './secret-bytes.js';

// Symmetric ciphertext, format v1 (DESIGN.md §5):
//
//   0      1 byte   magic 0x4b ('K')
//   1      1 byte   format 0x01
//   2      1 byte   L = length of the version id
//   3      L bytes  version id (ASCII)
//   3+L    12 bytes GCM nonce, fresh from the CSPRNG for every encryption
//   15+L   …        AES-GCM ciphertext ‖ 16-byte tag
//
// GCM additional data = header (bytes 0 … 2+L) ‖ lp(key id) ‖ lp(aad context), lp = 4-byte length
// prefix. The header names the version that must decrypt; binding it and the key id into the tag
// means neither can be swapped. A new layout gets a new format byte; v1 stays decodable forever
// (test/vectors/ciphertext-v1.json).

export const CIPHERTEXT_MAGIC = 0x4b;
export const FORMAT_V1 = 0x01;
const MAX_VERSION_ID_LENGTH = 50;
const VERSION_ID_PATTERN = /^[\x21-\x7e]+$/;

export interface ParsedCiphertextV1 {
  readonly versionId: string;
  readonly header: Buffer;
  readonly nonce: Buffer;
  readonly sealed: Buffer;
}

export function encodeHeaderV1(versionId: string): Buffer {
  const id = Buffer.from(versionId, 'ascii');
  if (id.length === 0 || id.length > MAX_VERSION_ID_LENGTH || !VERSION_ID_PATTERN.test(versionId)) {
    throw new Error('version id must be 1-50 printable ASCII characters');
  }
  return Buffer.concat([Buffer.of(CIPHERTEXT_MAGIC, FORMAT_V1, id.length), id]);
}

/** The GCM additional data of a v1 ciphertext: header ‖ lp(key id) ‖ lp(aad context). */
export function aadV1(header: Buffer, keyId: string, aadContext: Buffer): Buffer {
  return Buffer.concat([header, lengthPrefixed(Buffer.from(keyId, 'utf8')), lengthPrefixed(aadContext)]);
}

export function sealV1(p: {
  key: SecretBytes;
  keyId: string;
  versionId: string;
  plaintext: Buffer;
  aadContext: Buffer;
  random: Random;
}): Buffer {
  const header = encodeHeaderV1(p.versionId);
  const nonce = p.random.bytes(GCM_NONCE_LENGTH);
  const sealed = gcmSeal(p.key, nonce, p.plaintext, aadV1(header, p.keyId, p.aadContext));
  return Buffer.concat([header, nonce, sealed]);
}

/**
 * Seals with an AES-GCM that runs elsewhere (an HSM-hosted key version): the same header, nonce
 * and AAD as sealV1, so the result is an ordinary v1 ciphertext that parseCiphertextV1 reads.
 * `seal` returns ciphertext ‖ 16-byte tag.
 */
export async function sealV1With(p: {
  seal: (nonce: Buffer, plaintext: Buffer, aad: Buffer) => Promise<Buffer>;
  keyId: string;
  versionId: string;
  plaintext: Buffer;
  aadContext: Buffer;
  random: Random;
}): Promise<Buffer> {
  const header = encodeHeaderV1(p.versionId);
  const nonce = p.random.bytes(GCM_NONCE_LENGTH);
  const sealed = await p.seal(nonce, p.plaintext, aadV1(header, p.keyId, p.aadContext));
  if (sealed.length !== p.plaintext.length + GCM_TAG_LENGTH) throw new Error('AES-GCM returned a ciphertext of the wrong length');
  return Buffer.concat([header, nonce, sealed]);
}

/** Opens a parsed v1 ciphertext with an AES-GCM that runs elsewhere; `open` answers undefined on any authentication failure. */
export async function openV1With(p: {
  open: (nonce: Buffer, sealed: Buffer, aad: Buffer) => Promise<Buffer | undefined>;
  keyId: string;
  parsed: ParsedCiphertextV1;
  aadContext: Buffer;
}): Promise<Buffer> {
  const plaintext = await p.open(p.parsed.nonce, p.parsed.sealed, aadV1(p.parsed.header, p.keyId, p.aadContext));
  if (plaintext === undefined) throw ERR.invalidCiphertext();
  return plaintext;
}

/** Reads the header. Throws the one invalid-ciphertext error for anything that is not v1. */
export function parseCiphertextV1(ciphertext: Buffer): ParsedCiphertextV1 {
  if (ciphertext.length < 3 || ciphertext[0] !== CIPHERTEXT_MAGIC || ciphertext[1] !== FORMAT_V1) {
    throw ERR.invalidCiphertext();
  }
  const idLength = ciphertext[2]!;
  const headerLength = 3 + idLength;
  if (idLength === 0 || idLength > MAX_VERSION_ID_LENGTH) throw ERR.invalidCiphertext();
  if (ciphertext.length < headerLength + GCM_NONCE_LENGTH + GCM_TAG_LENGTH) throw ERR.invalidCiphertext();
  const versionId = ciphertext.toString('latin1', 3, headerLength);
  if (!VERSION_ID_PATTERN.test(versionId)) throw ERR.invalidCiphertext();
  return {
    versionId,
    header: ciphertext.subarray(0, headerLength),
    nonce: ciphertext.subarray(headerLength, headerLength + GCM_NONCE_LENGTH),
    sealed: ciphertext.subarray(headerLength + GCM_NONCE_LENGTH),
  };
}

/** Decrypts a parsed v1 ciphertext. Throws the one invalid-ciphertext error on any failure. */
export function openV1(p: { key: SecretBytes; keyId: string; parsed: ParsedCiphertextV1; aadContext: Buffer }): Buffer {
  const plaintext = gcmOpen(p.key, p.parsed.nonce, p.parsed.sealed, aadV1(p.parsed.header, p.keyId, p.aadContext));
  if (plaintext === undefined) throw ERR.invalidCiphertext();
  return plaintext;
}
