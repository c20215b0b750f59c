import pkcs11js from 'pkcs11js';

// One PKCS#11 token, logged in, with a small pool of sessions. Everything kmsd does with an HSM
// goes through Pkcs11Token.withSession, the one place where sessions are taken and given back, and
// Pkcs11Token.close, the one place where they are closed and the module finalised.
//
// Why a pool: a PKCS#11 session runs one operation at a time, and pkcs11js's *Async calls run the
// module on libuv's thread pool, so several sessions let requests proceed in parallel without
// blocking the event loop. The login state belongs to the application, not to a session: logging
// in once logs in every session of this process on that token, and closing the last session logs
// out, so the pool keeps its sessions open until close().
//
// A PKCS#11 module is process-wide state (C_Initialize may be called once per process), so the
// loaded modules are shared by reference count; two root keys in one token share the login too.

type Handle = Buffer;

/** A problem that stops kmsd from using the HSM at start: its message is for the operator. */
export class Pkcs11Error extends Error {
  override name = 'Pkcs11Error';
}

/** The CKR_* name of a PKCS#11 failure (pkcs11js puts it in the message), or undefined for other errors. */
export function ckrName(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const m = /\bCKR_[A-Z_]+\b/.exec(e.message);
  return m?.[0];
}

export interface TokenSelector {
  /** Path of the PKCS#11 module (.so). */
  readonly module: string;
  /** CKA token label, or the slot id. */
  readonly token?: string;
  readonly slot?: bigint;
}

export interface Session {
  readonly handle: Handle;
  readonly p11: pkcs11js.PKCS11;
}

interface LoadedModule {
  readonly p11: pkcs11js.PKCS11;
  refs: number;
}

const modules = new Map<string, LoadedModule>();
const tokens = new Map<string, { token: Pkcs11Token; refs: number; pin: string }>();

function loadModule(path: string): LoadedModule {
  const loaded = modules.get(path);
  if (loaded) {
    loaded.refs++;
    return loaded;
  }
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(path);
  } catch (e) {
    throw new Pkcs11Error(`PKCS#11 module ${path} cannot be loaded: ${(e as Error).message}`);
  }
  try {
    // OS locking: the module may be called from libuv's worker threads (the *Async calls).
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrName(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      p11.close();
      throw new Pkcs11Error(`PKCS#11 module ${path} failed to initialise: ${ckrName(e) ?? (e as Error).message}`);
    }
  }
  const fresh = { p11, refs: 1 };
  modules.set(path, fresh);
  return fresh;
}

function releaseModule(path: string): void {
  const loaded = modules.get(path);
  if (!loaded || --loaded.refs > 0) return;
  modules.delete(path);
  try {
    loaded.p11.C_Finalize();
  } finally {
    loaded.p11.close();
  }
}

const trimLabel = (label: string): string => label.replace(/[\s\0]+$/, '');

function slotId(handle: Handle): bigint {
  return handle.length >= 8 ? handle.readBigUInt64LE(0) : BigInt(handle.readUInt32LE(0));
}

function describe(sel: TokenSelector): string {
  return sel.token !== undefined ? `token "${sel.token}"` : `slot ${sel.slot}`;
}

function findSlot(p11: pkcs11js.PKCS11, sel: TokenSelector): { slot: Handle; label: string } {
  const found: { slot: Handle; label: string }[] = [];
  for (const slot of p11.C_GetSlotList(true)) {
    let label: string;
    try {
      label = trimLabel(p11.C_GetTokenInfo(slot).label);
    } catch {
      continue; // a slot whose token went away between the two calls
    }
    found.push({ slot, label });
  }
  const match = found.filter((f) => (sel.token !== undefined ? f.label === sel.token : slotId(f.slot) === sel.slot));
  if (match.length === 1) return match[0]!;
  const present = found.length === 0 ? 'no token is present' : `tokens present: ${found.map((f) => `"${f.label}" (slot ${slotId(f.slot)})`).join(', ')}`;
  if (match.length === 0) throw new Pkcs11Error(`PKCS#11 module ${sel.module} has no ${describe(sel)} (${present})`);
  throw new Pkcs11Error(`PKCS#11 module ${sel.module} has ${match.length} tokens labelled "${sel.token}"; select one with slot=ID (${present})`);
}

const PIN_ERRORS: Record<string, string> = {
  CKR_PIN_INCORRECT: 'the PIN is incorrect',
  CKR_PIN_LOCKED: 'the PIN is locked (too many wrong attempts); unlock it with the security officer PIN',
  CKR_PIN_EXPIRED: 'the PIN has expired; set a new one',
  CKR_PIN_INVALID: 'the PIN has characters the token does not accept',
  CKR_PIN_LEN_RANGE: 'the PIN has a length the token does not accept',
  CKR_USER_PIN_NOT_INITIALIZED: 'the token has no user PIN yet (initialise it, e.g. softhsm2-util --init-token)',
};

export class Pkcs11Token {
  readonly #module: string;
  readonly #p11: pkcs11js.PKCS11;
  readonly #slot: Handle;
  readonly #pin: string;
  readonly #maxSessions: number;
  readonly #idle: Handle[] = [];
  readonly #waiting: ((s: Handle) => void)[] = [];
  #open = 0;
  #closed = false;
  readonly label: string;

  private constructor(module: string, p11: pkcs11js.PKCS11, slot: { slot: Handle; label: string }, pin: string, maxSessions: number) {
    this.#module = module;
    this.#p11 = p11;
    this.#slot = slot.slot;
    this.label = slot.label;
    this.#pin = pin;
    this.#maxSessions = maxSessions;
  }

  /**
   * Loads the module, finds the token, checks that it offers AES-GCM, opens a session and logs in.
   * A wrong PIN fails at once and is never retried (retries would lock the token).
   */
  static open(sel: TokenSelector, pin: string, maxSessions: number): Pkcs11Token {
    const loaded = loadModule(sel.module);
    try {
      const slot = findSlot(loaded.p11, sel);
      // One entry per slot, however it was selected: the login belongs to the slot.
      const key = `${sel.module}\0${slotId(slot.slot)}`;
      const shared = tokens.get(key);
      if (shared) {
        // The login is shared: a second PIN must not ride on the first one's session.
        if (shared.pin !== pin) throw new Pkcs11Error(`PKCS#11 ${describe(sel)} is already open with a different PIN`);
        shared.refs++;
        releaseModule(sel.module); // the shared token holds its own reference
        return shared.token;
      }
      if (!loaded.p11.C_GetMechanismList(slot.slot).includes(pkcs11js.CKM_AES_GCM)) {
        throw new Pkcs11Error(`PKCS#11 token "${slot.label}" does not offer CKM_AES_GCM, which kmsd needs for wrapping and for AES_256_HSM keys`);
      }
      const token = new Pkcs11Token(sel.module, loaded.p11, slot, pin, maxSessions);
      token.#idle.push(token.#openSession());
      tokens.set(key, { token, refs: 1, pin });
      token.#release = () => {
        const entry = tokens.get(key);
        if (entry && --entry.refs > 0) return false;
        tokens.delete(key);
        return true;
      };
      return token;
    } catch (e) {
      releaseModule(sel.module);
      throw e;
    }
  }

  #release: () => boolean = () => true;

  /** Opens a read-write session; logs in when it is the only one (no other session holds the login). */
  #openSession(): Handle {
    let handle: Handle;
    try {
      handle = this.#p11.C_OpenSession(this.#slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    } catch (e) {
      throw new Pkcs11Error(`PKCS#11 token "${this.label}": cannot open a session: ${ckrName(e) ?? (e as Error).message}`);
    }
    this.#open++;
    if (this.#open === 1) {
      try {
        this.#p11.C_Login(handle, pkcs11js.CKU_USER, this.#pin);
      } catch (e) {
        const name = ckrName(e);
        if (name !== 'CKR_USER_ALREADY_LOGGED_IN') {
          this.#closeSession(handle);
          const why = name !== undefined ? (PIN_ERRORS[name] ?? name) : 'unknown error';
          throw new Pkcs11Error(`PKCS#11 token "${this.label}": login failed: ${why}`);
        }
      }
    }
    return handle;
  }

  #closeSession(handle: Handle): void {
    this.#open--;
    try {
      this.#p11.C_CloseSession(handle);
    } catch {
      // already invalid (token removed, module reset): nothing left to close
    }
  }

  async #acquire(): Promise<Handle> {
    if (this.#closed) throw new Error(`PKCS#11 token "${this.label}" is closed`);
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#open < this.#maxSessions) return this.#openSession();
    return new Promise<Handle>((resolve) => this.#waiting.push(resolve));
  }

  #giveBack(handle: Handle, broken: boolean): void {
    if (broken || this.#closed) {
      this.#closeSession(handle);
      // A waiter needs a session: open a fresh one for it (and log in again if that was the last one).
      const next = this.#waiting.shift();
      if (next && !this.#closed) {
        try {
          next(this.#openSession());
        } catch {
          this.#waiting.unshift(next);
        }
      }
      return;
    }
    const next = this.#waiting.shift();
    if (next) next(handle);
    else this.#idle.push(handle);
  }

  /** Runs `fn` with a session of this token taken from the pool; the session always goes back (or is closed when it broke). */
  async withSession<T>(fn: (s: Session) => T | Promise<T>): Promise<T> {
    const handle = await this.#acquire();
    let broken = false;
    try {
      return await fn({ handle, p11: this.#p11 });
    } catch (e) {
      const name = ckrName(e);
      broken =
        name === 'CKR_SESSION_HANDLE_INVALID' ||
        name === 'CKR_SESSION_CLOSED' ||
        name === 'CKR_DEVICE_REMOVED' ||
        name === 'CKR_TOKEN_NOT_PRESENT' ||
        name === 'CKR_USER_NOT_LOGGED_IN' ||
        name === 'CKR_OPERATION_ACTIVE';
      throw e;
    } finally {
      this.#giveBack(handle, broken);
    }
  }

  get module(): string {
    return this.#module;
  }

  /** Logs out, closes every session and finalises the module when no other user holds it. */
  close(): void {
    if (this.#closed || !this.#release()) return;
    this.#closed = true;
    const sessions = this.#idle.splice(0);
    if (sessions[0] !== undefined) {
      try {
        this.#p11.C_Logout(sessions[0]);
      } catch {
        // not logged in any more: nothing to undo
      }
    }
    for (const s of sessions) this.#closeSession(s);
    releaseModule(this.#module);
  }
}

/** The GCM mechanism with kmsd's fixed sizes: 96-bit nonce, 128-bit tag. */
export function aesGcm(nonce: Buffer, aad: Buffer): pkcs11js.Mechanism {
  return {
    mechanism: pkcs11js.CKM_AES_GCM,
    parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv: nonce, aad, ivBits: nonce.length * 8, tagBits: 128 } as pkcs11js.AesGCM,
  };
}

/** CKR codes a GCM decryption answers when the tag does not verify (SoftHSM2 says GENERAL_ERROR). */
const AUTH_FAILURES = new Set(['CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE', 'CKR_GENERAL_ERROR', 'CKR_DATA_INVALID', 'CKR_DATA_LEN_RANGE']);

/** AES-GCM encryption inside the token with the key object `key`; returns ciphertext ‖ tag. */
export function gcmSealIn(token: Pkcs11Token, key: Handle, nonce: Buffer, plaintext: Buffer, aad: Buffer): Promise<Buffer> {
  return token.withSession(async ({ p11, handle }) => {
    p11.C_EncryptInit(handle, aesGcm(nonce, aad), key);
    return Buffer.from(await p11.C_EncryptAsync(handle, plaintext, Buffer.alloc(plaintext.length + 16)));
  });
}

/** AES-GCM decryption inside the token; undefined when the tag does not verify. */
export function gcmOpenIn(token: Pkcs11Token, key: Handle, nonce: Buffer, sealed: Buffer, aad: Buffer): Promise<Buffer | undefined> {
  return token.withSession(async ({ p11, handle }) => {
    p11.C_DecryptInit(handle, aesGcm(nonce, aad), key);
    try {
      return Buffer.from(await p11.C_DecryptAsync(handle, sealed, Buffer.alloc(sealed.length)));
    } catch (e) {
      if (AUTH_FAILURES.has(ckrName(e) ?? '')) return undefined;
      throw e;
    }
  });
}

/** Secret-key objects of the token with this label. */
export function findSecretKeys(s: Session, label: string): Handle[] {
  s.p11.C_FindObjectsInit(s.handle, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  try {
    return s.p11.C_FindObjects(s.handle, 16);
  } finally {
    s.p11.C_FindObjectsFinal(s.handle);
  }
}

/** The template of every key kmsd generates: AES-256, on the token, private, sensitive, never extractable. */
export function aesKeyTemplate(label: string, id: Buffer): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_SIGN, value: false },
    { type: pkcs11js.CKA_VERIFY, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
  ];
}
