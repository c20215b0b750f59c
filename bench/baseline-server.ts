import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cryptoRandom } from '../src/adapters/random.js';
import { openV1, parseCiphertextV1, sealV1 } from '../src/crypto/ciphertext-v1.js';
import { SecretBytes } from '../src/crypto/secret-bytes.js';

// The baseline for bench/run.ts: a bare node:http server doing the irreducible work of kmsd's
// REST Encrypt, Decrypt and GenerateDataKey — read and parse the JSON body, base64-decode the fields, seal
// with the very same sealV1 (12-byte CSPRNG nonce, same header and AAD construction), answer
// JSON with base64 fields (Decrypt: parse the v1 header, open with the very same openV1). No framework, no auth, no validation, no store, no key lookup.
//
//   node --import tsx bench/baseline-server.ts [--addr 127.0.0.1:0]
//
// Prints {"event":"ready","rest":"HOST:PORT"} on stdout like kmsd; SIGTERM stops it (exit 0).

const addrArg = process.argv.indexOf('--addr');
const [host, portText] = (addrArg >= 0 ? process.argv[addrArg + 1]! : '127.0.0.1:0').split(':') as [string, string];

const PREFIX = '/kms/v1/keys/';
const ID_ALPHABET = '0123456789abcdefghijklmnopqrstuv';
const fakeId = () => `abj${Array.from(randomBytes(17), (b) => ID_ALPHABET[b & 31]).join('')}`;

// One key version, shaped like kmsd's (20-character ids), so headers, AAD and responses have the same sizes.
const versionId = fakeId();
const material = new SecretBytes(randomBytes(32));

type Handler = (keyId: string, body: Record<string, unknown>) => Record<string, string>;

const b64 = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : '', 'base64');

const handlers = new Map<string, Handler>([
  [
    'generateDataKey',
    (keyId, body) => {
      const dataKey = cryptoRandom.bytes(32); // as kmsd does, through the Random port
      const ciphertext = sealV1({ key: material, keyId, versionId, plaintext: dataKey, aadContext: b64(body.aadContext), random: cryptoRandom });
      return { keyId, versionId, dataKeyPlaintext: dataKey.toString('base64'), dataKeyCiphertext: ciphertext.toString('base64') };
    },
  ],
  [
    'encrypt',
    (keyId, body) => {
      const ciphertext = sealV1({ key: material, keyId, versionId, plaintext: b64(body.plaintext), aadContext: b64(body.aadContext), random: cryptoRandom });
      return { keyId, versionId, ciphertext: ciphertext.toString('base64') };
    },
  ],
  [
    'decrypt',
    (keyId, body) => {
      const parsed = parseCiphertextV1(b64(body.ciphertext));
      const plaintext = openV1({ key: material, keyId, parsed, aadContext: b64(body.aadContext) });
      return { keyId, versionId: parsed.versionId, plaintext: plaintext.toString('base64') };
    },
  ],
]);

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
  // /kms/v1/keys/{keyId}:{verb}
  const url = req.url ?? '';
  const colon = url.lastIndexOf(':');
  const handler = req.method === 'POST' && url.startsWith(PREFIX) && colon > PREFIX.length ? handlers.get(url.slice(colon + 1)) : undefined;
  if (!handler) {
    reply(res, 404, { code: 5, message: 'not found' });
    return;
  }
  let body: Record<string, unknown>;
  try {
    body = (JSON.parse(raw.toString('utf8')) as Record<string, unknown> | null) ?? {};
  } catch {
    reply(res, 400, { code: 3, message: 'bad json' });
    return;
  }
  let answer: Record<string, string>;
  try {
    answer = handler(url.slice(PREFIX.length, colon), body);
  } catch {
    reply(res, 400, { code: 3, message: 'invalid ciphertext' });
    return;
  }
  reply(res, 200, answer);
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => handle(req, res, Buffer.concat(chunks)));
});

server.listen(Number(portText), host, () => {
  const a = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ event: 'ready', rest: `${a.address}:${a.port}` })}\n`);
});

process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
