// What the store keeps for an HSM-hosted key version (AES_256_HSM) in place of wrapped material:
// not key material at all, only the name of the key object inside the HSM.
//
//   0      1 byte   magic 0x48 ('H'), so it can never be taken for a wrapped blob ('W')
//   1      1 byte   format 0x01
//   2      1 byte   L = length of the object label
//   3      L bytes  CKA_LABEL of the secret-key object in the token (UTF-8)
//
// A root-key rotation leaves these alone: the HSM key is not wrapped by the root key.

const REFERENCE_MAGIC = 0x48;
const REFERENCE_V1 = 0x01;

export function encodeHsmReference(label: string): Buffer {
  const bytes = Buffer.from(label, 'utf8');
  if (bytes.length === 0 || bytes.length > 255) throw new Error('HSM object label must be 1-255 bytes');
  return Buffer.concat([Buffer.of(REFERENCE_MAGIC, REFERENCE_V1, bytes.length), bytes]);
}

/** The object label, or undefined when `blob` is not an HSM reference. */
export function decodeHsmReference(blob: Buffer): string | undefined {
  if (blob.length < 4 || blob[0] !== REFERENCE_MAGIC || blob[1] !== REFERENCE_V1 || blob.length !== 3 + blob[2]!) return undefined;
  return blob.toString('utf8', 3);
}
