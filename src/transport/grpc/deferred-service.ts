import type * as grpc from '@grpc/grpc-js';

// A gRPC service whose implementation is loaded on its first call, not at start: server
// reflection and the health service come from libraries that compile .proto files with
// protobufjs when they load, which cost kmsd's start a few hundred milliseconds (issue #7: ready in
// under 1 s) for services most runs never call. The server registers each method with its path and
// streaming kind, which are fixed; its (de)serializers and handler load the library on first use
// and pass through to what the library's own addToServer would have registered, so callers see
// the library's behaviour unchanged.

/** A method of a deferred service: its full path and whether each side streams. */
export interface DeferredMethod {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** What a library registers: `addToServer(server)`, as @grpc/reflection and grpc-health-check have. */
export interface Registrar {
  addToServer(server: Pick<grpc.Server, 'addService'>): void;
}

type Loaded = Map<string, { readonly definition: grpc.MethodDefinition<unknown, unknown>; readonly handler: grpc.UntypedHandleCall }>;

/**
 * Adds `methods` to `server`; `load` makes the library's registrar on the first call of any of
 * them (synchronously: a deserializer may be the first to need it). Throws at that first call if
 * the library does not register exactly these methods.
 */
export function addDeferredService(server: grpc.Server, methods: readonly DeferredMethod[], load: () => Registrar): void {
  let loaded: Loaded | undefined;
  const get = (path: string) => {
    if (!loaded) {
      const registered: Loaded = new Map();
      load().addToServer({
        addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
          for (const [name, definition] of Object.entries(service)) {
            const handler = implementation[name] ?? implementation[definition.originalName ?? ''];
            if (handler) registered.set(definition.path, { definition, handler });
          }
        },
      });
      loaded = registered;
    }
    const method = loaded.get(path);
    if (!method) throw new Error(`the deferred gRPC service registered no ${path}`);
    return method;
  };
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const m of methods) {
    // Keyed by path: reflection's v1 and v1alpha methods share their name.
    const name = m.path;
    definition[name] = {
      path: m.path,
      requestStream: m.requestStream,
      responseStream: m.responseStream,
      requestSerialize: (value) => get(m.path).definition.requestSerialize(value),
      requestDeserialize: (bytes) => get(m.path).definition.requestDeserialize(bytes),
      responseSerialize: (value) => get(m.path).definition.responseSerialize(value),
      responseDeserialize: (bytes) => get(m.path).definition.responseDeserialize(bytes),
    };
    implementation[name] = ((call: unknown, callback: unknown) => (get(m.path).handler as (call: unknown, callback: unknown) => void)(call, callback)) as grpc.UntypedHandleCall;
  }
  server.addService(definition as grpc.ServiceDefinition, implementation);
}
