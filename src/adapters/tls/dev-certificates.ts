import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as X509 from '@peculiar/x509';

// Without --tls-cert/--tls-key kmsd makes its own TLS: on first start a private CA (ECDSA P-256,
// 10 years) and a server certificate it signs for localhost, 127.0.0.1 and ::1 (1 year), kept in
// the data dir. Clients trust ca.pem, as `new Session({ ssl: { rootCerts } })` does with the SDK.
// The server certificate is re-issued from the same CA when it nears expiry, so clients keep
// trusting it.

/**
 * @peculiar/x509, loaded only to make certificates: it is the slowest module kmsd has to load, and
 * a start that finds its certificate made (every start but the first, and every worker of
 * --workers) does not need it.
 */
let x509Module: Promise<typeof X509> | undefined;
function loadX509(): Promise<typeof X509> {
  return (x509Module ??= import('@peculiar/x509').then((x509) => {
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    return x509;
  }));
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CA_VALIDITY_MS = 3650 * DAY_MS;
const SERVER_VALIDITY_MS = 365 * DAY_MS;
const RENEW_BEFORE_MS = 30 * DAY_MS;

export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsMaterial {
  /** The CA clients should trust, when kmsd made it; undefined for an operator's certificate. */
  readonly caFile?: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** What happened at this start, for the log. */
  readonly generated: 'ca-and-server' | 'server' | 'none';
}

export const devTlsFiles = (dataDir: string): TlsFiles => ({
  caFile: join(dataDir, 'ca.pem'),
  certFile: join(dataDir, 'tls.crt'),
  keyFile: join(dataDir, 'tls.key'),
});

const caKeyFile = (dataDir: string) => join(dataDir, 'ca.key');

function writeAtomically(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode, flag: 'w' });
  renameSync(tmp, path);
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

async function importPkcs8Pem(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']) as Promise<CryptoKey>;
}

const serial = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1');

async function issueServerCertificate(x509: typeof X509, ca: X509.X509Certificate, caKey: CryptoKey, now: number): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost',
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + SERVER_VALIDITY_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await pkcs8Pem(keys.privateKey) };
}

function expiresSoon(certFile: string, now: number): boolean {
  const cert = new X509Certificate(readFileSync(certFile));
  return Date.parse(cert.validTo) - now < RENEW_BEFORE_MS;
}

/** Makes (or renews) the data dir's CA and server certificate; returns the server's PEM cert and key. */
export async function ensureDevCertificates(dataDir: string, now = Date.now()): Promise<TlsMaterial> {
  const files = devTlsFiles(dataDir);
  let generated: TlsMaterial['generated'] = 'none';
  if (!existsSync(files.caFile) || !existsSync(caKeyFile(dataDir))) {
    const x509 = await loadX509();
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: 'CN=kmsd local CA, O=kmsd',
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + CA_VALIDITY_MS),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    writeAtomically(caKeyFile(dataDir), await pkcs8Pem(keys.privateKey), 0o600);
    writeAtomically(files.caFile, ca.toString('pem') + '\n', 0o644);
    generated = 'ca-and-server';
  }
  if (generated !== 'none' || !existsSync(files.certFile) || !existsSync(files.keyFile) || expiresSoon(files.certFile, now)) {
    const x509 = await loadX509();
    const ca = new x509.X509Certificate(readFileSync(files.caFile, 'utf8'));
    const caKey = await importPkcs8Pem(readFileSync(caKeyFile(dataDir), 'utf8'));
    const { certPem, keyPem } = await issueServerCertificate(x509, ca, caKey, now);
    writeAtomically(files.keyFile, keyPem, 0o600);
    writeAtomically(files.certFile, certPem, 0o644);
    if (generated === 'none') generated = 'server';
  }
  return { ...files, cert: readFileSync(files.certFile), key: readFileSync(files.keyFile), generated };
}

/** --tls-cert/--tls-key given by the operator: read them, and check they belong together. */
export function readOperatorCertificate(certFile: string, keyFile: string): TlsMaterial {
  const cert = readFileSync(certFile);
  const key = readFileSync(keyFile);
  const parsed = new X509Certificate(cert);
  if (!parsed.checkPrivateKey(createPrivateKey(key))) throw new Error(`${keyFile} is not the private key of ${certFile}`);
  return { certFile, keyFile, cert, key, generated: 'none' };
}

/** The certificate ensureDevCertificates made in `dataDir`, read without making or renewing anything. */
export function readDevCertificates(dataDir: string): TlsMaterial {
  const files = devTlsFiles(dataDir);
  return { ...readOperatorCertificate(files.certFile, files.keyFile), caFile: files.caFile };
}
