import { randomBytes } from 'node:crypto';
import type { Random } from '../ports/random.js';

export const cryptoRandom: Random = { bytes: (n) => randomBytes(n) };
