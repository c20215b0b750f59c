// Key versions that live inside an HSM (AES_256_HSM). Their material is generated in the HSM as a
// non-extractable key and never leaves it; kmsd keeps only a reference (src/crypto/hsm-reference.ts)
// and asks the HSM to run AES-256-GCM with that key. The ciphertext layout around the GCM output
// is the ordinary v1 format, so Decrypt needs nothing but the ciphertext.

/** An open handle on one HSM-hosted key. */
export interface HsmKey {
  /** AES-256-GCM with a 96-bit nonce and a 128-bit tag; returns ciphertext ‖ tag. */
  seal(nonce: Buffer, plaintext: Buffer, aad: Buffer): Promise<Buffer>;
  /** Undefined when authentication fails (a wrong key, AAD, nonce, or altered bytes). */
  open(nonce: Buffer, sealed: Buffer, aad: Buffer): Promise<Buffer | undefined>;
}

export interface HsmKeyVersions {
  /** Generates a non-extractable AES-256 key for the version; returns the reference to store. */
  generate(keyId: string, versionId: string): Promise<Buffer>;
  /** The key a stored reference names; KmsError INTERNAL when the HSM no longer holds it. */
  open(reference: Buffer): Promise<HsmKey>;
  /** Destroys the key object; a reference to a key that is already gone is not an error. */
  destroy(reference: Buffer): Promise<void>;
}
