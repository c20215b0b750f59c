import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ensureDevCertificates } from '../src/adapters/tls/dev-certificates.js';
import { cryptoRandom } from '../src/adapters/random.js';
import { openV1, parseCiphertextV1, sealV1 } from '../src/crypto/ciphertext-v1.js';
import { SecretBytes } from '../src/crypto/secret-bytes.js';
import {
  GenerateDataKeyRequestSchema,
  GenerateDataKeyResponseSchema,
  SymmetricCryptoService,
  SymmetricDecryptRequestSchema,
  SymmetricDecryptResponseSchema,
  SymmetricEncryptRequestSchema,
  SymmetricEncryptResponseSchema,
} from '../src/gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';

// The gRPC baseline for bench/run.ts: a bare @grpc/grpc-js server over TLS doing the irreducible
// work of kmsd's gRPC Encrypt, Decrypt and GenerateDataKey — decode the request bytes with
// @bufbuild/protobuf (as kmsd does, inside the handler), seal with the very same sealV1 under a
// fixed key (GenerateDataKey: 32 bytes from the same Random port first), encode the response. No
// authentication, no validation, no store, no key lookup, no request id metadata, no health or
// reflection service, no logging.
//
//   node --import tsx bench/baseline-grpc-server.ts --tls-dir <dir> [--addr 127.0.0.1:0]
//
// TLS: the CA and localhost certificate kmsd itself generates (ensureDevCertificates), made in
// --tls-dir, so the handshake and record costs match kmsd's (ECDSA P-256). Prints
// {"event":"ready","grpc":"HOST:PORT","caFile":"<dir>/ca.pem"} on stdout; SIGTERM stops it (exit 0).

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) {
    process.stderr.write(`baseline-grpc-server: ${name} is required\n`);
    process.exit(2);
  }
  return v;
}

const addr = arg('--addr', '127.0.0.1:0');
const tlsDir = arg('--tls-dir');

const ID_ALPHABET = '0123456789abcdefghijklmnopqrstuv';
const fakeId = () => `abj${Array.from(randomBytes(17), (b) => ID_ALPHABET[b & 31]).join('')}`;

// One key version, shaped like kmsd's (20-character ids), so AAD, ciphertext and responses have the same sizes.
const versionId = fakeId();
const material = new SecretBytes(randomBytes(32));

// Zero-copy view, as kmsd's handlers make of decoded bytes fields.
const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

const encrypt: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  const req = fromBinary(SymmetricEncryptRequestSchema, call.request);
  const ciphertext = sealV1({ key: material, keyId: req.keyId, versionId, plaintext: buf(req.plaintext), aadContext: buf(req.aadContext), random: cryptoRandom });
  const res = create(SymmetricEncryptResponseSchema, { keyId: req.keyId, versionId, ciphertext });
  callback(null, buf(toBinary(SymmetricEncryptResponseSchema, res)));
};

const decrypt: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  const req = fromBinary(SymmetricDecryptRequestSchema, call.request);
  let plaintext: Buffer;
  let parsed: ReturnType<typeof parseCiphertextV1>;
  try {
    parsed = parseCiphertextV1(buf(req.ciphertext));
    plaintext = openV1({ key: material, keyId: req.keyId, parsed, aadContext: buf(req.aadContext) });
  } catch {
    callback({ code: grpc.status.INVALID_ARGUMENT, details: 'invalid ciphertext' });
    return;
  }
  const res = create(SymmetricDecryptResponseSchema, { keyId: req.keyId, versionId: parsed.versionId, plaintext });
  callback(null, buf(toBinary(SymmetricDecryptResponseSchema, res)));
};

const generateDataKey: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  const req = fromBinary(GenerateDataKeyRequestSchema, call.request);
  const dataKey = cryptoRandom.bytes(32); // as kmsd does, through the Random port
  const dataKeyCiphertext = sealV1({ key: material, keyId: req.keyId, versionId, plaintext: dataKey, aadContext: buf(req.aadContext), random: cryptoRandom });
  const res = create(GenerateDataKeyResponseSchema, { keyId: req.keyId, versionId, dataKeyPlaintext: dataKey, dataKeyCiphertext });
  callback(null, buf(toBinary(GenerateDataKeyResponseSchema, res)));
};

// Bytes in and out, like kmsd's service definition: the handler decodes and encodes.
const passThrough = (name: string): grpc.MethodDefinition<Buffer, Buffer> => ({
  path: `/${SymmetricCryptoService.typeName}/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
});

mkdirSync(tlsDir, { recursive: true });
const tls = await ensureDevCertificates(tlsDir);

// The same message size limits kmsd sets (src/transport/grpc/grpc-server.ts).
const server = new grpc.Server({ 'grpc.max_receive_message_length': 256 * 1024, 'grpc.max_send_message_length': 4 * 1024 * 1024 });
server.addService(
  { encrypt: passThrough('Encrypt'), decrypt: passThrough('Decrypt'), generateDataKey: passThrough('GenerateDataKey') },
  { encrypt, decrypt, generateDataKey },
);

const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false);
server.bindAsync(addr, credentials, (err, port) => {
  if (err) {
    process.stderr.write(`baseline-grpc-server: cannot listen on ${addr}: ${err.message}\n`);
    process.exit(1);
  }
  const host = addr.slice(0, addr.lastIndexOf(':'));
  process.stdout.write(`${JSON.stringify({ event: 'ready', grpc: `${host}:${port}`, caFile: tls.caFile })}\n`);
});

process.once('SIGTERM', () => {
  const force = setTimeout(() => server.forceShutdown(), 5_000);
  force.unref();
  server.tryShutdown(() => process.exit(0));
});
