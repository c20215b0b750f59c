// Roles and what they grant (SPEC.md §7.2, §7.3). A role is a named set of permissions; the
// inheritance of the docs' role graph is written as "includes", and a role grants its own
// permissions plus everything of the roles it includes. Permissions are kmsd's own names for what
// each method needs; the Yandex docs publish roles, not permissions.

export type Permission =
  | 'kms.keys.list'
  /** Get, ListVersions, ListOperations and operations of a key. */
  | 'kms.keys.get'
  | 'kms.keys.create'
  | 'kms.keys.update'
  /** Update with `status` in the mask: activating or deactivating a key. */
  | 'kms.keys.updateStatus'
  | 'kms.keys.rotate'
  | 'kms.keys.delete'
  | 'kms.keys.setPrimaryVersion'
  | 'kms.keys.scheduleVersionDestruction'
  | 'kms.keys.cancelVersionDestruction'
  | 'kms.keys.encrypt'
  | 'kms.keys.decrypt'
  | 'kms.accessBindings.list'
  | 'kms.accessBindings.set'
  | 'kms.asymmetricEncryptionKeys.getPublicKey'
  | 'kms.asymmetricEncryptionKeys.decrypt'
  | 'kms.asymmetricSignatureKeys.getPublicKey'
  | 'kms.asymmetricSignatureKeys.sign'
  /** kmsd's own admin API (principals, tokens); granted only by kms.admin on the whole installation. */
  | 'kmsd.principals.manage'
  /** Reading the audit log; granted by kms.auditor (and above) on the whole installation. */
  | 'kmsd.audit.read';

interface RoleDefinition {
  readonly grants: readonly Permission[];
  readonly includes: readonly string[];
  readonly summary: string;
}

const VIEW: readonly Permission[] = ['kms.keys.list', 'kms.keys.get'];

const DEFINITIONS: Readonly<Record<string, RoleDefinition>> = {
  'kms.keys.encrypter': { grants: [...VIEW, 'kms.keys.encrypt'], includes: [], summary: 'view symmetric keys; encrypt and generate data keys' },
  'kms.keys.decrypter': { grants: [...VIEW, 'kms.keys.decrypt'], includes: [], summary: 'view symmetric keys; decrypt' },
  // SPEC.md §12.13: the exact scope of kms.keys.user is unpublished; the older docs text says
  // "list, view and use symmetric keys", which is what it grants here.
  'kms.keys.user': { grants: [...VIEW, 'kms.keys.encrypt', 'kms.keys.decrypt'], includes: [], summary: 'view and use symmetric keys' },
  'kms.keys.encrypterDecrypter': {
    grants: [],
    includes: ['kms.keys.encrypter', 'kms.keys.decrypter', 'kms.keys.user'],
    summary: 'encrypter + decrypter',
  },
  'kms.asymmetricEncryptionKeys.publicKeyViewer': { grants: ['kms.asymmetricEncryptionKeys.getPublicKey'], includes: [], summary: 'public key of an encryption pair' },
  'kms.asymmetricEncryptionKeys.decrypter': { grants: ['kms.asymmetricEncryptionKeys.decrypt'], includes: [], summary: 'decrypt with an encryption pair' },
  'kms.asymmetricSignatureKeys.publicKeyViewer': { grants: ['kms.asymmetricSignatureKeys.getPublicKey'], includes: [], summary: 'public key of a signature pair' },
  'kms.asymmetricSignatureKeys.signer': { grants: ['kms.asymmetricSignatureKeys.sign'], includes: [], summary: 'sign with a signature pair' },
  'kms.auditor': { grants: [...VIEW, 'kms.accessBindings.list', 'kmsd.audit.read'], includes: [], summary: 'metadata and access bindings, no data access' },
  'kms.viewer': { grants: [], includes: ['kms.auditor'], summary: 'same as kms.auditor' },
  'kms.editor': {
    grants: ['kms.keys.create', 'kms.keys.update', 'kms.keys.rotate'],
    includes: [
      'kms.viewer',
      'kms.keys.encrypterDecrypter',
      'kms.asymmetricEncryptionKeys.publicKeyViewer',
      'kms.asymmetricEncryptionKeys.decrypter',
      'kms.asymmetricSignatureKeys.publicKeyViewer',
      'kms.asymmetricSignatureKeys.signer',
    ],
    summary: 'viewer + use of keys; create, rotate and change metadata',
  },
  // SPEC.md §12.13: the admin description lists activating/deactivating keys, so changing the
  // status is an admin permission (the docs' method table puts update under editor).
  'kms.admin': {
    grants: [
      'kms.keys.updateStatus',
      'kms.keys.delete',
      'kms.keys.setPrimaryVersion',
      'kms.keys.scheduleVersionDestruction',
      'kms.keys.cancelVersionDestruction',
      'kms.accessBindings.set',
      'kmsd.principals.manage',
    ],
    includes: ['kms.editor'],
    summary: 'everything, including access bindings, deletion and version destruction',
  },
};

/** Primitive roles apply to every service; for KMS they mean the kms.* role of the same level (SPEC.md §7.2). */
const PRIMITIVE: Readonly<Record<string, string>> = { auditor: 'kms.auditor', viewer: 'kms.viewer', editor: 'kms.editor', admin: 'kms.admin' };

function closure(roleId: string, seen = new Set<string>()): Set<Permission> {
  const target = PRIMITIVE[roleId] ?? roleId;
  const def = DEFINITIONS[target];
  const out = new Set<Permission>();
  if (!def || seen.has(target)) return out;
  seen.add(target);
  for (const p of def.grants) out.add(p);
  for (const inc of def.includes) for (const p of closure(inc, seen)) out.add(p);
  return out;
}

const GRANTS: ReadonlyMap<string, ReadonlySet<Permission>> = new Map(
  [...Object.keys(DEFINITIONS), ...Object.keys(PRIMITIVE)].map((id) => [id, closure(id)]),
);

/** Every role id kmsd accepts in an access binding, kms.* first. */
export const ROLE_IDS: readonly string[] = [...Object.keys(DEFINITIONS), ...Object.keys(PRIMITIVE)];

export function isKnownRole(roleId: string): boolean {
  return GRANTS.has(roleId);
}

/** The permissions a role grants, with everything it inherits; empty for an unknown role. */
export function permissionsOf(roleId: string): ReadonlySet<Permission> {
  return GRANTS.get(roleId) ?? new Set();
}

export function roleSummary(roleId: string): string | undefined {
  return DEFINITIONS[PRIMITIVE[roleId] ?? roleId]?.summary;
}
