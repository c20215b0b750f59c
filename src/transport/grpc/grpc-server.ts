import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';
import type * as Reflection from '@grpc/reflection';
import type * as Health from 'grpc-health-check';
import { fromBinary, toBinary, type DescMessage, type Message } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { ERR } from '../../errors/kms-error.js';
import type { CallRunner } from '../shared/call-runner.js';
import type { ApiMethod } from '../shared/api-methods.js';
import { publicError } from '../shared/status.js';
import { idempotencyKeyFrom, requestIdFrom } from '../shared/request-metadata.js';
import { addDeferredService, type DeferredMethod, type Registrar } from './deferred-service.js';

// The gRPC transport (always TLS, as the official SDK only speaks TLS): a thin shell over the same
// method table as REST. Requests are decoded inside the handler, so malformed bytes get a clean
// INVALID_ARGUMENT instead of the library's INTERNAL. Every call sends its request id as initial
// metadata before the answer, so the SDK's ApiError carries x-request-id (SPEC.md §2.2, §12.20).

/** Large enough for any valid request (a 32 KiB plaintext, a ciphertext of it, two 8 KiB AADs). */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;

const PROTO_DIR = fileURLToPath(new URL('../../../proto', import.meta.url));
const REFLECTED_FILES = [
  'yandex/cloud/kms/v1/symmetric_key_service.proto',
  'yandex/cloud/kms/v1/symmetric_crypto_service.proto',
  'yandex/cloud/operation/operation_service.proto',
  'yandex/cloud/access/access.proto',
];

export interface GrpcServerDeps {
  readonly methods: readonly ApiMethod[];
  readonly calls: CallRunner;
  readonly logger: Logger;
  readonly tls: { readonly cert: Buffer; readonly key: Buffer };
  readonly maxMessageBytes?: number;
}

export interface RunningGrpcServer {
  readonly address: string;
  close(): Promise<void>;
}

const firstString = (md: grpc.Metadata, name: string): string | undefined => {
  const v = md.get(name)[0];
  return typeof v === 'string' ? v : undefined;
};

/** grpc-js names peers `ipv4:127.0.0.1:5000` or `ipv6:[::1]:5000`; the audit log and the rate limit want the address. */
export function peerAddress(peer: string): string {
  const m = /^(?:ipv4:|ipv6:)?\[?([^\]]*?)\]?:\d+$/.exec(peer);
  return m ? m[1]! : peer;
}

function decode(desc: DescMessage, bytes: Buffer): Message {
  try {
    return fromBinary(desc, bytes);
  } catch {
    throw ERR.invalidArgument(`request is not a valid ${desc.typeName} message`);
  }
}

function handlerFor(api: ApiMethod, d: GrpcServerDeps): grpc.handleUnaryCall<Buffer, Buffer> {
  const mutating = api.method.output.typeName === 'yandex.cloud.operation.Operation';
  return (call, callback) => {
    const requestId = requestIdFrom(firstString(call.metadata, 'x-request-id'));
    // The response headers go out with the answer, in the same write: sent now, they would be a
    // write (and a TLS record) of their own while the call waits for its audit record.
    const sendHead = () => {
      const head = new grpc.Metadata();
      head.set('x-request-id', requestId);
      head.set('x-server-trace-id', requestId);
      call.sendMetadata(head);
    };
    (async () => {
      const key = mutating ? idempotencyKeyFrom(firstString(call.metadata, 'idempotency-key')) : undefined;
      const response = await d.calls.run(
        {
          event: api.auditEvent,
          method: api.fullName,
          authorization: firstString(call.metadata, 'authorization'),
          peer: peerAddress(call.getPeer()),
          requestId,
          transport: 'grpc',
          ...(key === undefined ? {} : { idempotencyKey: key }),
        },
        (ctx) => api.invoke(ctx, decode(api.method.input, call.request)),
      );
      return Buffer.from(toBinary(api.method.output, response));
    })().then(
      (bytes) => {
        sendHead();
        callback(null, bytes);
      },
      (err: unknown) => {
        sendHead();
        const pub = publicError(err, requestId);
        if (pub.serverFault) d.logger.error({ err, requestId, method: api.method.name }, 'request failed');
        const trailer = new grpc.Metadata();
        trailer.set('x-request-id', requestId);
        callback({ code: pub.code as number as grpc.status, details: pub.message, metadata: trailer });
      },
    );
  };
}

function serviceDefinition(methods: readonly ApiMethod[]): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  for (const { method } of methods) {
    definition[method.localName] = {
      path: `/${method.parent.typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      // Bytes pass through untouched; the handler decodes them so it can answer malformed input.
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    };
  }
  return definition as grpc.ServiceDefinition;
}

// The reflection and health libraries are CommonJS, loaded synchronously on their first call
// (deferred-service.ts): a request's deserializer may be the first to need them.
const require = createRequire(import.meta.url);

const REFLECTION_METHODS: readonly DeferredMethod[] = ['v1', 'v1alpha'].map((v) => ({
  path: `/grpc.reflection.${v}.ServerReflection/ServerReflectionInfo`,
  requestStream: true,
  responseStream: true,
}));

function reflection(): Registrar {
  const { loadSync } = require('@grpc/proto-loader') as typeof ProtoLoader;
  const { ReflectionService } = require('@grpc/reflection') as typeof Reflection;
  return new ReflectionService(loadSync(REFLECTED_FILES, { includeDirs: [PROTO_DIR], keepCase: true }));
}

const HEALTH_METHODS: readonly DeferredMethod[] = [
  { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false },
  { path: '/grpc.health.v1.Health/Watch', requestStream: false, responseStream: true },
  { path: '/grpc.health.v1.Health/List', requestStream: false, responseStream: false },
];

/** grpc.health.v1.Health: the statuses are kept here until the first health call loads the library. */
class DeferredHealth {
  private readonly statuses = new Map<string, Health.ServingStatus>();
  private implementation: Health.HealthImplementation | undefined;

  setStatus(service: string, status: Health.ServingStatus): void {
    this.statuses.set(service, status);
    this.implementation?.setStatus(service, status);
  }

  registrar(): Registrar {
    const { HealthImplementation } = require('grpc-health-check') as typeof Health;
    this.implementation ??= new HealthImplementation(Object.fromEntries(this.statuses));
    return this.implementation as unknown as Registrar;
  }
}

export async function startGrpcServer(d: GrpcServerDeps, host: string, port: number): Promise<RunningGrpcServer> {
  const max = d.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  const byService = new Map<string, ApiMethod[]>();
  for (const m of d.methods) byService.set(m.method.parent.typeName, [...(byService.get(m.method.parent.typeName) ?? []), m]);
  const health = new DeferredHealth();
  health.setStatus('', 'SERVING');
  for (const [serviceName, methods] of byService) {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const m of methods) impl[m.method.localName] = handlerFor(m, d);
    server.addService(serviceDefinition(methods), impl);
    health.setStatus(serviceName, 'SERVING');
  }
  addDeferredService(server, HEALTH_METHODS, () => health.registrar());
  addDeferredService(server, REFLECTION_METHODS, reflection);

  const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: d.tls.cert, private_key: d.tls.key }], false);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  const address = host.includes(':') ? `[${host}]:${bound}` : `${host}:${bound}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        health.setStatus('', 'NOT_SERVING');
        // Drain in-flight calls, but do not wait forever on a client that keeps a stream open.
        const force = setTimeout(() => server.forceShutdown(), 10_000);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
