import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newId } from '../../domain/ids.js';
import { Code, isKmsError } from '../../errors/kms-error.js';
import type { Clock } from '../../ports/clock.js';
import type { Random } from '../../ports/random.js';
import type { AccessStore, MetaStore, PrincipalStore } from '../../ports/store.js';
import { GLOBAL_SCOPE } from '../../domain/access.js';
import { issueToken } from './tokens.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
const BOOTSTRAP_ADMIN_META = 'bootstrap_admin_id';
/** Set once the bootstrap administrator exists with its role; from then on it is not re-created. */
const BOOTSTRAP_DONE_META = 'bootstrap_admin_created_at';

/**
 * On the first start with --auth iam, creates the administrator principal and writes a token for it
 * to <data-dir>/admin.token (mode 0600). If the file was removed later, a new token is issued so the
 * operator is not locked out; the token itself is never printed or logged.
 *
 * Several nodes may start at once on one new database: the administrator's id is settled first
 * (initMeta: the first node's id wins, the others read it), then whichever node finds that
 * principal missing creates it, so there is exactly one, and a crash in between is repaired by the
 * next start. Each node writes a token of that administrator into its own data directory.
 */
export async function ensureBootstrapAdmin(d: {
  store: Pick<PrincipalStore, 'createPrincipal' | 'getPrincipal' | 'createToken'> & Pick<AccessStore, 'changeBindings'> & MetaStore;
  dataDir: string;
  random: Random;
  clock: Clock;
}): Promise<{ principalId: string; tokenFile: string; issued: boolean }> {
  const tokenFile = join(d.dataDir, ADMIN_TOKEN_FILE);
  const now = d.clock.now();
  const principalId = (await d.store.getMeta(BOOTSTRAP_ADMIN_META)) ?? (await d.store.initMeta(BOOTSTRAP_ADMIN_META, newId(d.random, 'aje')));
  // Once the administrator has existed, it is never made again: an operator who deleted it (or its
  // role) after creating other administrators must not see it come back at the next restart.
  const settled = (await d.store.getMeta(BOOTSTRAP_DONE_META)) !== undefined;
  if (!settled && (await d.store.getPrincipal(principalId)) === undefined) {
    // kms.admin on the whole installation first, then the principal it names: a crash in between
    // leaves a binding nobody can use until the next start completes it, never an administrator
    // without the role. Adding a binding that exists changes nothing.
    await d.store.changeBindings({
      scope: GLOBAL_SCOPE,
      deltas: [{ action: 'ADD', binding: { roleId: 'kms.admin', subject: { type: 'userAccount', id: principalId } } }],
    });
    try {
      await d.store.createPrincipal({ id: principalId, type: 'userAccount', name: 'bootstrap administrator', createdAt: now });
    } catch (e) {
      // Another node created it since we looked.
      if (!(isKmsError(e) && e.code === Code.AlreadyExists)) throw e;
    }
  }
  if (!settled) await d.store.initMeta(BOOTSTRAP_DONE_META, String(now));
  if (existsSync(tokenFile)) return { principalId, tokenFile, issued: false };
  // A deleted bootstrap administrator gets no new token; other administrators manage the installation.
  if ((await d.store.getPrincipal(principalId)) === undefined) return { principalId, tokenFile, issued: false };
  const { token, record } = issueToken(d.random, principalId, now);
  await d.store.createToken(record);
  const tmp = `${tokenFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, tokenFile);
  return { principalId, tokenFile, issued: true };
}
