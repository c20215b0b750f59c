// The role matrix of issue 4 (SPEC.md §7.2, §7.3): every role × every method of the symmetric KMS
// API, over REST and over gRPC, is either allowed (OK) or PERMISSION_DENIED exactly as the SPEC's
// method → role table says. Roles are granted on a folder, so the matrix also proves that folder
// bindings are inherited by the keys in the folder. The expected table is written here from the
// SPEC, not taken from kmsd's role definitions. Afterwards every call of the matrix has exactly
// one audit record with its outcome.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { JsonObject } from '@bufbuild/protobuf';
import { b64, encrypt, freshFolder, ok, rotate, type Operation, type SymmetricKey } from '../helpers/api.js';
import { bind, newCaller } from '../helpers/identity.js';
import { KmsdProcess } from '../helpers/kmsd-process.js';
import { RPC, viaGrpc, viaRest, type Outcome, type RpcName } from '../helpers/rpc.js';

const OK = 0;
const PERMISSION_DENIED = 7;

// Who may do what (SPEC.md §7.2–7.3; `auditor`…`admin` are the primitive roles, mapped to kms.*).
const ADMIN = ['kms.admin', 'admin'];
const EDITOR = [...ADMIN, 'kms.editor', 'editor'];
const AUDITOR = [...EDITOR, 'kms.viewer', 'viewer', 'kms.auditor', 'auditor'];
const ENCRYPT = [...EDITOR, 'kms.keys.encrypterDecrypter', 'kms.keys.user', 'kms.keys.encrypter'];
const DECRYPT = [...EDITOR, 'kms.keys.encrypterDecrypter', 'kms.keys.user', 'kms.keys.decrypter'];
// "view symmetric key info" is part of every symmetric-key role.
const VIEW = [...new Set([...AUDITOR, ...ENCRYPT, ...DECRYPT])];
const REENCRYPT = ENCRYPT.filter((r) => DECRYPT.includes(r));
const ASYMMETRIC = [
  'kms.asymmetricEncryptionKeys.publicKeyViewer',
  'kms.asymmetricEncryptionKeys.decrypter',
  'kms.asymmetricSignatureKeys.publicKeyViewer',
  'kms.asymmetricSignatureKeys.signer',
];
const NO_ROLE = '(none)';
const ROLES = [...new Set([...VIEW, ...ASYMMETRIC, NO_ROLE])];

interface Fixture {
  readonly folder: string;
  readonly key: SymmetricKey;
  readonly v1: string;
  readonly v2: string;
  readonly createOp: string;
  readonly ciphertext: string;
}

interface Step {
  readonly rpc: RpcName;
  readonly allowed: readonly string[];
  readonly request: (fx: Fixture) => JsonObject;
}

// In an order where each allowed call succeeds on the state the earlier ones leave behind.
const STEPS: readonly Step[] = [
  { rpc: 'Key.Get', allowed: VIEW, request: (fx) => ({ keyId: fx.key.id }) },
  { rpc: 'Key.List', allowed: VIEW, request: (fx) => ({ folderId: fx.folder }) },
  { rpc: 'Key.ListVersions', allowed: VIEW, request: (fx) => ({ keyId: fx.key.id }) },
  { rpc: 'Key.ListOperations', allowed: VIEW, request: (fx) => ({ keyId: fx.key.id }) },
  { rpc: 'Operation.Get', allowed: VIEW, request: (fx) => ({ operationId: fx.createOp }) },
  { rpc: 'Key.ListAccessBindings', allowed: AUDITOR, request: (fx) => ({ resourceId: fx.key.id }) },
  { rpc: 'Crypto.Encrypt', allowed: ENCRYPT, request: (fx) => ({ keyId: fx.key.id, plaintext: b64('matrix') }) },
  { rpc: 'Crypto.GenerateDataKey', allowed: ENCRYPT, request: (fx) => ({ keyId: fx.key.id }) },
  { rpc: 'Crypto.Decrypt', allowed: DECRYPT, request: (fx) => ({ keyId: fx.key.id, ciphertext: fx.ciphertext }) },
  { rpc: 'Crypto.ReEncrypt', allowed: REENCRYPT, request: (fx) => ({ keyId: fx.key.id, sourceKeyId: fx.key.id, ciphertext: fx.ciphertext }) },
  { rpc: 'Key.Update', allowed: EDITOR, request: (fx) => ({ keyId: fx.key.id, updateMask: 'name', name: 'renamed' }) },
  { rpc: 'Key.Rotate', allowed: EDITOR, request: (fx) => ({ keyId: fx.key.id }) },
  { rpc: 'Key.Create', allowed: EDITOR, request: (fx) => ({ folderId: fx.folder, defaultAlgorithm: 'AES_256' }) },
  // Changing the status is an administrator's (SPEC.md §12.13, decided in kmsd's README).
  { rpc: 'Key.Update', allowed: ADMIN, request: (fx) => ({ keyId: fx.key.id, updateMask: 'status', status: 'ACTIVE' }) },
  { rpc: 'Key.SetPrimaryVersion', allowed: ADMIN, request: (fx) => ({ keyId: fx.key.id, versionId: fx.v2 }) },
  { rpc: 'Key.ScheduleVersionDestruction', allowed: ADMIN, request: (fx) => ({ keyId: fx.key.id, versionId: fx.v1 }) },
  { rpc: 'Key.CancelVersionDestruction', allowed: ADMIN, request: (fx) => ({ keyId: fx.key.id, versionId: fx.v1 }) },
  {
    rpc: 'Key.UpdateAccessBindings',
    allowed: ADMIN,
    request: (fx) => ({ resourceId: fx.key.id, accessBindingDeltas: [{ action: 'ADD', accessBinding: { roleId: 'kms.auditor', subject: { type: 'system', id: 'allAuthenticatedUsers' } } }] }),
  },
  { rpc: 'Key.SetAccessBindings', allowed: ADMIN, request: (fx) => ({ resourceId: fx.key.id, accessBindings: [] }) },
  { rpc: 'Key.Delete', allowed: ADMIN, request: (fx) => ({ keyId: fx.key.id }) },
];

describe('role × method matrix over REST and gRPC (folder bindings)', () => {
  let kmsd: KmsdProcess;
  let client: grpc.Client;
  const callers = new Map<string, { id: string; authorization: string; folder: string }>();
  const seen: { role: string; transport: string; rpc: RpcName; code: number }[] = [];

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
    client = new grpc.Client(ready.grpc, grpc.credentials.createSsl(readFileSync(ready.caFile)));
    for (const role of ROLES) {
      const c = await newCaller(kmsd, `matrix-${role.replace(/[^a-z]/gi, '-')}`.slice(0, 63));
      const folder = freshFolder();
      if (role !== NO_ROLE) await bind(kmsd, { folder }, role, { type: 'serviceAccount', id: c.principal.id });
      callers.set(role, { id: c.principal.id, authorization: c.authorization, folder });
    }
  });

  after(async () => {
    client?.close();
    await kmsd?.dispose();
  });

  async function fixture(folder: string): Promise<Fixture> {
    const op = ok(await kmsd.call<Operation>('POST', '/kms/v1/keys', { folderId: folder, defaultAlgorithm: 'AES_256' }));
    const key = op.response!;
    const rotated = await rotate(kmsd, key.id);
    const ciphertext = (await encrypt(kmsd, key.id, 'matrix secret')).ciphertext;
    return { folder, key, v1: key.primaryVersion.id, v2: rotated.primaryVersion.id, createOp: op.id, ciphertext };
  }

  for (const transport of ['rest', 'grpc'] as const) {
    for (const role of ROLES) {
      it(`${role} over ${transport}`, async () => {
        const caller = callers.get(role)!;
        const fx = await fixture(caller.folder);
        const problems: string[] = [];
        for (const step of STEPS) {
          const rpc = RPC[step.rpc];
          const out: Outcome =
            transport === 'rest' ? await viaRest(kmsd, rpc, step.request(fx), caller.authorization) : await viaGrpc(client, rpc, step.request(fx), caller.authorization);
          const want = step.allowed.includes(role) ? OK : PERMISSION_DENIED;
          seen.push({ role, transport, rpc: step.rpc, code: out.code });
          if (out.code !== want) problems.push(`${step.rpc} ${JSON.stringify(step.request(fx)).slice(0, 80)}: want ${want}, got ${out.code} ${out.message ?? ''}`);
        }
        assert.deepEqual(problems, [], `${role} over ${transport}`);
      });
    }
  }

  it('left exactly one audit record per matrix call, with its outcome and transport', async () => {
    for (const [role, caller] of callers) {
      const records: { event: string; outcome: string; code: number; transport: string; subject: { id: string } }[] = [];
      let pageToken = '';
      do {
        const page = ok(await kmsd.call<{ records: typeof records; nextPageToken: string }>('GET', `/kmsd/v1/audit?subjectId=${caller.id}&pageSize=1000&pageToken=${pageToken}`));
        records.push(...page.records);
        pageToken = page.nextPageToken;
      } while (pageToken);
      const mine = seen.filter((s) => s.role === role);
      assert.equal(records.length, mine.length, `${role}: ${records.length} records for ${mine.length} calls`);
      for (const transport of ['rest', 'grpc']) {
        const want = mine.filter((s) => s.transport === transport).map((s) => s.code);
        const got = records.filter((r) => r.transport === transport).map((r) => r.code);
        assert.deepEqual(got, want, `${role} over ${transport}: outcomes in call order`);
      }
      assert.ok(records.every((r) => r.event.startsWith('yandex.cloud.audit.kms.') && r.subject.id === caller.id));
    }
  });
});
