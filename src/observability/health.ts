import type { Logger } from 'pino';

// Health for load balancers and orchestrators. /healthz: the process is up and its event loop
// answers (liveness: restart me if this fails). /readyz: send me traffic — every check passes:
// the store answers a read, the root key unwraps the check value kmsd stored at initialisation
// (so a lost HSM session or a database that went away shows here), and the listeners are bound
// and not draining. Reasons are short fixed words; details go to the log, never into the answer.

export interface ReadinessCheck {
  readonly name: string;
  /** Resolves when ready; throws (with details for the log) otherwise. */
  run(): Promise<void>;
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Check name → "ok" or why not. */
  readonly checks: Readonly<Record<string, string>>;
}

/** A check that does not answer within this time fails: a hung database must not hang the probe. */
const CHECK_TIMEOUT_MS = 2_000;

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class Readiness {
  #listening = false;
  #wasReady: boolean | undefined;
  #inFlight: Promise<ReadinessReport> | undefined;
  readonly #checks: readonly ReadinessCheck[];
  readonly #logger: Logger | undefined;
  readonly #timeoutMs: number;

  constructor(checks: readonly ReadinessCheck[], logger?: Logger, timeoutMs = CHECK_TIMEOUT_MS) {
    this.#checks = checks;
    this.#logger = logger;
    this.#timeoutMs = timeoutMs;
  }

  /** Every listener is bound (true) or they are closing (false). */
  setListening(listening: boolean): void {
    this.#listening = listening;
  }

  /** Runs every check; concurrent probes share one run. */
  probe(): Promise<ReadinessReport> {
    this.#inFlight ??= this.#run().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #run(): Promise<ReadinessReport> {
    const checks: Record<string, string> = {};
    const failures: Record<string, string> = {};
    await Promise.all(
      this.#checks.map(async (c) => {
        try {
          await withTimeout(c.run(), this.#timeoutMs);
          checks[c.name] = 'ok';
        } catch (e) {
          checks[c.name] = 'failed';
          failures[c.name] = e instanceof Error ? e.message : String(e);
        }
      }),
    );
    checks.listeners = this.#listening ? 'ok' : 'not listening';
    const ready = Object.values(checks).every((v) => v === 'ok');
    if (ready !== this.#wasReady && !(ready && this.#wasReady === undefined)) {
      if (ready) this.#logger?.info({ checks }, 'ready again');
      else this.#logger?.warn({ checks, failures }, 'not ready: /readyz answers 503');
    }
    this.#wasReady = ready;
    return { ready, checks };
  }
}
