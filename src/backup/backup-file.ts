import { createHash, type Hash } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { z } from 'zod';
import { SYMMETRIC_ALGORITHMS } from '../domain/key.js';
import type { SnapshotRecord, SnapshotRecordType, SnapshotStore } from '../ports/store.js';

// The kmsd backup file: a versioned stream of JSON lines, one typed record per line, written from
// a store's exportSnapshot and read back into importSnapshot. Nothing in it is a secret in the
// clear: key material stays wrapped by the root key (base64 of the stored bytes) and tokens are
// only the SHA-256 of their secret, so the file alone reveals no key and grants no access. The
// audit chain travels as stored (canonical bodies, chain hashes, the head's MAC): its key stays in
// meta wrapped by the root key, so `kmsd audit verify` checks a restored chain as it did before.
//
//   {"type":"header","format":"kmsd-backup","version":1,"createdAt":"…","source":"postgres"}
//   {"type":"meta","name":"root_key_check","value":"…"}
//   {"type":"principal","principal":{…}}          principals, then tokens, keys, versions, operations
//   {"type":"version","version":{…},"wrappedMaterial":"base64"}
//   …                                             operations, access bindings, the audit chain
//   {"type":"auditHead","head":{"seq":…,"hash":"…","mac":"…"}}
//   {"type":"end","counts":{"meta":2,…},"sha256":"<hex of every byte before this line>"}
//
// The trailer makes a truncated or altered file fail the restore (which then writes nothing). A
// new kind of record is a new `type` (and, if older kmsd must refuse the file, a new version);
// readers refuse types they do not know rather than drop them.

export const BACKUP_FORMAT = 'kmsd-backup';
export const BACKUP_VERSION = 1;

export class BackupFormatError extends Error {
  override name = 'BackupFormatError';
}

const time = z.number().int().nonnegative();
const id = z.string().min(1).max(200);
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64');

const keySchema = z.strictObject({
  id,
  folderId: id,
  name: z.string(),
  description: z.string(),
  labels: z.record(z.string(), z.string()),
  status: z.enum(['CREATING', 'ACTIVE', 'INACTIVE']),
  primaryVersionId: id,
  defaultAlgorithm: z.enum(SYMMETRIC_ALGORITHMS),
  createdAt: time,
  rotatedAt: time.optional(),
  rotationPeriodMs: time.optional(),
  deletionProtection: z.boolean(),
  deletedAt: time.optional(),
  revision: z.number().int().positive(),
});

const versionSchema = z.strictObject({
  id,
  keyId: id,
  status: z.enum(['ACTIVE', 'SCHEDULED_FOR_DESTRUCTION', 'DESTROYED']),
  algorithm: z.enum(SYMMETRIC_ALGORITHMS),
  createdAt: time,
  destroyAt: time.optional(),
  hostedByHsm: z.boolean(),
});

const metadataSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('CreateSymmetricKeyMetadata'), keyId: id, primaryVersionId: id }),
  z.strictObject({ type: z.literal('UpdateSymmetricKeyMetadata'), keyId: id }),
  z.strictObject({ type: z.literal('DeleteSymmetricKeyMetadata'), keyId: id }),
  z.strictObject({ type: z.literal('SetPrimarySymmetricKeyVersionMetadata'), keyId: id, versionId: id }),
  z.strictObject({ type: z.literal('ScheduleSymmetricKeyVersionDestructionMetadata'), keyId: id, versionId: id, destroyAt: time }),
  z.strictObject({ type: z.literal('CancelSymmetricKeyVersionDestructionMetadata'), keyId: id, versionId: id }),
  z.strictObject({ type: z.literal('RotateSymmetricKeyMetadata'), keyId: id, newPrimaryVersionId: id }),
]);

const responseSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('SymmetricKey'), view: z.strictObject({ key: keySchema, primaryVersion: versionSchema }) }),
  z.strictObject({ type: z.literal('SymmetricKeyVersion'), version: versionSchema, primary: z.boolean() }),
]);

const operationSchema = z.strictObject({
  id,
  description: z.string(),
  createdAt: time,
  createdBy: id,
  modifiedAt: time,
  done: z.boolean(),
  metadata: metadataSchema,
  response: responseSchema.optional(),
  error: z.strictObject({ code: z.number().int(), message: z.string() }).optional(),
  resourceId: id,
  idempotencyKey: z.string().optional(),
});

/** Each record type as it is in the file (bytes as base64). */
const LINE = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('meta'), name: z.string().min(1), value: z.string() }),
  z.strictObject({
    type: z.literal('principal'),
    principal: z.strictObject({ id, type: z.enum(['userAccount', 'serviceAccount']), name: z.string(), description: z.string().optional(), createdAt: time }),
  }),
  z.strictObject({
    type: z.literal('token'),
    token: z.strictObject({
      id,
      principalId: id,
      secretHash: base64,
      createdAt: time,
      expiresAt: time.optional(),
      revokedAt: time.optional(),
      description: z.string().optional(),
    }),
  }),
  z.strictObject({ type: z.literal('key'), key: keySchema }),
  z.strictObject({ type: z.literal('version'), version: versionSchema, wrappedMaterial: base64.optional() }),
  z.strictObject({ type: z.literal('operation'), operation: operationSchema }),
  z.strictObject({
    type: z.literal('binding'),
    scope: z.strictObject({ type: z.enum(['global', 'folder', 'key']), id: z.string().max(200) }),
    binding: z.strictObject({
      roleId: z.string().min(1).max(200),
      subject: z.strictObject({ type: z.enum(['userAccount', 'serviceAccount', 'federatedUser', 'system']), id }),
    }),
  }),
  z.strictObject({ type: z.literal('audit'), record: z.strictObject({ seq: z.number().int().positive(), body: z.string(), hash: z.string() }) }),
  z.strictObject({ type: z.literal('auditHead'), head: z.strictObject({ seq: z.number().int().nonnegative(), hash: z.string(), mac: z.string() }) }),
]);

const HEADER = z.strictObject({
  type: z.literal('header'),
  format: z.literal(BACKUP_FORMAT),
  version: z.number().int(),
  createdAt: z.string(),
  source: z.string(),
});

const RECORD_TYPES = ['meta', 'principal', 'token', 'key', 'version', 'operation', 'binding', 'audit', 'auditHead'] as const satisfies readonly SnapshotRecordType[];
// A count left out is 0, so a file without some kind of record is still read as it was written.
const countsSchema = z.strictObject(
  Object.fromEntries(RECORD_TYPES.map((t) => [t, z.number().int().nonnegative().optional()])) as Record<SnapshotRecordType, z.ZodOptional<z.ZodNumber>>,
);
const TRAILER = z.strictObject({ type: z.literal('end'), counts: countsSchema, sha256: z.string().regex(/^[0-9a-f]{64}$/) });

/** A record as one line of the file (without the newline). */
function toLine(r: SnapshotRecord): string {
  switch (r.type) {
    case 'token':
      return JSON.stringify({ type: r.type, token: { ...r.token, secretHash: r.token.secretHash.toString('base64') } });
    case 'version':
      return JSON.stringify({
        type: r.type,
        version: r.version,
        ...(r.wrappedMaterial === undefined ? {} : { wrappedMaterial: r.wrappedMaterial.toString('base64') }),
      });
    default:
      return JSON.stringify(r);
  }
}

function fromLine(value: z.output<typeof LINE>): SnapshotRecord {
  switch (value.type) {
    case 'token':
      return { type: 'token', token: { ...value.token, secretHash: Buffer.from(value.token.secretHash, 'base64') } };
    case 'version': {
      const { wrappedMaterial, ...rest } = value;
      return { ...rest, ...(wrappedMaterial === undefined ? {} : { wrappedMaterial: Buffer.from(wrappedMaterial, 'base64') }) };
    }
    default:
      return value;
  }
}

const emptyCounts = (): Record<SnapshotRecordType, number> => Object.fromEntries(RECORD_TYPES.map((t) => [t, 0])) as Record<SnapshotRecordType, number>;

/** Writes `text` to `out`, waiting when it asks to (a slow disk or pipe). */
async function write(out: Writable, hash: Hash | undefined, text: string): Promise<void> {
  hash?.update(text);
  if (!out.write(text)) {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        out.off('drain', onDrain);
        reject(e);
      };
      const onDrain = () => {
        out.off('error', onError);
        resolve();
      };
      out.once('drain', onDrain);
      out.once('error', onError);
    });
  }
}

/**
 * Writes a backup of `store` to `out` (which the caller ends and syncs): the store's snapshot, as
 * of one moment, between the header and the trailer. Returns the count of each record type.
 */
export async function writeBackup(
  store: Pick<SnapshotStore, 'exportSnapshot'>,
  out: Writable,
  source: string,
  now: () => Date = () => new Date(),
): Promise<Record<SnapshotRecordType, number>> {
  const hash = createHash('sha256');
  const counts = emptyCounts();
  await write(out, hash, `${JSON.stringify({ type: 'header', format: BACKUP_FORMAT, version: BACKUP_VERSION, createdAt: now().toISOString(), source })}\n`);
  for await (const record of store.exportSnapshot()) {
    counts[record.type]++;
    await write(out, hash, `${toLine(record)}\n`);
  }
  await write(out, undefined, `${JSON.stringify({ type: 'end', counts, sha256: hash.digest('hex') })}\n`);
  return counts;
}

function parseLine(text: string, line: number): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BackupFormatError(`line ${line}: not JSON`);
  }
}

/** The first problem zod found, named by its path; never the offending value (it may be material). */
function problem(error: z.ZodError): string {
  const first = error.issues[0];
  return first === undefined ? 'invalid' : `${first.path.join('.') || 'record'}: ${first.message}`;
}

export interface BackupHeader {
  readonly version: number;
  readonly createdAt: string;
  readonly source: string;
}

/**
 * The records of a backup read from `input`, checked line by line. Throws BackupFormatError (so a
 * restore consuming them writes nothing) on anything but a whole, unaltered file of a version this
 * kmsd reads: a missing or foreign header, an unknown record type, a malformed record, a missing
 * trailer (a truncated file), counts or a checksum that do not match, or anything after the
 * trailer. `onHeader` sees the header before the first record.
 */
export async function* readBackup(input: Readable, onHeader?: (h: BackupHeader) => void): AsyncGenerator<SnapshotRecord> {
  const hash = createHash('sha256');
  const counts = emptyCounts();
  let line = 0;
  let ended = false;
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const text of lines) {
      line++;
      if (ended) {
        if (text.trim() === '') continue;
        throw new BackupFormatError(`line ${line}: data after the end of the backup`);
      }
      const value = parseLine(text, line);
      if (line === 1) {
        const header = HEADER.safeParse(value);
        if (!header.success) throw new BackupFormatError('line 1: not a kmsd backup (no kmsd-backup header)');
        if (header.data.version !== BACKUP_VERSION) {
          throw new BackupFormatError(`line 1: backup format version ${header.data.version}; this kmsd reads version ${BACKUP_VERSION}`);
        }
        onHeader?.({ version: header.data.version, createdAt: header.data.createdAt, source: header.data.source });
        hash.update(`${text}\n`);
        continue;
      }
      if ((value as { type?: unknown } | null)?.type === 'end') {
        const trailer = TRAILER.safeParse(value);
        if (!trailer.success) throw new BackupFormatError(`line ${line}: malformed end of the backup (${problem(trailer.error)})`);
        if (trailer.data.sha256 !== hash.digest('hex')) throw new BackupFormatError('the backup was altered: its checksum does not match its contents');
        for (const t of RECORD_TYPES) {
          if ((trailer.data.counts[t] ?? 0) !== counts[t]) {
            throw new BackupFormatError(`the backup names ${trailer.data.counts[t] ?? 0} ${t} records but holds ${counts[t]}`);
          }
        }
        ended = true;
        continue;
      }
      const type = (value as { type?: unknown } | null)?.type;
      if (typeof type !== 'string' || !(RECORD_TYPES as readonly string[]).includes(type)) {
        throw new BackupFormatError(`line ${line}: unknown record type ${JSON.stringify(type)}; was it written by a newer kmsd?`);
      }
      const record = LINE.safeParse(value);
      if (!record.success) throw new BackupFormatError(`line ${line}: malformed ${type} record (${problem(record.error)})`);
      hash.update(`${text}\n`);
      counts[record.data.type]++;
      yield fromLine(record.data);
    }
  } finally {
    lines.close();
  }
  if (line === 0) throw new BackupFormatError('the backup is empty');
  if (!ended) throw new BackupFormatError(`the backup is truncated: it ends at line ${line} without its end record`);
}
