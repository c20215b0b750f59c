import { inspect } from 'node:util';

/**
 * Key material behind a handle that will not print: JSON, util.inspect and String() all show a
 * placeholder. `exposeSecret()` is the one greppable way to read the bytes.
 */
export class SecretBytes {
  readonly #bytes: Buffer;

  constructor(bytes: Uint8Array) {
    // A private copy (the caller may wipe its own) in memory of its own: Buffer.from would put
    // small secrets into Node's shared 8 KiB pool, beside other data (whose .buffer then reaches
    // them), and one long-lived secret there keeps the whole pool slab alive.
    this.#bytes = Buffer.allocUnsafeSlow(bytes.length);
    this.#bytes.set(bytes);
  }

  get length(): number {
    return this.#bytes.length;
  }

  exposeSecret(): Buffer {
    return this.#bytes;
  }

  wipe(): void {
    this.#bytes.fill(0);
  }

  toJSON(): string {
    return '[secret]';
  }

  toString(): string {
    return '[secret]';
  }

  [inspect.custom](): string {
    return `SecretBytes(${this.#bytes.length} bytes)`;
  }
}
