// The JSON shapes of the Yandex Cloud KMS REST API (SPEC.md §6, §11) as integration tests see
// them, plus small assertion helpers. These types are written from the spec on purpose, not
// imported from src/: the tests check the wire, not the implementation's idea of it.
import assert from 'node:assert/strict';
import type { Caller, KmsdResponse } from './kmsd-process.js';

export const TYPE_PREFIX = 'type.googleapis.com/yandex.cloud.kms.v1.';
/** abj + 17 characters of 0-9a-v (SPEC.md §1.11). */
export const ID_RE = /^abj[0-9a-v]{17}$/;
/** RFC 3339 UTC with 0, 3, 6 or 9 fractional digits (SPEC.md §2.4). */
export const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3}|\.\d{6}|\.\d{9})?Z$/;
export const DAY_S = 86_400;

export type Algorithm = 'AES_128' | 'AES_192' | 'AES_256' | 'AES_256_HSM' | 'GOST_R_3412_2015_K';

export interface KeyVersion {
  readonly '@type'?: string;
  readonly id: string;
  readonly keyId: string;
  readonly status: 'ACTIVE' | 'SCHEDULED_FOR_DESTRUCTION' | 'DESTROYED';
  readonly algorithm: Algorithm;
  readonly createdAt: string;
  readonly primary?: boolean;
  readonly destroyAt?: string;
  readonly hostedByHsm?: boolean;
}

export interface SymmetricKey {
  readonly '@type'?: string;
  readonly id: string;
  readonly folderId: string;
  readonly createdAt: string;
  readonly name?: string;
  readonly description?: string;
  readonly labels?: Record<string, string>;
  readonly status: 'CREATING' | 'ACTIVE' | 'INACTIVE';
  readonly primaryVersion: KeyVersion;
  readonly defaultAlgorithm: Algorithm;
  readonly rotatedAt?: string;
  readonly rotationPeriod?: string;
  readonly deletionProtection?: boolean;
}

export interface OperationMetadata {
  readonly '@type': string;
  readonly keyId: string;
  readonly primaryVersionId?: string;
  readonly versionId?: string;
  readonly newPrimaryVersionId?: string;
  readonly destroyAt?: string;
}

export interface Operation<R = SymmetricKey> {
  readonly id: string;
  readonly description: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly modifiedAt: string;
  readonly done: boolean;
  readonly metadata: OperationMetadata;
  readonly response?: R & { readonly '@type': string };
  readonly error?: { code: number; message: string };
}

export interface ErrorBody {
  readonly code: number;
  readonly message: string;
  readonly details: readonly { readonly '@type': string; readonly requestId: string }[];
}

export interface Page {
  readonly nextPageToken?: string;
}
export interface KeyList extends Page {
  readonly keys?: SymmetricKey[];
}
export interface VersionList extends Page {
  readonly keyVersions?: KeyVersion[];
}
export interface OperationList extends Page {
  readonly operations?: Operation<unknown>[];
}

export interface EncryptResponse {
  readonly keyId: string;
  readonly versionId: string;
  readonly ciphertext: string;
}
export interface DecryptResponse {
  readonly keyId: string;
  readonly versionId: string;
  readonly plaintext: string;
}
export interface DataKeyResponse {
  readonly keyId: string;
  readonly versionId: string;
  readonly dataKeyPlaintext?: string;
  readonly dataKeyCiphertext: string;
}
export interface ReEncryptResponse {
  readonly keyId: string;
  readonly versionId: string;
  readonly sourceKeyId: string;
  readonly sourceVersionId: string;
  readonly ciphertext: string;
}

export const b64 = (data: string | Buffer): string => (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64');
export const unb64 = (text: string): Buffer => Buffer.from(text, 'base64');
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A folder id nobody else uses, so List results in a shared server belong to one test. */
export function freshFolder(): string {
  return `b1g${Math.random().toString(36).slice(2, 12)}${Date.now().toString(36)}`;
}

const describeRes = (res: KmsdResponse): string => `HTTP ${res.status}: ${res.text.slice(0, 1000)}`;

/** Asserts HTTP 200 and returns the body. */
export function ok<T>(res: KmsdResponse<T>): T {
  assert.equal(res.status, 200, describeRes(res));
  return res.json;
}

/**
 * Asserts an error in the REST form of google.rpc.Status (SPEC.md §3.2): the HTTP status, the
 * code, a message (matching `message` if given) and exactly one google.rpc.RequestInfo detail
 * whose requestId is the x-request-id response header.
 */
export function fails(res: KmsdResponse, http: number, code: number, message?: RegExp | string): ErrorBody {
  assert.equal(res.status, http, describeRes(res));
  const body = res.json as ErrorBody;
  assert.equal(body.code, code, describeRes(res));
  assert.equal(typeof body.message, 'string');
  assert.ok(body.message.length > 0);
  if (message instanceof RegExp) assert.match(body.message, message);
  else if (typeof message === 'string') assert.equal(body.message, message);
  assert.deepEqual(Object.keys(body).sort(), ['code', 'details', 'message']);
  assert.equal(body.details.length, 1);
  assert.deepEqual(body.details[0], { '@type': 'type.googleapis.com/google.rpc.RequestInfo', requestId: res.headers.get('x-request-id') });
  assert.ok((res.headers.get('content-type') ?? '').startsWith('application/json'));
  return body;
}

/**
 * Checks an Operation field by field against SPEC.md §3.1/§6: id shape, description, timestamps,
 * createdBy, done, metadata and response with their "@type" (SPEC.md §5.3), and no error.
 */
export function assertOperation<R>(
  op: Operation<R>,
  expected: { description: string; metadataType: string; responseType: 'SymmetricKey' | 'SymmetricKeyVersion'; createdBy?: string | RegExp },
): asserts op is Operation<R> & { response: R & { '@type': string } } {
  assert.deepEqual(Object.keys(op).sort(), ['createdAt', 'createdBy', 'description', 'done', 'id', 'metadata', 'modifiedAt', 'response']);
  assert.match(op.id, ID_RE);
  assert.equal(op.description, expected.description);
  assert.match(op.createdAt, RFC3339_RE);
  assert.match(op.modifiedAt, RFC3339_RE);
  assert.ok(Date.parse(op.modifiedAt) >= Date.parse(op.createdAt), 'modifiedAt before createdAt');
  assert.equal(typeof op.createdBy, 'string');
  if (expected.createdBy instanceof RegExp) assert.match(op.createdBy, expected.createdBy);
  else if (expected.createdBy !== undefined) assert.equal(op.createdBy, expected.createdBy);
  else assert.ok(op.createdBy.length > 0);
  assert.equal(op.done, true);
  assert.equal(op.metadata['@type'], `${TYPE_PREFIX}${expected.metadataType}`);
  assert.match(op.metadata.keyId, ID_RE);
  assert.ok(op.response, 'a done operation carries its response');
  assert.equal(op.response['@type'], `${TYPE_PREFIX}${expected.responseType}`);
}

/** The message packed in an Any, without its "@type". */
export function unpack<T extends { readonly '@type'?: string }>(any: T): Omit<T, '@type'> {
  const { '@type': _type, ...rest } = any;
  return rest;
}

// ---- thin calls -------------------------------------------------------------------------------

export interface CreateKeyBody {
  folderId: string;
  name?: string;
  description?: string;
  labels?: Record<string, string>;
  defaultAlgorithm?: Algorithm | string;
  rotationPeriod?: string;
  deletionProtection?: boolean;
}

export async function createKey(kmsd: Caller, body: CreateKeyBody, headers?: Record<string, string>): Promise<SymmetricKey> {
  const op = ok(await kmsd.call<Operation>('POST', '/kms/v1/keys', { defaultAlgorithm: 'AES_256', ...body }, headers));
  assert.ok(op.response);
  return unpack(op.response);
}

export async function getKey(kmsd: Caller, keyId: string): Promise<SymmetricKey> {
  return ok(await kmsd.call<SymmetricKey>('GET', `/kms/v1/keys/${keyId}`));
}

export async function rotate(kmsd: Caller, keyId: string): Promise<SymmetricKey> {
  const op = ok(await kmsd.call<Operation>('POST', `/kms/v1/keys/${keyId}:rotate`));
  assert.ok(op.response);
  return unpack(op.response);
}

export async function update(kmsd: Caller, keyId: string, body: Record<string, unknown>): Promise<SymmetricKey> {
  const op = ok(await kmsd.call<Operation>('PATCH', `/kms/v1/keys/${keyId}`, body));
  assert.ok(op.response);
  return unpack(op.response);
}

export async function listVersions(kmsd: Caller, keyId: string): Promise<KeyVersion[]> {
  const page = ok(await kmsd.call<VersionList>('GET', `/kms/v1/keys/${keyId}/versions?pageSize=1000`));
  assert.equal(page.nextPageToken ?? '', '');
  return page.keyVersions ?? [];
}

export async function encrypt(kmsd: Caller, keyId: string, plaintext: Buffer | string, extra: Record<string, unknown> = {}): Promise<EncryptResponse> {
  return ok(await kmsd.call<EncryptResponse>('POST', `/kms/v1/keys/${keyId}:encrypt`, { plaintext: b64(plaintext), ...extra }));
}

export function decryptCall(kmsd: Caller, keyId: string, ciphertext: string, extra: Record<string, unknown> = {}): Promise<KmsdResponse<DecryptResponse>> {
  return kmsd.call<DecryptResponse>('POST', `/kms/v1/keys/${keyId}:decrypt`, { ciphertext, ...extra });
}

export async function decrypt(kmsd: Caller, keyId: string, ciphertext: string, extra: Record<string, unknown> = {}): Promise<DecryptResponse> {
  return ok(await decryptCall(kmsd, keyId, ciphertext, extra));
}

/** Follows nextPageToken until the end; asserts every page but the last is full. */
export async function collectPages<T>(
  fetchPage: (pageToken: string) => Promise<{ items: T[]; nextPageToken: string }>,
  pageSize: number,
): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let token = '';
  let pages = 0;
  for (;;) {
    const page = await fetchPage(token);
    pages++;
    assert.ok(page.items.length <= pageSize, `page ${pages} has ${page.items.length} items`);
    items.push(...page.items);
    if (page.nextPageToken === '') return { items, pages };
    assert.equal(page.items.length, pageSize, `page ${pages} is not full but has a next page`);
    assert.ok(page.nextPageToken.length <= 100, 'page tokens are at most 100 characters (SPEC.md §3.3)');
    assert.ok(pages < 1000, 'pagination does not end');
    token = page.nextPageToken;
  }
}
