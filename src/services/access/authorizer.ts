import { ERR } from '../../errors/kms-error.js';
import type { Principal } from '../../domain/principal.js';

// What each method needs (SPEC.md §7.3), named once so that role bindings (a later issue) only
// have to decide, per principal and resource, which of these are granted.

export type Permission =
  | 'kms.keys.list'
  | 'kms.keys.get'
  | 'kms.keys.create'
  | 'kms.keys.update'
  | 'kms.keys.updateStatus'
  | 'kms.keys.rotate'
  | 'kms.keys.delete'
  | 'kms.keys.setPrimaryVersion'
  | 'kms.keys.scheduleVersionDestruction'
  | 'kms.keys.cancelVersionDestruction'
  | 'kms.keys.encrypt'
  | 'kms.keys.decrypt'
  | 'kms.operations.get';

/** The resource a permission is checked on: a folder, or a key inside one. */
export interface ResourceRef {
  readonly folderId?: string;
  readonly keyId?: string;
}

export interface Authorizer {
  /** Throws PERMISSION_DENIED when `principal` may not do `permission` on `resource`. */
  authorize(principal: Principal, permission: Permission, resource: ResourceRef): void;
}

/** Until role bindings exist, only administrators may do anything. */
export const adminAuthorizer: Authorizer = {
  authorize(principal, permission) {
    if (!principal.admin) throw ERR.permissionDenied(`${principal.type} ${principal.id} lacks ${permission}`);
  },
};
