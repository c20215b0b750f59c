import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { devTlsFiles, ensureDevCertificates, readOperatorCertificate } from './dev-certificates.js';

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
