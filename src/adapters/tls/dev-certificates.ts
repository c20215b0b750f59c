import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import * as asn1 from 'asn1js';

// Without --tls-cert/--tls-key kmsd makes its own TLS: on first start a private CA (ECDSA P-256,
// 10 years) and a server certificate it signs for localhost, 127.0.0.1 and ::1 (1 year), kept in
// the data dir. Clients trust ca.pem, as `new Session({ ssl: { rootCerts } })` does with the SDK.
// The server certificate is re-issued from the same CA when it nears expiry, so clients keep
// trusting it.
//
// The certificates are DER built here with asn1js and signed with node:crypto: an X.509 library
// (@peculiar/x509, which made the same certificates before) took a third of a start to load
// (issue #7: ready in under 1 s). What they hold is fixed, so a few fields are all it takes.

const DAY_MS = 86_400_000;
const CA_VALIDITY_MS = 3650 * DAY_MS;
const SERVER_VALIDITY_MS = 365 * DAY_MS;
const RENEW_BEFORE_MS = 30 * DAY_MS;

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** An X.501 Name of one attribute per RDN, in order, as PrintableString (every value here is printable). */
function name(attributes: readonly (readonly [oid: string, value: string])[]): asn1.Sequence {
  return new asn1.Sequence({
    value: attributes.map(([oid, value]) => new asn1.Set({ value: [new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: oid }), new asn1.PrintableString({ value })] })] })),
  });
}
const CA_NAME = [
  [OID.commonName, 'kmsd local CA'],
  [OID.organizationName, 'kmsd'],
] as const;
const SERVER_NAME = [[OID.commonName, 'localhost']] as const;
const SERVER_DNS_NAMES = ['localhost'];
const SERVER_IPS = ['127.0.0.1', '::1'];

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds. */
function time(ms: number): asn1.UTCTime | asn1.GeneralizedTime {
  const valueDate = new Date(Math.floor(ms / 1000) * 1000);
  return valueDate.getUTCFullYear() < 2050 ? new asn1.UTCTime({ valueDate }) : new asn1.GeneralizedTime({ valueDate });
}

/** A 16-byte positive serial number, as DER wants it: no leading zero byte. */
function serial(): asn1.Integer {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f || 0x01;
  return new asn1.Integer({ valueHex: bytes });
}

function extension(oid: string, critical: boolean, value: asn1.AsnType | Buffer): asn1.Sequence {
  const der = Buffer.isBuffer(value) ? value : Buffer.from(value.toBER());
  return new asn1.Sequence({
    value: [new asn1.ObjectIdentifier({ value: oid }), ...(critical ? [new asn1.Boolean({ value: true })] : []), new asn1.OctetString({ valueHex: der })],
  });
}

/** SHA-1 of the public key's bits (RFC 5280 §4.2.1.2, method 1), as the subject/authority key identifier. */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const bits = (asn1.fromBER(spki).result as asn1.Sequence).valueBlock.value[1] as asn1.BitString;
  return createHash('sha1').update(Buffer.from(bits.valueBlock.valueHexView)).digest();
}

/** Parses DER that node:crypto or a certificate gave us; anything else is a bug. */
function parsed(der: Uint8Array): asn1.AsnType {
  const { offset, result } = asn1.fromBER(der);
  if (offset === -1) throw new Error(`malformed DER: ${result.error}`);
  return result;
}

/** A v3 certificate with `tbs` fields, signed by `signingKey` with ECDSA P-256 / SHA-256. */
function certificate(p: {
  readonly issuer: asn1.AsnType;
  readonly subject: asn1.AsnType;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly publicKey: KeyObject;
  readonly extensions: readonly asn1.Sequence[];
  readonly signingKey: KeyObject;
}): string {
  const algorithm = () => new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: OID.ecdsaWithSha256 })] });
  const tbs = new asn1.Sequence({
    value: [
      new asn1.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1.Integer({ value: 2 })] }),
      serial(),
      algorithm(),
      p.issuer,
      new asn1.Sequence({ value: [time(p.notBefore), time(p.notAfter)] }),
      p.subject,
      parsed(p.publicKey.export({ type: 'spki', format: 'der' })),
      new asn1.Constructed({ idBlock: { tagClass: 3, tagNumber: 3 }, value: [new asn1.Sequence({ value: [...p.extensions] })] }),
    ],
  });
  const tbsDer = Buffer.from(tbs.toBER());
  // node:crypto signs EC keys with a DER Ecdsa-Sig-Value, as X.509 wants.
  const signature = sign('sha256', tbsDer, p.signingKey);
  const der = new asn1.Sequence({ value: [parsed(tbsDer), algorithm(), new asn1.BitString({ valueHex: signature })] }).toBER();
  return pem('CERTIFICATE', Buffer.from(der));
}

function pem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END ${label}-----\n`;
}

const newKeyPair = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pkcs8Pem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }) as string;

function issueCaCertificate(now: number): { certPem: string; keyPem: string } {
  const { publicKey, privateKey } = newKeyPair();
  const certPem = certificate({
    issuer: name(CA_NAME),
    subject: name(CA_NAME),
    notBefore: now - 60_000,
    notAfter: now + CA_VALIDITY_MS,
    publicKey,
    signingKey: privateKey,
    extensions: [
      extension(OID.basicConstraints, true, new asn1.Sequence({ value: [new asn1.Boolean({ value: true }), new asn1.Integer({ value: 0 })] })),
      // BIT STRING keyCertSign | cRLSign (bits 5 and 6).
      extension(OID.keyUsage, true, Buffer.from('03020106', 'hex')),
      extension(OID.subjectKeyIdentifier, false, new asn1.OctetString({ valueHex: keyIdentifier(publicKey) })),
    ],
  });
  return { certPem, keyPem: pkcs8Pem(privateKey) };
}

/** The subject Name of a certificate, as it is encoded there (the issuer of what it signs must match it byte for byte). */
function subjectOf(cert: X509Certificate): asn1.AsnType {
  const tbs = (parsed(cert.raw) as asn1.Sequence).valueBlock.value[0] as asn1.Sequence;
  // version [0], serialNumber, signature, issuer, validity, subject
  return parsed(new Uint8Array((tbs.valueBlock.value[5] as asn1.Sequence).valueBeforeDecodeView));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // Only the fixed addresses above: "::1" is all zeros but the last byte.
  if (ip !== '::1') throw new Error(`unsupported IPv6 address ${ip}`);
  const b = Buffer.alloc(16);
  b[15] = 1;
  return b;
}

function issueServerCertificate(ca: X509Certificate, caKey: KeyObject, now: number): { certPem: string; keyPem: string } {
  const { publicKey, privateKey } = newKeyPair();
  const names = [
    // GeneralName dNSName [2] IA5String and iPAddress [7] OCTET STRING, both implicitly tagged.
    ...SERVER_DNS_NAMES.map((dns) => new asn1.Primitive({ idBlock: { tagClass: 3, tagNumber: 2 }, valueHex: Buffer.from(dns, 'ascii') })),
    ...SERVER_IPS.map((ip) => new asn1.Primitive({ idBlock: { tagClass: 3, tagNumber: 7 }, valueHex: ipBytes(ip) })),
  ];
  const certPem = certificate({
    issuer: subjectOf(ca),
    subject: name(SERVER_NAME),
    notBefore: now - 60_000,
    notAfter: now + SERVER_VALIDITY_MS,
    publicKey,
    signingKey: caKey,
    extensions: [
      extension(OID.basicConstraints, true, new asn1.Sequence({ value: [] })),
      // BIT STRING digitalSignature (bit 0).
      extension(OID.keyUsage, true, Buffer.from('03020780', 'hex')),
      extension(OID.extKeyUsage, false, new asn1.Sequence({ value: [new asn1.ObjectIdentifier({ value: OID.serverAuth })] })),
      extension(OID.subjectAltName, false, new asn1.Sequence({ value: names })),
      // keyIdentifier [0], implicitly tagged: the CA's subject key identifier.
      extension(OID.authorityKeyIdentifier, false, new asn1.Sequence({ value: [new asn1.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: keyIdentifier(ca.publicKey) })] })),
    ],
  });
  return { certPem, keyPem: pkcs8Pem(privateKey) };
}

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

function expiresSoon(certFile: string, now: number): boolean {
  const cert = new X509Certificate(readFileSync(certFile));
  return Date.parse(cert.validTo) - now < RENEW_BEFORE_MS;
}

/** Makes (or renews) the data dir's CA and server certificate; returns the server's PEM cert and key. */
export async function ensureDevCertificates(dataDir: string, now = Date.now()): Promise<TlsMaterial> {
  const files = devTlsFiles(dataDir);
  let generated: TlsMaterial['generated'] = 'none';
  if (!existsSync(files.caFile) || !existsSync(caKeyFile(dataDir))) {
    const { certPem, keyPem } = issueCaCertificate(now);
    writeAtomically(caKeyFile(dataDir), keyPem, 0o600);
    writeAtomically(files.caFile, certPem, 0o644);
    generated = 'ca-and-server';
  }
  if (generated !== 'none' || !existsSync(files.certFile) || !existsSync(files.keyFile) || expiresSoon(files.certFile, now)) {
    const ca = new X509Certificate(readFileSync(files.caFile));
    const caKey = createPrivateKey(readFileSync(caKeyFile(dataDir)));
    const { certPem, keyPem } = issueServerCertificate(ca, caKey, now);
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
