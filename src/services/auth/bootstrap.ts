import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newId } from '../../domain/ids.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { AccessStore, MetaStore, PrincipalStore } from '../../ports/store.js';
import { GLOBAL_SCOPE } from '../../domain/access.js';
import { issueToken } from './tokens.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
const BOOTSTRAP_ADMIN_META = 'bootstrap_admin_id';

/**
 * On the first start with --auth iam, creates the administrator principal and writes a token for it
 * to <data-dir>/admin.token (mode 0600). If the file was removed later, a new token is issued so the
 * operator is not locked out; the token itself is never printed or logged.
 */
export async function ensureBootstrapAdmin(d: {
  store: PrincipalStore & MetaStore & AccessStore;
  dataDir: string;
  random: Random;
  clock: Clock;
}): Promise<{ principalId: string; tokenFile: string; issued: boolean }> {
  const tokenFile = join(d.dataDir, ADMIN_TOKEN_FILE);
  const now = d.clock.now();
  let principalId = await d.store.getMeta(BOOTSTRAP_ADMIN_META);
  if (principalId === undefined) {
    const id = newId(d.random, 'aje');
    await d.store.createPrincipal({ id, type: 'userAccount', name: 'bootstrap administrator', createdAt: now });
    // kms.admin on the whole installation, before the id is published: a crash in between leaves
    // an unused principal that no token names, never an administrator without the role. Of nodes
    // starting at once, one wins initMeta; the others' principals never get a token.
    await d.store.changeBindings({
      scope: GLOBAL_SCOPE,
      deltas: [{ action: 'ADD', binding: { roleId: 'kms.admin', subject: { type: 'userAccount', id } } }],
    });
    principalId = await d.store.initMeta(BOOTSTRAP_ADMIN_META, id);
  }
  if (existsSync(tokenFile)) return { principalId, tokenFile, issued: false };
  const { token, record } = issueToken(d.random, principalId, now);
  await d.store.createToken(record);
  const tmp = `${tokenFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, tokenFile);
  return { principalId, tokenFile, issued: true };
}
