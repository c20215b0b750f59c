import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code, ERR, KmsError } from '../../errors/kms-error.js';
import { errorBody, HTTP_STATUS, publicError } from './status.js';

// The one table from google.rpc code to HTTP status, and what a client may learn from an error.

/** SPEC.md §3.2, "gRPC ↔ HTTP mapping used by Yandex", copied row by row. */
const SPEC_TABLE: readonly [number, string, number][] = [
  [1, 'CANCELLED', 499],
  [2, 'UNKNOWN', 500],
  [3, 'INVALID_ARGUMENT', 400],
  [4, 'DEADLINE_EXCEEDED', 504],
  [5, 'NOT_FOUND', 404],
  [6, 'ALREADY_EXISTS', 409],
  [7, 'PERMISSION_DENIED', 403],
  [8, 'RESOURCE_EXHAUSTED', 429],
  [9, 'FAILED_PRECONDITION', 400],
  [10, 'ABORTED', 409],
  [11, 'OUT_OF_RANGE', 400],
  [12, 'UNIMPLEMENTED', 501],
  [13, 'INTERNAL', 500],
  [14, 'UNAVAILABLE', 503],
  [15, 'DATA_LOSS', 500],
  [16, 'UNAUTHENTICATED', 401],
];

const REQUEST_ID = 'e38e71c3-adc6-4584-98a4-b0f103d55f61';
const SECRET_DETAIL = 'sqlite: disk I/O error at /var/lib/kmsd/kmsd.db, key material 0xdeadbeef';
const SERVER_FAULTS = [Code.Unknown, Code.Internal, Code.DataLoss];

describe('HTTP_STATUS', () => {
  it('equals the table of SPEC.md §3.2 for all 16 codes', () => {
    const actual = Object.entries(HTTP_STATUS).map(([code, http]) => [Number(code), http]);
    assert.deepEqual(
      actual.sort((a, b) => a[0]! - b[0]!),
      SPEC_TABLE.map(([code, , http]) => [code, http]),
    );
  });

  it('uses the google.rpc numbers and names of SPEC.md §3.2', () => {
    for (const [number, name] of SPEC_TABLE) {
      const camel = name.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
      assert.equal(Code[camel as keyof typeof Code], number, name);
    }
  });
});

describe('publicError', () => {
  it('keeps the code and message of client errors', () => {
    for (const code of Object.values(Code).filter((c): c is Code => typeof c === 'number' && !SERVER_FAULTS.includes(c))) {
      const pub = publicError(new KmsError(code, `key abjk: ${Code[code]} happened`), REQUEST_ID);
      assert.deepEqual(pub, { code, message: `key abjk: ${Code[code]} happened`, serverFault: false });
    }
    assert.equal(publicError(ERR.field('folder_id', 'required'), REQUEST_ID).message, 'folder_id: required');
  });

  it('hides the message of INTERNAL, UNKNOWN and DATA_LOSS, keeps their code, and quotes the request id', () => {
    for (const code of SERVER_FAULTS) {
      const pub = publicError(new KmsError(code, SECRET_DETAIL), REQUEST_ID);
      assert.equal(pub.code, code);
      assert.equal(pub.serverFault, true);
      assert.ok(!pub.message.includes('sqlite') && !pub.message.includes('deadbeef'), pub.message);
      assert.ok(pub.message.includes(REQUEST_ID), pub.message);
    }
    const internal = publicError(ERR.internal(new Error(SECRET_DETAIL)), REQUEST_ID);
    assert.equal(internal.code, Code.Internal);
    assert.ok(!internal.message.includes('sqlite'));
  });

  it('turns anything that is not a KmsError into INTERNAL with no detail', () => {
    const sneaky = Object.assign(new Error(SECRET_DETAIL), { code: Code.InvalidArgument });
    for (const thrown of [new Error(SECRET_DETAIL), new TypeError(SECRET_DETAIL), sneaky, SECRET_DETAIL, { message: SECRET_DETAIL, code: 3 }, undefined, null, 42]) {
      const pub = publicError(thrown, REQUEST_ID);
      assert.equal(pub.code, Code.Internal);
      assert.equal(pub.serverFault, true);
      assert.ok(!pub.message.includes('sqlite') && !pub.message.includes('deadbeef'), pub.message);
      assert.ok(pub.message.includes(REQUEST_ID));
    }
  });
});

describe('errorBody', () => {
  it('is google.rpc.Status JSON with a RequestInfo detail carrying the request id', () => {
    const body = errorBody(publicError(ERR.unauthenticated('The token is invalid or expired'), REQUEST_ID), REQUEST_ID);
    assert.deepEqual(body, {
      code: 16,
      message: 'The token is invalid or expired',
      details: [{ '@type': 'type.googleapis.com/google.rpc.RequestInfo', requestId: REQUEST_ID }],
    });
  });

  it('never carries the hidden message of a server fault', () => {
    const body = errorBody(publicError(new Error(SECRET_DETAIL), REQUEST_ID), REQUEST_ID);
    assert.ok(!JSON.stringify(body).includes('sqlite'));
    assert.equal(body.code, 13);
  });
});
