// Generates the committed test vectors for symmetric ciphertext format v1 (DESIGN.md §5).
//
// The vectors were generated ONCE and committed as test/vectors/ciphertext-v1.json. The tests never
// regenerate them: they decrypt the committed bytes forever, which is what proves that a v1
// ciphertext made today still decrypts after any refactoring. Do not regenerate the file to make a
// test pass — a different output means the format changed, and a new layout needs a new format byte.
//
//   node --import tsx scripts/generate-ciphertext-vectors.ts           # print the JSON to stdout
//   node --import tsx scripts/generate-ciphertext-vectors.ts --check   # compare with the committed file
//   node --import tsx scripts/generate-ciphertext-vectors.ts --write   # write it (only if it does not exist)
//
// Everything is deterministic — key material, nonces and plaintexts come from SHA-256 in counter
// mode over fixed seeds — so running the script again gives byte-identical output.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sealV1 } from '../src/crypto/ciphertext-v1.js';
import { SecretBytes } from '../src/crypto/secret-bytes.js';
import type { Random } from '../src/ports/random.js';

const OUT = fileURLToPath(new URL('../test/vectors/ciphertext-v1.json', import.meta.url));

/** SHA-256(utf8(seed) ‖ be32(0)) ‖ SHA-256(utf8(seed) ‖ be32(1)) ‖ …, truncated to `length`. */
function sha256Counter(seed: string, length: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0, have = 0; have < length; i++, have += 32) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    blocks.push(createHash('sha256').update(Buffer.from(seed, 'utf8')).update(counter).digest());
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** A seeded, deterministic stand-in for the CSPRNG: a stream of SHA-256 counter-mode bytes. */
function deterministicRandom(seed: string): Random {
  let offset = 0;
  return {
    bytes(n: number): Buffer {
      // Stream position `offset … offset+n`, regenerated from the start each call: slow but simple.
      const out = sha256Counter(seed, offset + n).subarray(offset);
      offset += n;
      return Buffer.from(out);
    },
  };
}

interface Case {
  name: string;
  keyBytes: 16 | 24 | 32;
  keyId: string;
  versionId: string;
  aadContext: Buffer;
  plaintext: { stored: Buffer } | { rule: 'sha256-counter'; seed: string; length: number };
}

const CASES: Case[] = [
  {
    name: 'aes128-version-id-length-1-empty-aad-1-byte',
    keyBytes: 16,
    keyId: 'abj0vectors00000000a',
    versionId: 'a',
    aadContext: Buffer.alloc(0),
    plaintext: { stored: Buffer.of(0xa5) },
  },
  {
    name: 'aes128-aad-100-bytes',
    keyBytes: 16,
    keyId: 'abj0vectors00000000b',
    versionId: 'abj1version000000001',
    aadContext: Buffer.from('tenant=42;purpose=vectors', 'utf8'),
    plaintext: { stored: sha256Counter('kmsd ciphertext-v1 plaintext aes128-aad-100-bytes', 100) },
  },
  {
    name: 'aes192-empty-aad-1-byte',
    keyBytes: 24,
    keyId: 'abj0vectors00000000c',
    versionId: 'abj1version000000002',
    aadContext: Buffer.alloc(0),
    plaintext: { stored: Buffer.from('!', 'utf8') },
  },
  {
    name: 'aes192-aad-100-bytes',
    keyBytes: 24,
    keyId: 'abj0vectors00000000d',
    versionId: 'abj1version000000003',
    aadContext: Buffer.from([0x00, 0x01, 0x02, 0xfe, 0xff]),
    plaintext: { stored: sha256Counter('kmsd ciphertext-v1 plaintext aes192-aad-100-bytes', 100) },
  },
  {
    // The API requires a non-empty plaintext, but the codec itself accepts an empty one.
    name: 'aes256-version-id-length-50-aad-0-bytes',
    keyBytes: 32,
    keyId: 'abj0vectors00000000e',
    versionId: 'v'.repeat(10) + '0123456789' + 'abcdefghij' + 'ABCDEFGHIJ' + '~!#$%&()*+',
    aadContext: Buffer.from('context for an empty plaintext', 'utf8'),
    plaintext: { stored: Buffer.alloc(0) },
  },
  {
    name: 'aes256-aad-100-bytes',
    keyBytes: 32,
    keyId: 'abj0vectors00000000f',
    versionId: 'abj1version000000004',
    aadContext: Buffer.from('order=2024-0001', 'utf8'),
    plaintext: { stored: sha256Counter('kmsd ciphertext-v1 plaintext aes256-aad-100-bytes', 100) },
  },
  {
    name: 'aes256-empty-aad-32768-bytes',
    keyBytes: 32,
    keyId: 'abj0vectors00000000g',
    versionId: 'abj1version000000005',
    aadContext: Buffer.alloc(0),
    plaintext: { rule: 'sha256-counter', seed: 'kmsd ciphertext-v1 plaintext aes256-empty-aad-32768-bytes', length: 32768 },
  },
];

function generate(): string {
  const random = deterministicRandom('kmsd ciphertext-v1 vector nonces');
  const vectors = CASES.map((c) => {
    const material = sha256Counter(`kmsd ciphertext-v1 material ${c.name}`, c.keyBytes);
    const plaintext = 'stored' in c.plaintext ? c.plaintext.stored : sha256Counter(c.plaintext.seed, c.plaintext.length);
    const ciphertext = sealV1({
      key: new SecretBytes(material),
      keyId: c.keyId,
      versionId: c.versionId,
      plaintext,
      aadContext: c.aadContext,
      random,
    });
    const nonceStart = 3 + Buffer.byteLength(c.versionId, 'ascii');
    return {
      name: c.name,
      material: material.toString('hex'),
      keyId: c.keyId,
      versionId: c.versionId,
      aadContext: c.aadContext.toString('base64'),
      plaintext:
        'stored' in c.plaintext
          ? c.plaintext.stored.toString('base64')
          : { ...c.plaintext, sha256: createHash('sha256').update(plaintext).digest('hex') },
      nonce: ciphertext.subarray(nonceStart, nonceStart + 12).toString('hex'),
      ciphertext: ciphertext.toString('base64'),
    };
  });
  const file = {
    format: 'kmsd symmetric ciphertext v1 (src/crypto/ciphertext-v1.ts, DESIGN.md §5)',
    note:
      'Generated once by scripts/generate-ciphertext-vectors.ts and committed. Never regenerate to make a test pass: ' +
      'these ciphertexts must decrypt forever. Fields: material hex; aadContext base64; plaintext base64, or a rule; ' +
      'nonce hex (bytes 3+L … 14+L of the ciphertext); ciphertext base64.',
    plaintextRules: {
      'sha256-counter': 'SHA-256(utf8(seed) ‖ be32(0)) ‖ SHA-256(utf8(seed) ‖ be32(1)) ‖ …, truncated to length bytes; sha256 is the digest of the result',
    },
    vectors,
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

const mode = process.argv[2];
const text = generate();
if (mode === '--check') {
  const same = existsSync(OUT) && readFileSync(OUT, 'utf8') === text;
  console.log(same ? `${OUT}: reproduced byte for byte` : `${OUT}: DIFFERS from the generator output`);
  process.exit(same ? 0 : 1);
} else if (mode === '--write') {
  if (existsSync(OUT)) {
    console.error(`${OUT} exists; committed vectors are never regenerated (use --check to compare)`);
    process.exit(1);
  }
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT}`);
} else {
  process.stdout.write(text);
}
