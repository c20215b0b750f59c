import { rowMapping, type KeyRow as Key, type KeyWithVersionRow as KeyWithVersion, type OperationRow as Op, type VersionRow as Version } from '../store-rows/row-mapping.js';

// SQLite keeps booleans as 0/1; everything else maps as in ../store-rows/row-mapping.ts.

export type KeyRow = Key<number>;
export type VersionRow = Version<number>;
export type KeyWithVersionRow = KeyWithVersion<number>;
export type OperationRow = Op<number>;
export type { BindingRow, PrincipalRow, TokenRow } from '../store-rows/row-mapping.js';
export { bindingToRow, rowToBinding } from '../store-rows/row-mapping.js';

export const MAPPING = rowMapping<number>({ write: (flag) => (flag ? 1 : 0), read: (column) => column === 1 });
export const { keyToRow, rowToKey, versionToRow, rowToVersion, rowsToKeyWithVersions, operationToRow, rowToOperation, principalToRow, rowToPrincipal, tokenToRow, rowToToken } = MAPPING;
