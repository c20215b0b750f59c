import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Code, isKmsError, KmsError } from '../errors/kms-error.js';
import { decodeCursor, DEFAULT_PAGE_SIZE, effectivePageSize, encodeCursor, MAX_PAGE_TOKEN_LENGTH, type Cursor } from './paging.js';

// Page tokens (SPEC.md §3.3): opaque, ≤ 100 characters so every method accepts them back, and a
// token the service did not issue is INVALID_ARGUMENT — never a crash or a 500.

const ID_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_-';
const MAX_DATE_MS = 8.64e15; // the largest time a JS Date can hold (year 275760)
const arbId = fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 50 });
const arbAt = fc.integer({ min: 0, max: MAX_DATE_MS });

function assertInvalidPageToken(token: string): void {
  assert.throws(
    () => decodeCursor(token),
    (e: unknown) => {
      assert.ok(isKmsError(e), `expected a KmsError for ${JSON.stringify(token)}, got ${String(e)}`);
      assert.equal(e.code, Code.InvalidArgument);
      assert.match(e.message, /^page_token: /);
      return true;
    },
  );
}

describe('page size', () => {
  it('0 means the default of 100; other values are used as given', () => {
    assert.equal(DEFAULT_PAGE_SIZE, 100);
    assert.equal(effectivePageSize(0), 100);
    assert.equal(effectivePageSize(1), 1);
    assert.equal(effectivePageSize(1000), 1000);
  });
});

describe('page tokens', () => {
  it('an empty token means the first page', () => {
    assert.equal(decodeCursor(''), undefined);
  });

  it('round-trips a typical cursor', () => {
    const c: Cursor = { at: Date.UTC(2026, 6, 1, 12, 30, 15, 123), id: 'abj76v82ficsmn446ri7' };
    assert.deepEqual(decodeCursor(encodeCursor(c)), c);
  });

  it('round-trips every id of [a-z0-9_-]{1,50} and every time a Date can hold (property)', () => {
    fc.assert(
      fc.property(arbAt, arbId, (at, id) => {
        const token = encodeCursor({ at, id });
        assert.ok(token.length <= MAX_PAGE_TOKEN_LENGTH, `token of ${token.length} characters`);
        assert.deepEqual(decodeCursor(token), { at, id });
      }),
      { numRuns: 500 },
    );
  });

  it('stays within 100 characters for the longest id and the farthest future', () => {
    assert.equal(MAX_PAGE_TOKEN_LENGTH, 100);
    const longest = encodeCursor({ at: MAX_DATE_MS, id: 'z'.repeat(50) });
    assert.ok(longest.length <= 100, `${longest.length} characters`);
    const maxSafe = encodeCursor({ at: Number.MAX_SAFE_INTEGER, id: '-'.repeat(50) });
    assert.ok(maxSafe.length <= 100, `${maxSafe.length} characters`);
  });

  it('uses only characters that need no escaping in a query string', () => {
    const token = encodeCursor({ at: MAX_DATE_MS, id: 'a_b-c'.repeat(10) });
    assert.match(token, /^[A-Za-z0-9_-]+$/);
    assert.equal(encodeURIComponent(token), token);
  });

  it('refuses malformed tokens with INVALID_ARGUMENT naming page_token', () => {
    const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
    for (const token of [
      'not a token!',
      '%%%',
      ' ',
      'Zm9v', // "foo"
      b64('1.'), // no id
      b64('.abc'), // no position
      b64('1.ABC'), // upper case id
      b64(`1.${'a'.repeat(51)}`), // id too long
      b64('1.a b'),
      b64('1.a\nb'),
      b64('-1.abc'), // negative position
      b64('1.5.abc'),
      b64('zzzzzzzzzzzzz.abc'), // position of 13 digits
      `${encodeCursor({ at: 1, id: 'abc' })}=`, // padding is not part of an issued token
      `${encodeCursor({ at: 1, id: 'abc' })}\n`,
      Buffer.from('1.abc', 'utf8').toString('base64').replace(/=+$/, '') + '+/',
    ]) {
      assertInvalidPageToken(token);
    }
  });

  // BUG (fixed in paging.ts): a 12-digit base-36 position decodes to a number past 2^53, which no
  // issued token can hold and which would silently lose precision.
  it('refuses a position beyond what a token of this service can hold', () => {
    assertInvalidPageToken(Buffer.from('zzzzzzzzzzzz.abc', 'utf8').toString('base64url'));
  });

  it('random strings only ever yield INVALID_ARGUMENT or a well-formed cursor (property)', () => {
    const check = (token: string) => {
      let cursor: Cursor | undefined;
      try {
        cursor = decodeCursor(token);
      } catch (e) {
        assert.ok(e instanceof KmsError, `threw ${String(e)} for ${JSON.stringify(token)}`);
        assert.equal(e.code, Code.InvalidArgument);
        return;
      }
      if (token === '') return assert.equal(cursor, undefined);
      assert.ok(cursor !== undefined);
      assert.match(cursor.id, /^[a-z0-9_-]{1,50}$/);
      assert.ok(Number.isSafeInteger(cursor.at) && cursor.at >= 0, `position ${cursor.at}`);
    };
    // Plain random text, random base64url text, and base64url of random text that looks like a cursor.
    const cursorish = fc
      .tuple(fc.string({ unit: fc.constantFrom(...'0123456789az.-_ A\u00e9'), maxLength: 20 }), fc.string({ maxLength: 60 }))
      .map(([a, b]) => Buffer.from(`${a}.${b}`, 'utf8').toString('base64url'));
    fc.assert(fc.property(fc.string({ maxLength: 150 }), check), { numRuns: 1000 });
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 150 }), check), { numRuns: 500 });
    fc.assert(fc.property(fc.base64String({ maxLength: 140 }), check), { numRuns: 500 });
    fc.assert(fc.property(cursorish, check), { numRuns: 1000 });
  });
});
