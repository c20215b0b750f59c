import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { devTlsFiles, ensureDevCertificates, readDevCertificates, readOperatorCertificate } from './dev-certificates.js';

// kmsd's own TLS for gRPC: a private CA and a localhost certificate, checked with OpenSSL as an
// independent verifier, renewed from the same CA before it expires.

const dirs: string[] = [];
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'kmsd-tls-'));
  dirs.push(d);
  return d;
};
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const DAY = 86_400_000;
const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('ensureDevCertificates', () => {
  it('makes a CA and a server certificate for localhost, 127.0.0.1 and ::1 that OpenSSL verifies', async () => {
    const dir = fresh();
    const tls = await ensureDevCertificates(dir);
    assert.equal(tls.generated, 'ca-and-server');
    assert.deepEqual({ caFile: tls.caFile, certFile: tls.certFile, keyFile: tls.keyFile }, devTlsFiles(dir));
    assert.match(openssl('verify', '-CAfile', tls.caFile!, tls.certFile), /: OK/);
    for (const host of ['localhost']) assert.match(openssl('verify', '-CAfile', tls.caFile!, '-verify_hostname', host, tls.certFile), /: OK/);
    for (const ip of ['127.0.0.1', '::1']) assert.match(openssl('verify', '-CAfile', tls.caFile!, '-verify_ip', ip, tls.certFile), /: OK/);
    assert.throws(() => openssl('verify', '-CAfile', tls.caFile!, '-verify_hostname', 'example.com', tls.certFile), 'not valid for other names');
    const cert = new X509Certificate(tls.cert);
    assert.equal(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(tls.key)), true);
    assert.equal(new X509Certificate(readFileSync(tls.caFile!)).ca, true);
    assert.equal(cert.ca, false);
  });

  it('keeps private keys private (0600) and the certificates readable', async () => {
    const dir = fresh();
    await ensureDevCertificates(dir);
    const mode = (f: string) => statSync(join(dir, f)).mode & 0o777;
    assert.equal(mode('tls.key'), 0o600);
    assert.equal(mode('ca.key'), 0o600);
    assert.equal(mode('ca.pem'), 0o644);
  });

  it('reuses what exists on the next start', async () => {
    const dir = fresh();
    const first = await ensureDevCertificates(dir);
    const again = await ensureDevCertificates(dir);
    assert.equal(again.generated, 'none');
    assert.ok(again.cert.equals(first.cert));
    assert.ok(again.key.equals(first.key));
  });

  it('re-issues the server certificate from the same CA when it nears expiry, so clients keep trusting it', async () => {
    const dir = fresh();
    const first = await ensureDevCertificates(dir);
    const ca = readFileSync(first.caFile!);
    const later = Date.now() + 340 * DAY;
    const renewed = await ensureDevCertificates(dir, later);
    assert.equal(renewed.generated, 'server');
    assert.ok(readFileSync(renewed.caFile!).equals(ca), 'the CA is unchanged');
    assert.ok(!renewed.cert.equals(first.cert));
    assert.ok(Date.parse(new X509Certificate(renewed.cert).validTo) > later + 300 * DAY);
    assert.match(openssl('verify', '-attime', String(Math.floor(later / 1000)), '-CAfile', renewed.caFile!, renewed.certFile), /: OK/);
  });
});

/** `openssl x509 -text` of a PEM file, or the named extension's text. */
const text = (file: string) => openssl('x509', '-in', file, '-noout', '-text');
const extension = (file: string, name: string) => {
  const m = new RegExp(`X509v3 ${name}:( critical)? *\\n\\s*([^\\n]*)`).exec(text(file));
  assert.ok(m, `${file} has no ${name}`);
  return { critical: m[1] !== undefined, value: m[2]!.trim() };
};
const strictVerify = (caFile: string, certFile: string, ...args: string[]) => openssl('verify', '-x509_strict', ...args, '-CAfile', caFile, certFile);

describe('the certificates made', () => {
  it('pass OpenSSL\'s strict verification and hold what a CA and a localhost server certificate need', async () => {
    const tls = await ensureDevCertificates(fresh());
    const caFile = tls.caFile!;
    assert.match(strictVerify(caFile, caFile), /: OK/);
    assert.match(strictVerify(caFile, tls.certFile), /: OK/);
    assert.match(strictVerify(caFile, tls.certFile, '-purpose', 'sslserver'), /: OK/);

    assert.match(text(caFile), /Version: 3 \(0x2\)/);
    assert.match(text(caFile), /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text(caFile), /Subject: CN ?= ?kmsd local CA, O ?= ?kmsd/);
    assert.match(text(caFile), /Issuer: CN ?= ?kmsd local CA, O ?= ?kmsd/);
    assert.match(text(caFile), /NIST CURVE: P-256/);
    assert.deepEqual(extension(caFile, 'Basic Constraints'), { critical: true, value: 'CA:TRUE, pathlen:0' });
    assert.deepEqual(extension(caFile, 'Key Usage'), { critical: true, value: 'Certificate Sign, CRL Sign' });
    const ski = extension(caFile, 'Subject Key Identifier');
    assert.equal(ski.critical, false);

    const cert = tls.certFile;
    assert.match(text(cert), /Subject: CN ?= ?localhost\n/);
    assert.match(text(cert), /Issuer: CN ?= ?kmsd local CA, O ?= ?kmsd/);
    assert.deepEqual(extension(cert, 'Basic Constraints'), { critical: true, value: 'CA:FALSE' });
    assert.deepEqual(extension(cert, 'Key Usage'), { critical: true, value: 'Digital Signature' });
    assert.deepEqual(extension(cert, 'Extended Key Usage'), { critical: false, value: 'TLS Web Server Authentication' });
    assert.deepEqual(extension(cert, 'Subject Alternative Name'), { critical: false, value: 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1' });
    assert.equal(extension(cert, 'Authority Key Identifier').critical, false);
    assert.equal(extension(cert, 'Authority Key Identifier').value.replace(/^keyid:/, ''), ski.value, 'the authority key identifier is the CA\'s subject key identifier');

    // Validity: the CA for 10 years, the server certificate for one, both from a minute ago.
    const ca = new X509Certificate(readFileSync(caFile));
    const leaf = new X509Certificate(tls.cert);
    const days = (c: X509Certificate) => (Date.parse(c.validTo) - Date.parse(c.validFrom)) / DAY;
    assert.ok(Math.abs(days(ca) - 3650) < 0.01, `CA valid ${days(ca)} days`);
    assert.ok(Math.abs(days(leaf) - 365) < 0.01, `server certificate valid ${days(leaf)} days`);
    assert.ok(Date.parse(leaf.validFrom) <= Date.now() - 30_000);
    assert.notEqual(ca.serialNumber, leaf.serialNumber);
  });

  it('writes times from 2050 on as GeneralizedTime, which OpenSSL reads back', async () => {
    const now = Date.UTC(2045, 0, 1);
    const tls = await ensureDevCertificates(fresh(), now);
    const ca = new X509Certificate(readFileSync(tls.caFile!));
    assert.equal(new Date(ca.validTo).getUTCFullYear(), 2054);
    assert.match(openssl('asn1parse', '-in', tls.caFile!), /GENERALIZEDTIME/);
    assert.match(strictVerify(tls.caFile!, tls.certFile, '-attime', String(Math.floor(now / 1000) + 3600)), /: OK/);
  });
});

describe('a data directory whose certificates @peculiar/x509 made (kmsd before it built them itself)', () => {
  // test/vectors/dev-tls-peculiar-x509: ca.pem, ca.key, tls.crt, tls.key as an older kmsd wrote them.
  const VECTORS = join(import.meta.dirname, '..', '..', '..', 'test', 'vectors', 'dev-tls-peculiar-x509');
  const copy = () => {
    const dir = fresh();
    for (const f of readdirSync(VECTORS)) {
      copyFileSync(join(VECTORS, f), join(dir, f));
      chmodSync(join(dir, f), f.endsWith('.key') ? 0o600 : 0o644);
    }
    return dir;
  };
  const old = new X509Certificate(readFileSync(join(VECTORS, 'tls.crt')));
  const issued = Date.parse(old.validFrom);

  it('is served as it is while its certificate is valid', async () => {
    const dir = copy();
    const tls = await ensureDevCertificates(dir, issued + DAY);
    assert.equal(tls.generated, 'none');
    assert.ok(tls.cert.equals(readFileSync(join(VECTORS, 'tls.crt'))));
    assert.ok(readDevCertificates(dir).cert.equals(tls.cert));
  });

  it('has its server certificate renewed from its CA, which clients keep trusting', async () => {
    const dir = copy();
    const later = issued + 340 * DAY;
    const renewed = await ensureDevCertificates(dir, later);
    assert.equal(renewed.generated, 'server');
    assert.ok(readFileSync(renewed.caFile!).equals(readFileSync(join(VECTORS, 'ca.pem'))), 'the CA is unchanged');
    assert.ok(!renewed.cert.equals(old.raw));
    assert.match(strictVerify(renewed.caFile!, renewed.certFile, '-attime', String(Math.floor(later / 1000)), '-purpose', 'sslserver'), /: OK/);
    const caSki = extension(renewed.caFile!, 'Subject Key Identifier').value;
    assert.equal(extension(renewed.certFile, 'Authority Key Identifier').value.replace(/^keyid:/, ''), caSki);
    assert.equal(new X509Certificate(renewed.cert).issuer, new X509Certificate(readFileSync(renewed.caFile!)).subject);
    assert.equal(new X509Certificate(renewed.cert).checkIssued(new X509Certificate(readFileSync(renewed.caFile!))), true);
  });
});

describe('readOperatorCertificate', () => {
  it('accepts a matching certificate and key, and refuses a key of another certificate', async () => {
    const a = await ensureDevCertificates(fresh());
    const b = await ensureDevCertificates(fresh());
    const ok = readOperatorCertificate(a.certFile, a.keyFile);
    assert.ok(ok.cert.equals(a.cert));
    assert.equal(ok.caFile, undefined);
    assert.throws(() => readOperatorCertificate(a.certFile, b.keyFile), /is not the private key of/);
  });
});
