import { timingSafeEqual } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { GCM_NONCE_LENGTH } from '../../crypto/aes-gcm.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { parseWrappedV1, wrappedHeaderV1 } from '../../crypto/wrapped-material.js';
import { Code, KmsError } from '../../errors/kms-error.js';
import type { Random } from '../../ports/random.js';
import type { RootKeyProvider } from '../../ports/root-key.js';
import { aesKeyTemplate, ckrName, findSecretKeys, gcmOpenIn, gcmSealIn, Pkcs11Error, type Pkcs11Token, type Session } from './pkcs11-token.js';

// The root key as a non-extractable AES-256 key inside a PKCS#11 token. Version material is
// wrapped by AES-256-GCM (CKM_AES_GCM) computed by the token, in the same blob layout as the
// software root key (src/crypto/wrapped-material.ts); the key itself never leaves the token.
//
// Why encrypt rather than C_WrapKey: the material of software key versions (AES_128/192/256) must
// come back into the process to be used by node:crypto, and an unwrapped sensitive key object
// could not be read back. C_Encrypt/C_Decrypt of the material with an encrypt/decrypt-only key is
// exactly "wrap and unwrap by the HSM", with the same AAD binding as the software provider.

const UNWRAP_FAILED = 'stored key material does not unwrap with the configured root key';
/** Input of the key check value; see keyCheckValue. */
const KCV_AAD = Buffer.from('kmsd root key id', 'utf8');

type Handle = Buffer;

export interface Pkcs11RootKey extends RootKeyProvider {
  /** The object label of the root key in the token. */
  readonly label: string;
  /** Wraps and unwraps a random value; throws Pkcs11Error when the round trip fails. */
  selfTest(random: Random): Promise<void>;
}

function attributes(s: Session, key: Handle): { keyType: number; valueLen: number; sensitive: boolean; extractable: boolean; encrypt: boolean; decrypt: boolean } {
  const read = s.p11.C_GetAttributeValue(s.handle, key, [
    { type: pkcs11js.CKA_KEY_TYPE },
    { type: pkcs11js.CKA_VALUE_LEN },
    { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE },
    { type: pkcs11js.CKA_ENCRYPT },
    { type: pkcs11js.CKA_DECRYPT },
  ]);
  const num = (i: number): number => {
    const v = read[i]?.value;
    return Buffer.isBuffer(v) ? (v.length >= 8 ? Number(v.readBigUInt64LE(0)) : v.readUInt32LE(0)) : Number(v);
  };
  const bool = (i: number): boolean => {
    const v = read[i]?.value;
    return Buffer.isBuffer(v) ? v[0] === 1 : Boolean(v);
  };
  return { keyType: num(0), valueLen: num(1), sensitive: bool(2), extractable: bool(3), encrypt: bool(4), decrypt: bool(5) };
}

/**
 * A key check value: the GCM encryption of 16 zero bytes under a fixed all-zero nonce, computed
 * once per start. It names the key (the same key gives the same id whatever its label) and shows
 * nothing usable about it. The fixed nonce is only ever used with this one fixed input, and the
 * random nonces of real encryptions collide with it with probability 2^-96.
 */
async function keyCheckValue(token: Pkcs11Token, key: Handle): Promise<string> {
  const out = await gcmSealIn(token, key, Buffer.alloc(GCM_NONCE_LENGTH), Buffer.alloc(16), KCV_AAD);
  return out.subarray(16, 24).toString('hex');
}

/**
 * Finds the AES key labelled `label` in the token, or creates it when `create` is set and there is
 * none. Refuses a key that could leave the token (extractable or not sensitive) or is not AES-256.
 */
export async function openPkcs11RootKey(token: Pkcs11Token, opts: { label: string; create: boolean }, random: Random): Promise<Pkcs11RootKey> {
  const where = `PKCS#11 token "${token.label}"`;
  const key = await token.withSession((s): Handle => {
    const found = findSecretKeys(s, opts.label);
    if (found.length > 1) throw new Pkcs11Error(`${where} holds ${found.length} secret keys labelled "${opts.label}"; the root key label must be unique`);
    if (found.length === 1) {
      const a = attributes(s, found[0]!);
      if (a.keyType !== pkcs11js.CKK_AES || a.valueLen !== 32) throw new Pkcs11Error(`${where}: key "${opts.label}" is not an AES-256 key`);
      if (a.extractable || !a.sensitive) {
        throw new Pkcs11Error(`${where}: key "${opts.label}" can leave the token (CKA_EXTRACTABLE or not CKA_SENSITIVE); kmsd only uses non-extractable, sensitive root keys`);
      }
      if (!a.encrypt || !a.decrypt) throw new Pkcs11Error(`${where}: key "${opts.label}" must allow CKA_ENCRYPT and CKA_DECRYPT`);
      return found[0]!;
    }
    if (!opts.create) {
      throw new Pkcs11Error(`${where} has no key labelled "${opts.label}"; create it, or add create=yes to --root-key to let kmsd generate it`);
    }
    try {
      return s.p11.C_GenerateKey(s.handle, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, aesKeyTemplate(opts.label, random.bytes(16)));
    } catch (e) {
      throw new Pkcs11Error(`${where}: cannot generate the root key "${opts.label}": ${ckrName(e) ?? (e as Error).message}`);
    }
  });
  let id: string;
  try {
    id = `p11:${await keyCheckValue(token, key)}`;
  } catch (e) {
    throw new Pkcs11Error(`${where}: key "${opts.label}" cannot encrypt with CKM_AES_GCM: ${ckrName(e) ?? (e as Error).message}`);
  }

  const provider: Pkcs11RootKey = {
    id,
    label: opts.label,
    async wrap(material, aad) {
      const header = wrappedHeaderV1(id);
      const nonce = random.bytes(GCM_NONCE_LENGTH);
      const sealed = await gcmSealIn(token, key, nonce, material.exposeSecret(), Buffer.concat([header, aad]));
      return Buffer.concat([header, nonce, sealed]);
    },
    async unwrap(wrapped, aad) {
      const parts = parseWrappedV1(wrapped);
      if (parts === undefined || parts.rootKeyId !== id) throw new KmsError(Code.Internal, UNWRAP_FAILED);
      const plain = await gcmOpenIn(token, key, parts.nonce, parts.sealed, Buffer.concat([parts.header, aad]));
      if (plain === undefined) throw new KmsError(Code.Internal, UNWRAP_FAILED);
      const secret = new SecretBytes(plain);
      plain.fill(0);
      return secret;
    },
    async selfTest(rnd) {
      const probe = new SecretBytes(rnd.bytes(32));
      const aad = Buffer.from('kmsd root key self-test', 'utf8');
      try {
        const back = await provider.unwrap(await provider.wrap(probe, aad), aad);
        const same = back.length === probe.length && timingSafeEqual(back.exposeSecret(), probe.exposeSecret());
        back.wipe();
        if (!same) throw new Error('the unwrapped value differs');
      } catch (e) {
        throw new Pkcs11Error(`${where}: the wrap/unwrap self-test of root key "${opts.label}" failed: ${ckrName(e) ?? (e as Error).message}`);
      } finally {
        probe.wipe();
      }
    },
  };
  return provider;
}
