import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SEED_ID_PATTERN } from '../domain/ids.js';
import { assertAlgorithmAvailable, assertRotationPeriod, MATERIAL_LENGTH, SYMMETRIC_ALGORITHMS } from '../domain/key.js';
import { CreateSymmetricKeyRequestSchema, type CreateSymmetricKeyRequest } from '../gen/yandex/cloud/kms/v1/symmetric_key_service_pb.js';
import type { CreateKeyInput, KeyService, SeedVersion } from '../services/keys/key-service.js';
import { algorithmFromPb, durationToMs } from '../transport/shared/kms-messages.js';
import { validateRequest } from '../transport/shared/validation.js';
import { messageFromJson } from '../transport/rest/json-codec.js';

// --seed FILE: keys with fixed ids (and optionally fixed material) that tests can rely on. Each
// key is a CreateSymmetricKeyRequest in its JSON form — the same field names, rules and limits as
// the API — plus `id`, and optionally `versions` and `primaryVersionId`. Idempotent: a key whose
// id exists is left alone.
//
//   keys:
//     - id: abjdevkey00000000001
//       folderId: b1gdev
//       name: app
//       defaultAlgorithm: AES_256
//       rotationPeriod: 2592000s
//       labels: { env: dev }
//       versions:
//         - id: abjdevversion0000001
//           material: <base64 of 32 bytes>

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64').transform((s) => Buffer.from(s, 'base64'));
const seedId = z.string().regex(SEED_ID_PATTERN, 'must be 1-50 characters of a-z 0-9 _ - starting with a letter or digit');

const SeedVersionSchema = z.strictObject({
  id: seedId.optional(),
  algorithm: z.enum(SYMMETRIC_ALGORITHMS).optional(),
  material: base64.optional(),
});

const SeedKeySchema = z
  .looseObject({
    id: seedId,
    versions: z.array(SeedVersionSchema).min(1).max(100).optional(),
    primaryVersionId: seedId.optional(),
  })
  .superRefine((k, ctx) => {
    const ids = (k.versions ?? []).map((v) => v.id).filter((v) => v !== undefined);
    if (new Set(ids).size !== ids.length) ctx.addIssue({ code: 'custom', message: 'version ids must be unique' });
    if (k.primaryVersionId !== undefined && !ids.includes(k.primaryVersionId)) {
      ctx.addIssue({ code: 'custom', path: ['primaryVersionId'], message: 'must be the id of one of the versions' });
    }
  });

const SeedFileSchema = z.strictObject({ keys: z.array(SeedKeySchema).default([]) });

export class SeedError extends Error {
  override name = 'SeedError';
}

export interface SeedResult {
  readonly created: string[];
  readonly existing: string[];
}

export async function parseSeedFile(path: string): Promise<z.infer<typeof SeedFileSchema>> {
  let doc: unknown;
  try {
    const text = readFileSync(path, 'utf8');
    // The YAML parser is loaded only for a seed file: most starts have none (issue #7: start time).
    const { parse: parseYaml } = await import('yaml');
    doc = parseYaml(text);
  } catch (e) {
    throw new SeedError(`seed file ${path}: ${(e as Error).message}`);
  }
  const parsed = SeedFileSchema.safeParse(doc ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    // keys[1].versions[0].material, as the errors of applySeedFile name entries.
    const where = issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
    throw new SeedError(`seed file ${path}: ${where || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

interface SeedPlan {
  readonly where: string;
  readonly input: CreateKeyInput;
  readonly fixed: { id: string; versions?: SeedVersion[]; primaryVersionId?: string };
}

/** Checks one entry completely (API rules, algorithms, material lengths) without touching the store. */
function planEntry(path: string, i: number, entry: z.infer<typeof SeedKeySchema>): SeedPlan {
  const { id, versions, primaryVersionId, ...create } = entry;
  const where = `seed file ${path}: keys[${i}] (${id})`;
  try {
    const request = messageFromJson(CreateSymmetricKeyRequestSchema, JSON.parse(JSON.stringify(create))) as CreateSymmetricKeyRequest;
    validateRequest(CreateSymmetricKeyRequestSchema, request);
    const defaultAlgorithm = algorithmFromPb(request.defaultAlgorithm)!;
    const rotationPeriodMs = durationToMs(request.rotationPeriod, 'rotation_period');
    assertAlgorithmAvailable(defaultAlgorithm, false);
    assertRotationPeriod(rotationPeriodMs);
    for (const [j, v] of (versions ?? []).entries()) {
      const algorithm = v.algorithm ?? defaultAlgorithm;
      assertAlgorithmAvailable(algorithm, false);
      const length = MATERIAL_LENGTH[algorithm];
      if (v.material && v.material.length !== length) throw new Error(`versions[${j}].material: ${algorithm} needs ${length} bytes, got ${v.material.length}`);
    }
    return {
      where,
      input: {
        folderId: request.folderId,
        name: request.name,
        description: request.description,
        labels: request.labels,
        defaultAlgorithm,
        rotationPeriodMs,
        deletionProtection: request.deletionProtection,
      },
      fixed: { id, ...(versions ? { versions } : {}), ...(primaryVersionId ? { primaryVersionId } : {}) },
    };
  } catch (e) {
    throw new SeedError(`${where}: ${(e as Error).message}`);
  }
}

/** Validates the whole file first, so a bad entry stops the start before any key is created. */
export async function applySeedFile(path: string, keys: Pick<KeyService, 'seed'>): Promise<SeedResult> {
  const plans = (await parseSeedFile(path)).keys.map((entry, i) => planEntry(path, i, entry));
  const result: SeedResult = { created: [], existing: [] };
  for (const plan of plans) {
    try {
      const outcome = await keys.seed(plan.input, plan.fixed);
      (outcome === 'created' ? result.created : result.existing).push(plan.fixed.id);
    } catch (e) {
      throw new SeedError(`${plan.where}: ${(e as Error).message}`);
    }
  }
  return result;
}
