// What an operator's Prometheus and load balancer see (issue #7): GET /metrics in the Prometheus
// text format with requests by transport, method and code, latency histograms, key cache, audit
// group commit and store call series — labelled by method and code, never by key, token or peer —
// and /healthz, /readyz. All on the REST listener, without authentication; --metrics off removes
// /metrics only. And the bench-only switch that leaves crypto calls unaudited is hard to turn on.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { SymmetricEncryptRequestSchema } from '../../src/gen/yandex/cloud/kms/v1/symmetric_crypto_service_pb.js';
import { b64, createKey, decrypt, encrypt, fails, freshFolder, ok, type SymmetricKey } from '../helpers/api.js';
import { newCaller } from '../helpers/identity.js';
import { expectStartFailure, KmsdProcess, tempDir } from '../helpers/kmsd-process.js';
import { sample, scrape, type Sample } from '../helpers/metrics.js';

const ENCRYPT = 'yandex.cloud.kms.v1.SymmetricCryptoService/Encrypt';
const DECRYPT = 'yandex.cloud.kms.v1.SymmetricCryptoService/Decrypt';
const GET_KEY = 'yandex.cloud.kms.v1.SymmetricKeyService/Get';

describe('GET /metrics (Prometheus)', () => {
  let kmsd: KmsdProcess;
  let key: SymmetricKey;
  let app: { authorization: string; token: string };

  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam' });
    key = await createKey(kmsd, { folderId: freshFolder() });
    app = await newCaller(kmsd, 'metrics-app');
  });
  after(async () => kmsd?.dispose());

  it('counts REST and gRPC calls by transport, method and code, with latency histograms per method', async () => {
    const before = await scrape(kmsd);
    const count = (s: Sample[], transport: string, method: string, code: string) =>
      s.find((x) => x.name === 'kmsd_requests_total' && x.labels.transport === transport && x.labels.method === method && x.labels.code === code)?.value ?? 0;

    const ciphertexts: string[] = [];
    for (let i = 0; i < 3; i++) ciphertexts.push((await encrypt(kmsd, key.id, `secret ${i}`)).ciphertext);
    await decrypt(kmsd, key.id, ciphertexts[0]!);
    // A caller without a binding on the key: PERMISSION_DENIED, counted under Encrypt.
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, { plaintext: b64('x') }, { authorization: app.authorization }), 403, 7);
    fails(await kmsd.call('GET', '/kms/v1/keys/abj00000000000000000'), 404, 5);
    // Refused before it became a call: a body that is not JSON (under its route), a path with no method.
    fails(await kmsd.call('POST', `/kms/v1/keys/${key.id}:encrypt`, '{not json'), 400, 3);
    fails(await kmsd.call('GET', '/no/such/path'), 404, 5);

    const ready = kmsd.ready as unknown as { grpc: string; caFile: string };
    const client = new grpc.Client(ready.grpc, grpc.credentials.createSsl(readFileSync(ready.caFile)));
    try {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${kmsd.token}`);
      const request = Buffer.from(toBinary(SymmetricEncryptRequestSchema, create(SymmetricEncryptRequestSchema, { keyId: key.id, plaintext: Buffer.from('grpc') })));
      for (let i = 0; i < 2; i++) {
        await new Promise<void>((resolve, reject) =>
          client.makeUnaryRequest(`/${ENCRYPT}`, (b: Buffer) => b, (b: Buffer) => b, request, md, (err) => (err ? reject(err) : resolve())),
        );
      }
    } finally {
      client.close();
    }

    const { text, samples } = await scrape(kmsd);
    const delta = (transport: string, method: string, code: string) => count(samples, transport, method, code) - count(before.samples, transport, method, code);
    assert.equal(delta('rest', ENCRYPT, 'OK'), 3);
    assert.equal(delta('rest', DECRYPT, 'OK'), 1);
    assert.equal(delta('rest', ENCRYPT, 'PERMISSION_DENIED'), 1);
    assert.equal(delta('rest', GET_KEY, 'NOT_FOUND'), 1);
    assert.equal(delta('rest', 'POST /kms/v1/keys/:p0', 'INVALID_ARGUMENT'), 1);
    assert.equal(delta('rest', 'unmatched', 'NOT_FOUND'), 1);
    assert.equal(delta('grpc', ENCRYPT, 'OK'), 2);

    // Histogram: one observation per call, cumulative buckets ending in +Inf.
    const hist = { transport: 'rest', method: ENCRYPT };
    assert.equal(sample(samples, 'kmsd_request_duration_seconds_count', hist), 4 + count(before.samples, 'rest', ENCRYPT, 'OK') + count(before.samples, 'rest', ENCRYPT, 'PERMISSION_DENIED'));
    assert.equal(sample(samples, 'kmsd_request_duration_seconds_bucket', { ...hist, le: '+Inf' }), sample(samples, 'kmsd_request_duration_seconds_count', hist));
    assert.ok(sample(samples, 'kmsd_request_duration_seconds_sum', hist) > 0);
    assert.ok(sample(samples, 'kmsd_request_duration_seconds_count', { transport: 'grpc', method: ENCRYPT }) >= 2);

    // Key cache: the crypto calls above found the key warm after the first.
    assert.ok(sample(samples, 'kmsd_key_cache_lookups_total', { kind: 'key', result: 'hit' }) >= 4);
    assert.ok(sample(samples, 'kmsd_key_cache_lookups_total', { kind: 'key', result: 'miss' }) >= 1);
    assert.ok(sample(samples, 'kmsd_key_cache_lookups_total', { kind: 'version', result: 'hit' }) >= 4);
    assert.ok(sample(samples, 'kmsd_key_cache_keys') >= 1);

    // Audit group commits, the queue (empty between calls), store calls by operation.
    assert.ok(sample(samples, 'kmsd_audit_batch_records_count') >= 1);
    assert.ok(sample(samples, 'kmsd_audit_batch_records_sum') >= 8, 'every crypto call above has its record');
    assert.ok(sample(samples, 'kmsd_audit_flush_duration_seconds_count') >= 1);
    assert.equal(sample(samples, 'kmsd_audit_queue_depth'), 0);
    assert.equal(sample(samples, 'kmsd_audit_flush_failures_total'), 0);
    assert.ok(sample(samples, 'kmsd_store_call_duration_seconds_count', { operation: 'appendAudit' }) >= 1);
    assert.ok(sample(samples, 'kmsd_store_call_duration_seconds_count', { operation: 'commitKeyChange' }) >= 1);

    // Process metrics, for the memory and event-loop targets.
    assert.ok(sample(samples, 'process_resident_memory_bytes') > 0);
    assert.ok(samples.some((s) => s.name === 'nodejs_eventloop_lag_seconds'));

    // Bounded labels only: nothing a caller chooses, nothing secret.
    for (const secret of [key.id, kmsd.token!, app.token, app.token.split('.')[1]!, '127.0.0.1']) assert.ok(!text.includes(secret), `the exposition contains ${secret}`);
    const labelNames = new Set(samples.flatMap((s) => Object.keys(s.labels)));
    for (const name of labelNames) assert.ok(['transport', 'method', 'code', 'kind', 'result', 'operation', 'le', 'type', 'space', 'version', 'major', 'minor', 'patch', 'kind'].includes(name), `unexpected label ${name}`);
  });

  it('needs no token (an Authorization header is ignored), and is not itself counted', async () => {
    const res = await fetch(`${kmsd.baseUrl}/metrics`, { headers: { authorization: 'Bearer not-a-valid-token' } });
    assert.equal(res.status, 200, 'an Authorization header is ignored');
    const { samples } = await scrape(kmsd);
    assert.ok(!samples.some((s) => s.name === 'kmsd_requests_total' && /metrics|healthz|readyz/.test(s.labels.method ?? '')));
  });
});

describe('GET /healthz and /readyz', () => {
  let kmsd: KmsdProcess;
  before(async () => {
    kmsd = await KmsdProcess.start({ auth: 'iam', args: ['--metrics', 'off'] });
  });
  after(async () => kmsd?.dispose());

  it('/healthz: the process is up', async () => {
    const res = await fetch(`${kmsd.baseUrl}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok' });
  });

  it('/readyz: store read, root key unwrap and listeners all pass', async () => {
    const res = await fetch(`${kmsd.baseUrl}/readyz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ready', checks: { store: 'ok', rootKey: 'ok', listeners: 'ok' } });
  });

  it('--metrics off: /metrics is an unknown path, the API and health still answer', async () => {
    const res = await kmsd.call('GET', '/metrics');
    fails(res, 404, 5);
    ok(await kmsd.call('GET', `/kms/v1/keys?folderId=${freshFolder()}`));
  });
});

describe('the bench-only audit switch (KMSD_BENCH_DISCARD_AUDIT)', () => {
  let dir: string;
  before(() => {
    dir = tempDir();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('alone, or with a wrong acknowledgement, refuses to start', async () => {
    const attempts: Record<string, string>[] = [
      { KMSD_BENCH_DISCARD_AUDIT: '1' },
      { KMSD_BENCH_DISCARD_AUDIT: '1', KMSD_BENCH_ONLY: 'yes' },
      { KMSD_BENCH_DISCARD_AUDIT: 'true', KMSD_BENCH_ONLY: 'unaudited-calls-for-benchmarking' },
    ];
    for (const [i, env] of attempts.entries()) {
      const r = await expectStartFailure({ dataDir: join(dir, `refused-${i}`), env });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /KMSD_BENCH_DISCARD_AUDIT is a benchmarking switch.*KMSD_BENCH_ONLY=unaudited-calls-for-benchmarking/);
    }
  });

  it('with its acknowledgement: crypto calls leave no record, it says so loudly, and /readyz is 503', async () => {
    const kmsd = await KmsdProcess.start({ dataDir: join(dir, 'bench'), env: { KMSD_BENCH_DISCARD_AUDIT: '1', KMSD_BENCH_ONLY: 'unaudited-calls-for-benchmarking' } });
    try {
      assert.match(kmsd.stderr, /"level":50.*BENCHMARK MODE: audit records of non-mutating calls are DISCARDED/);
      const ready = await fetch(`${kmsd.baseUrl}/readyz`);
      assert.equal(ready.status, 503);
      assert.deepEqual(await ready.json(), { status: 'not ready', checks: { store: 'ok', rootKey: 'ok', audit: 'failed', listeners: 'ok' } });

      const key = await createKey(kmsd, { folderId: freshFolder() });
      await decrypt(kmsd, key.id, (await encrypt(kmsd, key.id, 'x')).ciphertext);
      const events = ok(await kmsd.call<{ records: { event: string }[] }>('GET', `/kmsd/v1/audit?keyId=${key.id}&pageSize=100`)).records.map((r) => r.event);
      assert.deepEqual(events, ['yandex.cloud.audit.kms.CreateSymmetricKey'], 'the mutation is audited with its change; Encrypt and Decrypt are not');
    } finally {
      await kmsd.stop();
    }
  });
});
