import { getOption, hasOption, type DescMethod } from '@bufbuild/protobuf';
import { http } from '../../gen/google/api/annotations_pb.js';
import type { HttpRule } from '../../gen/google/api/http_pb.js';

// The REST surface is read from the google.api.http annotations in proto/, so every path is
// declared once, next to the RPC it transcodes (SPEC.md §2.4).
//
// Custom methods end their last segment with ":verb" (`/kms/v1/keys/{key_id}:encrypt`). Fastify's
// router cannot tell `/:id:encrypt` from `/:id:decrypt`, so one route is registered per path shape
// (`/kms/v1/keys/:key_id`) and the verb is split off the last segment here, at its last ':'.

export type HttpVerb = 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT';

export interface HttpBinding {
  readonly method: DescMethod;
  readonly verb: HttpVerb;
  /** The fastify route path with positional parameters, e.g. `/kms/v1/keys/:p0`. */
  readonly routePath: string;
  /** Proto field names bound to the path parameters p0, p1, … in order. */
  readonly pathFields: readonly string[];
  /** The custom method after ':' in the last segment, if any. */
  readonly customVerb?: string;
  /** True when the request body maps onto the message (`body: "*"`); else fields come from the query. */
  readonly bodyIsMessage: boolean;
}

function rulesOf(method: DescMethod): HttpRule[] {
  if (!hasOption(method, http)) return [];
  const rule = getOption(method, http);
  return [rule, ...rule.additionalBindings];
}

function bindingOf(method: DescMethod, rule: HttpRule): HttpBinding {
  const { case: verbCase, value: template } = rule.pattern;
  if (verbCase === undefined) throw new Error(`${method.name}: http rule without a path`);
  const segments = template.split('/');
  const last = segments[segments.length - 1]!;
  const colon = last.lastIndexOf(':');
  const customVerb = colon > last.lastIndexOf('}') ? last.slice(colon + 1) : undefined;
  if (customVerb !== undefined) segments[segments.length - 1] = last.slice(0, colon);
  const pathFields: string[] = [];
  const routePath = segments
    .map((s) => {
      const m = /^\{([a-z_]+)\}$/.exec(s);
      if (!m) return s;
      // Positional names: `{key_id}` and `{resource_id}` in the same place are the same route.
      pathFields.push(m[1]!);
      return `:p${pathFields.length - 1}`;
    })
    .join('/');
  if (customVerb !== undefined && !routePath.endsWith(`:p${pathFields.length - 1}`)) {
    throw new Error(`${method.name}: a custom verb must follow a path parameter`);
  }
  return {
    method,
    verb: verbCase.toUpperCase() as HttpVerb,
    routePath,
    pathFields,
    ...(customVerb === undefined ? {} : { customVerb }),
    bodyIsMessage: rule.body === '*',
  };
}

export function httpBindings(methods: readonly DescMethod[]): HttpBinding[] {
  return methods.flatMap((m) => rulesOf(m).map((r) => bindingOf(m, r)));
}

/** Splits a last path segment `abc:encrypt` into the id and the verb, at the last ':'. */
export function splitCustomVerb(segment: string): { value: string; verb?: string } {
  const colon = segment.lastIndexOf(':');
  return colon < 0 ? { value: segment } : { value: segment.slice(0, colon), verb: segment.slice(colon + 1) };
}
