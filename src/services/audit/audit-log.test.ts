import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { openSqliteStore } from '../../adapters/store-sqlite/sqlite-store.js';
import { ChainVerifier } from '../../crypto/audit-chain.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import { parseBody } from '../../domain/audit.js';
import { DEV_MODE_CALLER } from '../../domain/principal.js';
import { Code, ERR, isKmsError } from '../../errors/kms-error.js';
import type { Store } from '../../ports/store.js';
import { callRunner } from '../../transport/shared/call-runner.js';
import { devModeAuthenticator } from '../auth/tokens.js';
import { AuditLog } from './audit-log.js';
import type { AuditTrail } from './trail.js';

// The audit log's write path: group commit of concurrent calls into one transaction, and fail
// closed — a call whose record cannot be written does not return its result.

const key = new SecretBytes(randomBytes(32));
const clock = { now: () => Date.UTC(2026, 10, 28) };
const silent = pino({ level: 'silent' });
const trail = (i: number): AuditTrail => ({ event: 'yandex.cloud.audit.kms.Encrypt', method: 'm', requestId: `r${i}`, peer: '127.0.0.1', transport: 'rest', subject: { type: 'serviceAccount', id: 'aje1' }, written: false });

let store: Store;
let appends: number;
beforeEach(() => {
  const real = openSqliteStore(':memory:');
  appends = 0;
  store = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (prop === 'appendAudit') return (...a: Parameters<Store['appendAudit']>) => (appends++, target.appendAudit(...a));
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
});
afterEach(async () => store.close());

describe('AuditLog', () => {
  it('writes the records of concurrent calls in few transactions, in one unbroken chain', async () => {
    const audit = new AuditLog(store, key, clock);
    await Promise.all(Array.from({ length: 200 }, (_, i) => audit.record(trail(i), 0)));
    assert.ok(appends < 20, `${appends} transactions for 200 records`);
    assert.ok(audit.maxBatch > 10);
    const records = await store.scanAudit(0, 1000);
    assert.equal(records.length, 200);
    const v = new ChainVerifier(key);
    records.forEach((r) => v.add(r, `seq ${r.seq}`));
    v.finish(await store.getAuditHead());
    assert.deepEqual(v.problems, []);
    assert.deepEqual(new Set(records.map((r) => parseBody(r.body)!.requestId)).size, 200);
  });

  it('a record is written once even if record() is called again for the same call', async () => {
    const audit = new AuditLog(store, key, clock);
    const t = trail(1);
    await audit.record(t, 0);
    await audit.record(t, 0);
    assert.equal((await store.scanAudit(0, 10)).length, 1);
  });

  it('rejects with UNAVAILABLE when the store cannot write, and the call runner withholds the result', async () => {
    const broken = new Proxy(store, {
      get(target, prop) {
        if (prop === 'appendAudit') return async () => Promise.reject(new Error('disk full'));
        return Reflect.get(target, prop, target) as unknown;
      },
    });
    const audit = new AuditLog(broken, key, clock, silent);
    await assert.rejects(audit.record(trail(1), 0), (e: unknown) => isKmsError(e) && e.code === Code.Unavailable);

    const runner = callRunner({ authenticator: devModeAuthenticator(DEV_MODE_CALLER), audit, logger: silent });
    let ran = false;
    await assert.rejects(
      runner.run({ event: 'e', method: 'm', authorization: undefined, peer: 'p', requestId: 'r', transport: 'rest' }, async () => {
        ran = true;
        return 'the result';
      }),
      (e: unknown) => isKmsError(e) && e.code === Code.Unavailable,
    );
    assert.ok(ran);
    // A call that failed on its own keeps its own error even when its record cannot be written.
    await assert.rejects(
      runner.run({ event: 'e', method: 'm', authorization: undefined, peer: 'p', requestId: 'r2', transport: 'rest' }, async () => {
        throw ERR.permissionDenied('no');
      }),
      (e: unknown) => isKmsError(e) && e.code === Code.PermissionDenied,
    );
  });

  it('the call runner records the outcome of every call, allowed or denied', async () => {
    const audit = new AuditLog(store, key, clock);
    const runner = callRunner({ authenticator: devModeAuthenticator(DEV_MODE_CALLER), audit, logger: silent });
    const req = (id: string) => ({ event: 'yandex.cloud.audit.kms.Decrypt', method: 'm', authorization: undefined, peer: '10.0.0.1', requestId: id, transport: 'grpc' as const });
    await runner.run(req('ok'), async () => 1);
    await assert.rejects(runner.run(req('bad'), async () => Promise.reject(ERR.invalidCiphertext())));
    await assert.rejects(runner.run(req('bug'), async () => Promise.reject(new Error('a bug'))));
    const records = (await store.scanAudit(0, 10)).map((r) => parseBody(r.body)!);
    assert.deepEqual(
      records.map((r) => [r.requestId, r.code, r.subject.id, r.peer, r.transport]),
      [
        ['ok', 0, DEV_MODE_CALLER.kind === 'dev' ? DEV_MODE_CALLER.principal.id : '', '10.0.0.1', 'grpc'],
        ['bad', Code.InvalidArgument, 'kmsd-dev-admin', '10.0.0.1', 'grpc'],
        ['bug', Code.Internal, 'kmsd-dev-admin', '10.0.0.1', 'grpc'],
      ],
    );
  });
});
