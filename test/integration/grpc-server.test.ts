// The gRPC listener as a raw @grpc/grpc-js client sees it (SPEC.md §2.2, §2.3, §5): TLS only — a
// plaintext connection is refused cleanly and the server stays healthy; malformed protobuf bytes are
// INVALID_ARGUMENT, an oversized request RESOURCE_EXHAUSTED, and the same channel keeps working;
// the standard health service and server reflection; x-request-id in the initial metadata.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { service as healthService } from 'grpc-health-check';
import {
  SymmetricDecryptRequestSchema,
  SymmetricDecryptResponseSchema,
  SymmetricEncryptRequestSchema,
  SymmetricEncryptResponseSchema,
} from '../../src/gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { SymmetricKeySchema } from '../../src/gen/yandex/cloud/kms/v1/symmetric_key_pb.js';
import { GetSymmetricKeyRequestSchema } from '../../src/gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import { createKey, freshFolder, type SymmetricKey } from '../helpers/api.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KEY_SVC = 'yandex.cloud.kms.v1.SymmetricKeyService';
const CRYPTO_SVC = 'yandex.cloud.kms.v1.SymmetricCryptoService';
const OP_SVC = 'yandex.cloud.operation.OperationService';
const GET = `/${KEY_SVC}/Get`;
const ENCRYPT = `/${CRYPTO_SVC}/Encrypt`;
const DECRYPT = `/${CRYPTO_SVC}/Decrypt`;
const MAX_MESSAGE = 256 * 1024;

interface Answer {
  readonly error?: grpc.ServiceError;
  readonly bytes?: Buffer;
  /** The initial metadata, if the server sent any. */
  readonly header?: grpc.Metadata;
}

const identity = (b: Buffer): Buffer => b;

/** One unary call with raw bytes in and out, recording the initial metadata. */
function unary(client: grpc.Client, path: string, request: Buffer | Uint8Array, metadata = new grpc.Metadata()): Promise<Answer> {
  return new Promise((resolve) => {
    let header: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(path, identity, identity, Buffer.from(request), metadata, { deadline: Date.now() + 10_000 }, (error, bytes) =>
      resolve({ ...(error ? { error } : {}), ...(bytes ? { bytes } : {}), ...(header ? { header } : {}) }),
    );
    call.on('metadata', (md: grpc.Metadata) => (header = md));
  });
}

function expectCode(answer: Answer, code: grpc.status, details?: string | RegExp): grpc.ServiceError {
  assert.ok(answer.error, `expected ${grpc.status[code]}, got a response`);
  assert.equal(answer.error.code, code, `${grpc.status[answer.error.code]}: ${answer.error.details}`);
  if (typeof details === 'string') assert.equal(answer.error.details, details);
  else if (details) assert.match(answer.error.details, details);
  return answer.error;
}

describe('gRPC listener (raw grpc-js client)', () => {
  let kmsd: KmsdProcess;
  let address: string;
  let port: number;
  let ca: Buffer;
  let client: grpc.Client;
  let key: SymmetricKey;

  const auth = (extra: Record<string, string> = {}): grpc.Metadata => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${kmsd.token}`);
    for (const [k, v] of Object.entries(extra)) md.set(k, v);
    return md;
  };
  const tls = (): grpc.Client => new grpc.Client(address, grpc.credentials.createSsl(ca));
  const getKey = (c: grpc.Client, keyId: string, md = auth()) => unary(c, GET, toBinary(GetSymmetricKeyRequestSchema, create(GetSymmetricKeyRequestSchema, { keyId })), md);

  /** A TLS call that must work: the server is healthy. */
  async function assertServes(c: grpc.Client = client): Promise<void> {
    const answer = await getKey(c, key.id);
    assert.equal(answer.error, undefined, answer.error?.details);
    assert.equal(fromBinary(SymmetricKeySchema, answer.bytes!).id, key.id);
    assert.ok(kmsd.running, 'kmsd is still running');
  }

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
    address = ready.grpc;
    port = Number(address.slice(address.lastIndexOf(':') + 1));
    ca = readFileSync(ready.caFile);
    client = tls();
    key = await createKey(kmsd, { folderId: freshFolder() });
  });
  after(async () => {
    client?.close();
    // No request was logged as a server fault (pino level 50 = error).
    const faults = kmsd?.stderr.split('\n').filter((l) => l.includes('"level":50')) ?? [];
    await kmsd?.dispose();
    assert.deepEqual(faults, []);
  });

  describe('TLS only', () => {
    it('a plaintext gRPC client is refused promptly with UNAVAILABLE, and later TLS calls work', async () => {
      const plain = new grpc.Client(address, grpc.credentials.createInsecure());
      try {
        const started = Date.now();
        expectCode(await getKey(plain, key.id), grpc.status.UNAVAILABLE);
        assert.ok(Date.now() - started < 5_000, 'refused, not left hanging until the deadline');
      } finally {
        plain.close();
      }
      await assertServes();
    });

    it('a plaintext HTTP/2 preface on the raw socket gets the connection closed without an HTTP/2 answer', async () => {
      const received: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error('the server kept a plaintext connection open for 5 s'));
        }, 5_000);
        socket.on('data', (d: Buffer) => received.push(d));
        socket.on('error', () => undefined); // a reset counts as closed
        socket.on('close', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      });
      const bytes = Buffer.concat(received);
      // Nothing, or a TLS alert record (content type 21): never an HTTP/2 SETTINGS frame.
      assert.ok(bytes.length === 0 || bytes[0] === 21, `unexpected answer ${bytes.subarray(0, 16).toString('hex')}`);
      await assertServes();
    });

    it('a client that does not trust kmsd\'s CA cannot connect', async () => {
      const untrusting = new grpc.Client(address, grpc.credentials.createSsl());
      try {
        expectCode(await getKey(untrusting, key.id), grpc.status.UNAVAILABLE, /certificate/);
      } finally {
        untrusting.close();
      }
    });
  });

  describe('bad requests on the wire', () => {
    const garbage: [string, number[]][] = [
      ['an invalid tag', [0xff]],
      ['a length past the end', [0x0a, 0x05, 0x61]],
      ['an unterminated group', [0x0b]],
      ['a stray end-group tag', [0x0c]],
      ['an overlong varint length', [0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
      ['a varint where key_id (a string) belongs', [0x08, 0x01]],
      ['invalid UTF-8 in key_id', [0x0a, 0x02, 0xc3, 0x28]],
    ];
    for (const [what, bytes] of garbage) {
      it(`malformed protobuf (${what}) is INVALID_ARGUMENT, and the same channel keeps working`, async () => {
        const answer = await unary(client, GET, Buffer.from(bytes), auth());
        expectCode(answer, grpc.status.INVALID_ARGUMENT, 'request is not a valid yandex.cloud.kms.v1.GetSymmetricKeyRequest message');
        assert.match(String(answer.header?.get('x-request-id')[0]), UUID_RE, 'initial metadata is sent before the error');
        await assertServes();
      });
    }

    it('random bytes to every crypto method are INVALID_ARGUMENT naming the request type', async () => {
      const junk = Buffer.from([0x12, 0x7f, 0x01, 0x02]);
      for (const method of ['Encrypt', 'Decrypt', 'ReEncrypt', 'GenerateDataKey']) {
        const answer = await unary(client, `/${CRYPTO_SVC}/${method}`, junk, auth());
        expectCode(answer, grpc.status.INVALID_ARGUMENT, /^request is not a valid yandex\.cloud\.kms\.v1\.\w+Request message$/);
      }
      await assertServes();
    });

    it('a request over 256 KiB is RESOURCE_EXHAUSTED, and the next call on the same channel works', async () => {
      const oversized = toBinary(
        SymmetricEncryptRequestSchema,
        create(SymmetricEncryptRequestSchema, { keyId: key.id, plaintext: Buffer.alloc(MAX_MESSAGE + 1024, 1) }),
      );
      assert.ok(oversized.length > MAX_MESSAGE);
      expectCode(await unary(client, ENCRYPT, oversized, auth()), grpc.status.RESOURCE_EXHAUSTED, /larger than max/);
      await assertServes();

      // Just under the limit the request is read and judged by the API's own rules instead.
      const large = toBinary(
        SymmetricDecryptRequestSchema,
        create(SymmetricDecryptRequestSchema, { keyId: key.id, ciphertext: Buffer.alloc(MAX_MESSAGE - 1024, 1) }),
      );
      assert.ok(large.length < MAX_MESSAGE);
      expectCode(await unary(client, DECRYPT, large, auth()), grpc.status.INVALID_ARGUMENT);

      // And a valid call with a 32 KiB plaintext (the API's maximum) round-trips on the same channel.
      const plaintext = Buffer.alloc(32_768, 7);
      const enc = await unary(client, ENCRYPT, toBinary(SymmetricEncryptRequestSchema, create(SymmetricEncryptRequestSchema, { keyId: key.id, plaintext })), auth());
      assert.equal(enc.error, undefined, enc.error?.details);
      const { ciphertext } = fromBinary(SymmetricEncryptResponseSchema, enc.bytes!);
      const dec = await unary(client, DECRYPT, toBinary(SymmetricDecryptRequestSchema, create(SymmetricDecryptRequestSchema, { keyId: key.id, ciphertext })), auth());
      assert.equal(dec.error, undefined, dec.error?.details);
      assert.deepEqual(Buffer.from(fromBinary(SymmetricDecryptResponseSchema, dec.bytes!).plaintext), plaintext);
    });

    it('an unknown method is UNIMPLEMENTED; a call without a token is UNAUTHENTICATED', async () => {
      expectCode(await unary(client, `/${KEY_SVC}/NoSuchMethod`, Buffer.alloc(0), auth()), grpc.status.UNIMPLEMENTED);
      expectCode(await getKey(client, key.id, new grpc.Metadata()), grpc.status.UNAUTHENTICATED);
      expectCode(await getKey(client, key.id, auth({ authorization: 'Bearer nope' })), grpc.status.UNAUTHENTICATED);
      await assertServes();
    });
  });

  describe('x-request-id', () => {
    it('a client-sent x-request-id is echoed in the initial metadata, with x-server-trace-id', async () => {
      const ok = await getKey(client, key.id, auth({ 'x-request-id': 'raw-client-1' }));
      assert.equal(ok.error, undefined);
      assert.deepEqual(ok.header?.get('x-request-id'), ['raw-client-1']);
      assert.deepEqual(ok.header?.get('x-server-trace-id'), ['raw-client-1']);

      const failed = await getKey(client, 'abj00000000000000000', auth({ 'x-request-id': 'raw-client-2' }));
      const error = expectCode(failed, grpc.status.NOT_FOUND);
      assert.deepEqual(failed.header?.get('x-request-id'), ['raw-client-2'], 'in the initial metadata before the error');
      assert.deepEqual(error.metadata.get('x-request-id'), ['raw-client-2'], 'and in the trailers');

      const unauthenticated = await getKey(client, key.id, auth({ authorization: '', 'x-request-id': 'raw-client-3' }));
      expectCode(unauthenticated, grpc.status.UNAUTHENTICATED);
      assert.deepEqual(unauthenticated.header?.get('x-request-id'), ['raw-client-3']);
    });

    it('without one (or with an unusable one) the server generates a fresh UUID per call', async () => {
      const ids = new Set<string>();
      for (const md of [auth(), auth(), auth({ 'x-request-id': 'spaces are not allowed' }), auth({ 'x-request-id': 'x'.repeat(129) })]) {
        const answer = await getKey(client, key.id, md);
        assert.equal(answer.error, undefined);
        const id = String(answer.header?.get('x-request-id')[0]);
        assert.match(id, UUID_RE);
        ids.add(id);
      }
      assert.equal(ids.size, 4);
    });
  });

  describe('health and reflection', () => {
    const Health = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');

    it('grpc.health.v1.Health/Check answers SERVING for the server and each service, NOT_FOUND for others', async () => {
      const health = new Health(address, grpc.credentials.createSsl(ca)) as unknown as grpc.Client & {
        check(request: { service: string }, callback: (err: grpc.ServiceError | null, res?: { status: string }) => void): grpc.ClientUnaryCall;
      };
      const check = (service: string) =>
        new Promise<{ err: grpc.ServiceError | null; res?: { status: string } }>((resolve) => health.check({ service }, (err, res) => resolve({ err, ...(res ? { res } : {}) })));
      try {
        for (const service of ['', KEY_SVC, CRYPTO_SVC, OP_SVC]) {
          const { err, res } = await check(service);
          assert.equal(err, null, `${service || '(server)'}: ${err?.details}`);
          assert.deepEqual(res, { status: 'SERVING' }, service || '(server)');
        }
        const { err } = await check('no.such.Service');
        assert.equal(err?.code, grpc.status.NOT_FOUND);
      } finally {
        health.close();
      }
    });

    it('grpc.health.v1.Health/Watch streams the server\'s status, and List lists every service', async () => {
      const health = new Health(address, grpc.credentials.createSsl(ca)) as unknown as grpc.Client & {
        watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
        list(request: object, callback: (err: grpc.ServiceError | null, res?: { statuses: Record<string, { status: string }> }) => void): grpc.ClientUnaryCall;
      };
      try {
        const watch = health.watch({ service: '' });
        const first = await new Promise<{ status: string }>((resolve, reject) => watch.once('data', resolve).once('error', reject));
        assert.deepEqual(first, { status: 'SERVING' });
        watch.cancel();
        const listed = await new Promise<Record<string, { status: string }>>((resolve, reject) => health.list({}, (err, res) => (err ? reject(err) : resolve(res!.statuses))));
        for (const service of ['', KEY_SVC, CRYPTO_SVC, OP_SVC]) assert.deepEqual(listed[service], { status: 'SERVING' }, service || '(server)');
      } finally {
        health.close();
      }
    });

    for (const version of ['v1alpha', 'v1'] as const) {
      it(`server reflection (${version}) lists the three services and serves their descriptors`, async () => {
        const reflectionDir = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto');
        const definition = loadSync(join(reflectionDir, `grpc/reflection/${version}/reflection.proto`), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
        const pkg = grpc.loadPackageDefinition(definition) as unknown as {
          grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> };
        };
        const Reflection = pkg.grpc.reflection[version]!.ServerReflection;
        const reflection = new Reflection(address, grpc.credentials.createSsl(ca));
        interface ReflectionResponse {
          list_services_response?: { service: { name: string }[] };
          file_descriptor_response?: { file_descriptor_proto: Buffer[] };
          error_response?: { error_code: number; error_message: string };
        }
        const ask = (request: object): Promise<ReflectionResponse> =>
          new Promise((resolve, reject) => {
            const stream = (reflection as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> }).ServerReflectionInfo();
            stream.once('data', (res: ReflectionResponse) => {
              resolve(res);
              stream.end();
            });
            stream.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
            stream.write(request);
          });
        try {
          const listed = await ask({ list_services: '' });
          const names = listed.list_services_response?.service.map((s) => s.name) ?? [];
          for (const name of [KEY_SVC, CRYPTO_SVC, OP_SVC]) assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);

          const files = await ask({ file_containing_symbol: CRYPTO_SVC });
          const descriptors = (files.file_descriptor_response?.file_descriptor_proto ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b));
          const declaring = descriptors.find((f) => f.package === 'yandex.cloud.kms.v1' && f.service.some((s) => s.name === 'SymmetricCryptoService'));
          assert.ok(declaring, `a descriptor declaring ${CRYPTO_SVC} among ${descriptors.map((f) => f.name).join(', ')}`);
          assert.deepEqual(
            declaring.service.find((s) => s.name === 'SymmetricCryptoService')!.method.map((m) => [m.name, m.inputType, m.outputType]),
            [
              ['Encrypt', '.yandex.cloud.kms.v1.SymmetricEncryptRequest', '.yandex.cloud.kms.v1.SymmetricEncryptResponse'],
              ['Decrypt', '.yandex.cloud.kms.v1.SymmetricDecryptRequest', '.yandex.cloud.kms.v1.SymmetricDecryptResponse'],
              ['ReEncrypt', '.yandex.cloud.kms.v1.SymmetricReEncryptRequest', '.yandex.cloud.kms.v1.SymmetricReEncryptResponse'],
              ['GenerateDataKey', '.yandex.cloud.kms.v1.GenerateDataKeyRequest', '.yandex.cloud.kms.v1.GenerateDataKeyResponse'],
            ],
          );
          const unknown = await ask({ file_containing_symbol: 'no.such.Symbol' });
          assert.equal(unknown.error_response?.error_code, grpc.status.NOT_FOUND);
        } finally {
          reflection.close();
        }
      });
    }
  });
});
