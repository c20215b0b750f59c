import { inspect } from 'node:util';

/**
 * Key material behind a handle that will not print: JSON, util.inspect and String() all show a
 * placeholder. `exposeSecret()` is the one greppable way to read the bytes.
 */
export class SecretBytes {
  readonly #bytes: Buffer;

  constructor(bytes: Uint8Array) {
    this.#bytes = Buffer.from(bytes); // a private copy: the caller may wipe its own
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
