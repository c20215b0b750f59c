import type { Random } from '../ports/random.js';

// IDs shaped like the real service's (SPEC.md §1.11): a 3-letter prefix and 17 characters of 0-9a-v.
const ALPHABET = '0123456789abcdefghijklmnopqrstuv';
export const ID_BODY_LENGTH = 17;

export function newId(random: Random, prefix = 'abj'): string {
  const bytes = random.bytes(ID_BODY_LENGTH);
  let id = prefix;
  for (const b of bytes) id += ALPHABET[b & 31];
  return id;
}

/** Ids kmsd accepts for seeded resources: what a client could send in a path without escaping. */
export const SEED_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,49}$/;
