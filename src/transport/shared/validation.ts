import { getOption, hasOption, ScalarType, type DescField, type DescMessage, type Message } from '@bufbuild/protobuf';
import type { GenExtension } from '@bufbuild/protobuf/codegenv2';
import type { FieldOptions } from '@bufbuild/protobuf/wkt';
import { ERR } from '../../errors/kms-error.js';
import { length, map_key, pattern, required, size, value } from '../../gen/yandex/cloud/validation_pb.js';

// Request validation driven by the (yandex.cloud.*) field options in proto/ (SPEC.md §3.5): the
// limits are written once, in the wire contract, and enforced here for both transports. Each
// message type is compiled once into a list of checks. Violations are INVALID_ARGUMENT naming the
// field by its proto name.

type Check = (msg: Record<string, unknown>, path: string) => void;

interface Range {
  readonly min: number;
  readonly max: number;
}

/** "<=N" or "N-M" (SPEC.md §3.5). For (value), "<=N" means 0..N: every such field is a page size. */
function parseRange(spec: string): Range {
  const le = /^<=(\d+)$/.exec(spec);
  if (le) return { min: 0, max: Number(le[1]) };
  const between = /^(\d+)-(\d+)$/.exec(spec);
  if (between) return { min: Number(between[1]), max: Number(between[2]) };
  throw new Error(`unsupported validation range "${spec}"`);
}

const rangeText = (r: Range) => (r.min === 0 ? `at most ${r.max}` : `between ${r.min} and ${r.max}`);

/** Characters for strings (code points), bytes for bytes. */
function measure(v: string | Uint8Array): number {
  if (typeof v !== 'string') return v.length;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < v.length) i++;
    n++;
  }
  return n;
}

function lengthCheck(spec: string | undefined, unit: string): ((v: string | Uint8Array, where: string) => void) | undefined {
  if (!spec) return undefined;
  const r = parseRange(spec);
  return (v, where) => {
    // Fast path: a string never has more code points than UTF-16 units (minimums above 1 need a count).
    if (typeof v === 'string' && v.length <= r.max && r.min <= 1 && v.length >= r.min) return;
    const n = measure(v);
    if (n < r.min || n > r.max) throw ERR.field(where, `length must be ${rangeText(r)} ${unit}, got ${n}`);
  };
}

function patternCheck(spec: string | undefined): ((v: string, where: string) => void) | undefined {
  if (!spec) return undefined;
  const re = new RegExp(`^(?:${spec})$`);
  return (v, where) => {
    if (!re.test(v)) throw ERR.field(where, `must match ${spec}`);
  };
}

function fieldChecks(field: DescField): Check[] {
  const checks: Check[] = [];
  const name = field.name;
  const opt = <T>(ext: GenExtension<FieldOptions, T>): T | undefined => (hasOption(field, ext) ? getOption(field, ext) : undefined);
  const isRequired = opt(required) === true;
  const unit = field.fieldKind === 'scalar' && field.scalar === ScalarType.BYTES ? 'bytes' : 'characters';
  const len = lengthCheck(opt(length), unit);
  const pat = patternCheck(opt(pattern));
  const sizeSpec = opt(size);

  switch (field.fieldKind) {
    case 'scalar': {
      const valueSpec = opt(value);
      const valueRange = valueSpec ? parseRange(valueSpec) : undefined;
      checks.push((msg, path) => {
        const v = msg[field.localName];
        const where = path + name;
        if (typeof v === 'string' || v instanceof Uint8Array) {
          if (isRequired && v.length === 0) throw ERR.field(where, 'required');
          if (v.length > 0) len?.(v, where);
          if (typeof v === 'string' && v.length > 0) {
            // Both stores must hold every accepted value; PostgreSQL text cannot hold U+0000.
            if (v.includes('\u0000')) throw ERR.field(where, 'must not contain NUL characters');
            pat?.(v, where);
          }
        } else if (valueRange && (typeof v === 'bigint' || typeof v === 'number')) {
          if (v < valueRange.min || v > valueRange.max) throw ERR.field(where, `must be ${rangeText(valueRange)}`);
        }
      });
      break;
    }
    case 'enum': {
      const known = new Set(field.enum.values.map((e) => e.number));
      checks.push((msg, path) => {
        const v = msg[field.localName] as number;
        if (!known.has(v)) throw ERR.field(path + name, `unknown enum value ${v}`);
        if (isRequired && v === 0) throw ERR.field(path + name, 'required');
      });
      break;
    }
    case 'message': {
      const nested = compile(field.message);
      checks.push((msg, path) => {
        const v = msg[field.localName] as Record<string, unknown> | undefined;
        if (v === undefined) {
          if (isRequired) throw ERR.field(path + name, 'required');
          return;
        }
        nested(v, `${path}${name}.`);
      });
      break;
    }
    case 'list': {
      const sizeRange = sizeSpec ? parseRange(sizeSpec) : undefined;
      const nested = field.listKind === 'message' ? compile(field.message) : undefined;
      checks.push((msg, path) => {
        const items = msg[field.localName] as unknown[];
        if (isRequired && items.length === 0) throw ERR.field(path + name, 'required');
        if (sizeRange && (items.length < sizeRange.min || items.length > sizeRange.max)) {
          throw ERR.field(path + name, `must have ${rangeText(sizeRange)} items, got ${items.length}`);
        }
        if (nested) items.forEach((item, i) => nested(item as Record<string, unknown>, `${path}${name}[${i}].`));
      });
      break;
    }
    case 'map': {
      const sizeRange = sizeSpec ? parseRange(sizeSpec) : undefined;
      const keySpec = opt(map_key);
      const keyLen = lengthCheck(keySpec?.length || undefined, 'characters');
      const keyPat = patternCheck(keySpec?.pattern || undefined);
      checks.push((msg, path) => {
        const entries = Object.entries(msg[field.localName] as Record<string, unknown>);
        const where = path + name;
        if (sizeRange && (entries.length < sizeRange.min || entries.length > sizeRange.max)) {
          throw ERR.field(where, `must have ${rangeText(sizeRange)} entries, got ${entries.length}`);
        }
        for (const [k, v] of entries) {
          const at = `${where}[${JSON.stringify(k)}]`;
          keyLen?.(k, `${where} key ${JSON.stringify(k)}`);
          keyPat?.(k, `${where} key ${JSON.stringify(k)}`);
          if (typeof v === 'string') {
            len?.(v, at);
            pat?.(v, at);
          }
        }
      });
      break;
    }
  }
  return checks;
}

const compiled = new WeakMap<DescMessage, Check>();

function compile(desc: DescMessage): Check {
  const done = compiled.get(desc);
  if (done) return done;
  // Registered before the fields are compiled, so recursive message types terminate.
  const checks: Check[] = [];
  const check: Check = (msg, path) => {
    for (const c of checks) c(msg, path);
  };
  compiled.set(desc, check);
  for (const field of desc.fields) checks.push(...fieldChecks(field));
  return check;
}

/** Throws INVALID_ARGUMENT ("Request validation error: <field>: <problem>") on the first violation. */
export function validateRequest(desc: DescMessage, msg: Message): void {
  try {
    compile(desc)(msg as unknown as Record<string, unknown>, '');
  } catch (e) {
    if (e instanceof Error) e.message = `Request validation error: ${e.message}`;
    throw e;
  }
}
