import { format, inspect } from 'node:util';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SecretBytes } from './secret-bytes.js';

// A recognisable key whose bytes are printable, so a leak would show in any text rendering.
const RAW = Buffer.from('SECRET-KEY-CANARY-0123456789abcd', 'latin1');
const FORBIDDEN = [RAW.toString('latin1'), 'CANARY', RAW.toString('hex'), RAW.toString('hex').slice(0, 12), RAW.toString('base64'), '83, 69, 67'];

function assertHidden(text: string, how: string): void {
  for (const f of FORBIDDEN) assert.equal(text.includes(f), false, `${how} shows the bytes: ${text}`);
}

describe('SecretBytes never prints its bytes', () => {
  const secret = new SecretBytes(RAW);

  it('JSON.stringify shows a placeholder, alone and nested', () => {
    assert.equal(JSON.stringify(secret), '"[secret]"');
    assert.equal(JSON.stringify({ key: secret, list: [secret] }), '{"key":"[secret]","list":["[secret]"]}');
  });

  it('util.inspect shows only the length, alone, nested and with showHidden', () => {
    assert.equal(inspect(secret), 'SecretBytes(32 bytes)');
    const nested = inspect({ a: { b: { c: secret } } }, { depth: Infinity, showHidden: true });
    assert.ok(nested.includes('SecretBytes(32 bytes)'));
    assertHidden(nested, 'nested inspect');
    assertHidden(inspect(secret, { showHidden: true, depth: Infinity, customInspect: true }), 'inspect showHidden');
  });

  it('util.format (what console.log uses) with %s, %o, %O, %j and plain', () => {
    for (const spec of ['%s', '%o', '%O', '%j', '%d']) assertHidden(format(spec, secret), `format ${spec}`);
    assertHidden(format(secret), 'format');
    assertHidden(format('key', { secret }), 'format object');
  });

  it('String(), a template literal and string concatenation show the placeholder', () => {
    assert.equal(String(secret), '[secret]');
    assert.equal(`${secret}`, '[secret]');
    assert.equal('k=' + secret, 'k=[secret]');
    assert.equal(secret.toString(), '[secret]');
  });

  it('has no enumerable own properties to copy or spread', () => {
    assert.deepEqual(Object.keys(secret), []);
    assert.deepEqual(Object.getOwnPropertyNames(secret), []);
    assert.deepEqual({ ...secret }, {});
    assert.equal(JSON.stringify(Object.assign({}, secret)), '{}');
  });

  it('exposeSecret() returns the bytes and length reports their count', () => {
    assert.equal(secret.length, 32);
    assert.deepEqual(secret.exposeSecret(), RAW);
  });
});

describe('SecretBytes ownership', () => {
  it('the constructor copies: changing or wiping the caller buffer leaves the secret intact', () => {
    const mine = Buffer.from(RAW);
    const secret = new SecretBytes(mine);
    mine.fill(0);
    assert.deepEqual(secret.exposeSecret(), RAW);
    assert.notEqual(secret.exposeSecret(), mine);
  });

  it('copies a plain Uint8Array too, including one that views part of a larger buffer', () => {
    const backing = new Uint8Array(64).fill(9);
    const view = new Uint8Array(backing.buffer, 16, 16);
    const secret = new SecretBytes(view);
    backing.fill(0);
    assert.equal(secret.length, 16);
    assert.deepEqual([...secret.exposeSecret()], new Array(16).fill(9));
  });

  it('holds small secrets in memory of their own, never in the shared Buffer pool', () => {
    const secret = new SecretBytes(RAW);
    const bytes = secret.exposeSecret();
    assert.equal(bytes.byteOffset, 0);
    assert.equal(bytes.buffer.byteLength, RAW.length, 'no other data shares its ArrayBuffer');
  });

  it('wipe() zeroes the bytes in place and keeps the length', () => {
    const secret = new SecretBytes(RAW);
    const view = secret.exposeSecret();
    secret.wipe();
    assert.equal(secret.length, 32);
    assert.ok(view.every((b) => b === 0));
    assert.ok(secret.exposeSecret().every((b) => b === 0));
    assert.notDeepEqual(RAW, Buffer.alloc(32), 'the source was not wiped');
  });

  it('an empty secret is fine', () => {
    const secret = new SecretBytes(new Uint8Array(0));
    assert.equal(secret.length, 0);
    assert.equal(inspect(secret), 'SecretBytes(0 bytes)');
    secret.wipe();
  });
});
