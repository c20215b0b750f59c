import pg from 'pg';
import { rowMapping, type KeyRow as Key, type KeyWithVersionRow as KeyWithVersion, type OperationRow as Op, type VersionRow as Version } from '../store-rows/row-mapping.js';

// PostgreSQL has real booleans; BIGINT columns arrive as numbers and JSON columns as their text
// (see TYPE_PARSERS), so rows map exactly as in ../store-rows/row-mapping.ts.

export type KeyRow = Key<boolean>;
export type VersionRow = Version<boolean>;
export type KeyWithVersionRow = KeyWithVersion<boolean>;
export type OperationRow = Op<boolean>;
export type { BindingRow, PrincipalRow, TokenRow } from '../store-rows/row-mapping.js';
export { bindingToRow, rowToBinding } from '../store-rows/row-mapping.js';

const INT8_OID = 20;
const JSON_OID = 114;
const JSONB_OID = 3802;

/** BIGINT as a JavaScript number; a value beyond 2^53 fails the query rather than losing digits. */
export function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`BIGINT ${text} is not a safe integer`);
  return n;
}

/**
 * The pool's type parsers (pg's global ones are left alone): BIGINT (times, revisions, counts)
 * as numbers, JSON as its text for row-mapping to parse, everything else as pg parses it (BYTEA as
 * a fresh Buffer, BOOLEAN as boolean).
 */
export const TYPE_PARSERS: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (format === undefined || format === 'text') {
      if (oid === INT8_OID) return parseInt8;
      if (oid === JSON_OID || oid === JSONB_OID) return (text: string) => text;
    }
    return format === undefined ? pg.types.getTypeParser(oid) : pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

export const MAPPING = rowMapping<boolean>({ write: (flag) => flag, read: (column) => column });
export const { keyToRow, rowToKey, versionToRow, rowToVersion, rowsToKeyWithVersions, operationToRow, rowToOperation, principalToRow, rowToPrincipal, tokenToRow, rowToToken } = MAPPING;
