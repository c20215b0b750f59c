import { fromJson, ScalarType, toJson, type DescField, type DescMessage, type JsonObject, type JsonValue, type Message } from '@bufbuild/protobuf';
import { ERR } from '../../errors/kms-error.js';
import { apiRegistry } from '../shared/api-methods.js';

// Request and response bodies are the canonical proto3 JSON of the API messages (SPEC.md §2.4),
// via @bufbuild/protobuf. This module adds what the Yandex REST gateway accepts beyond the strict
// mapping: snake_case update-mask paths, and request fields in the query string.

const DECODE_ERROR = /^cannot decode (?:field|message|enum) ([\w.]+?)(?: from JSON)?: (.*)$/s;

/** protobuf-es errors name the field but may quote the value; bytes values are never quoted back. */
function decodeError(desc: DescMessage, e: unknown): Error {
  const text = e instanceof Error ? e.message : String(e);
  const m = DECODE_ERROR.exec(text);
  if (!m) return ERR.invalidArgument('request body is not a valid message');
  const unknownKey = /^key "(.{0,100})" is unknown$/.exec(m[2]!);
  if (unknownKey) return ERR.invalidArgument(`unknown field "${unknownKey[1]}"`);
  const fieldName = m[1]!.startsWith(`${desc.typeName}.`) ? m[1]!.slice(desc.typeName.length + 1) : m[1]!;
  // Enum and well-known-type errors name the type ("google.protobuf.Duration"), not the field:
  // name the field when exactly one field of the request has that type.
  const ofType = desc.fields.filter(
    (f) => (f.fieldKind === 'enum' && f.enum.typeName === m[1]) || (f.fieldKind === 'message' && f.message.typeName === m[1]),
  );
  const field = desc.fields.find((f) => f.name === fieldName) ?? (ofType.length === 1 ? ofType[0] : undefined);
  if (field?.fieldKind === 'scalar' && field.scalar === ScalarType.BYTES) return ERR.field(field.name, 'must be a base64 string');
  return ERR.field(field ? field.name : m[1]!, m[2]!.slice(0, 200));
}

function snakeToCamel(path: string): string {
  return path.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function normalizeMasks(desc: DescMessage, json: JsonObject): void {
  for (const field of desc.fields) {
    if (field.fieldKind !== 'message' || field.message.typeName !== 'google.protobuf.FieldMask') continue;
    for (const name of [field.jsonName, field.name]) {
      const v = json[name];
      if (typeof v === 'string') json[name] = v.split(',').map((p) => p.trim()).map(snakeToCamel).join(',');
    }
  }
}

function fieldByName(desc: DescMessage, name: string): DescField | undefined {
  return desc.fields.find((f) => f.jsonName === name || f.name === name);
}

export function messageFromJson<D extends DescMessage>(desc: D, json: JsonValue): Message {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw ERR.invalidArgument('request body must be a JSON object');
  normalizeMasks(desc, json);
  try {
    return fromJson(desc, json, { registry: apiRegistry, ignoreUnknownFields: false }) as Message;
  } catch (e) {
    throw decodeError(desc, e);
  }
}

/** Query parameters → the JSON form of the same fields; unknown parameters are ignored (SPEC.md §2.4). */
export function jsonFromQuery(desc: DescMessage, query: Record<string, string | string[] | undefined>): JsonObject {
  const json: JsonObject = {};
  for (const [name, raw] of Object.entries(query)) {
    const field = fieldByName(desc, name);
    if (!field || raw === undefined) continue;
    const value = Array.isArray(raw) ? raw[raw.length - 1]! : raw;
    if (field.fieldKind === 'scalar' && field.scalar === ScalarType.BOOL) json[field.jsonName] = value === 'true' ? true : value === 'false' ? false : value;
    else if (field.fieldKind === 'enum' && /^\d+$/.test(value)) json[field.jsonName] = Number(value);
    else json[field.jsonName] = value;
  }
  return json;
}

export function messageToJson(desc: DescMessage, msg: Message): JsonValue {
  return toJson(desc, msg as never, { registry: apiRegistry });
}
