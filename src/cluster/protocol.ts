import type { Change } from '../ports/change-feed.js';

// The messages between the supervisor (the primary process of `kmsd serve --workers N`) and its
// worker processes, over node:cluster's IPC channel (JSON). Each carries a `kmsd` field naming
// its kind, so they never mix with node's or prom-client's own messages on the same channel.
//
// Most of the cooperation is one pattern, the fan-out: a worker asks the supervisor (`ask`), the
// supervisor tells the workers concerned (`tell`), each does what it was told and replies
// (`reply`), and once every one of them has replied (or died, or the kind's time is up) the
// supervisor answers the worker that asked (`answer`) with their replies.

/** What a worker can have the others do. */
export interface FanOuts {
  /** Drop these committed changes from your caches (the writer waits for it before it answers). */
  readonly changes: { readonly body: readonly Change[]; readonly reply: null };
  /** Move the test clock forward by `ms` (every worker, the asking one included). */
  readonly clock: { readonly body: { readonly ms: number }; readonly reply: null };
  /** Your metrics, as prom-client's getMetricsAsJSON() (every worker, the asking one included). */
  readonly metrics: { readonly body: null; readonly reply: unknown };
}

export type FanOutKind = keyof FanOuts;

/** Whether the worker that asks is told too. */
export const TELLS_ASKER: Readonly<Record<FanOutKind, boolean>> = { changes: false, clock: true, metrics: true };

/** How long the supervisor waits for the workers' replies; a worker that is late is left out (and logged, for changes). */
export const FAN_OUT_TIMEOUT_MS: Readonly<Record<FanOutKind, number>> = { changes: 1000, clock: 10_000, metrics: 2000 };

export interface Addresses {
  readonly rest: string;
  readonly grpc: string;
  readonly caFile?: string;
}

export type WorkerMessage =
  /** The worker listens to the supervisor from now on: tell it everything. */
  | { readonly kmsd: 'hello' }
  | ({ readonly kmsd: 'listening' } & Addresses)
  /** The worker cannot start; it exits right after. */
  | { readonly kmsd: 'start-failed'; readonly message: string }
  | { readonly kmsd: 'ask'; readonly id: number; readonly kind: FanOutKind; readonly body: unknown }
  | { readonly kmsd: 'reply'; readonly id: number; readonly body: unknown }
  /** Background work under `job` may run here once granted (`locked`), and until `unlock`. */
  | { readonly kmsd: 'lock'; readonly id: number; readonly job: string; readonly wait: boolean }
  | { readonly kmsd: 'unlock'; readonly job: string };

export type PrimaryMessage =
  /** Answers `hello`: from now on the worker hears every change; where the test clock stands. */
  | { readonly kmsd: 'welcome'; readonly clockOffsetMs: number }
  | { readonly kmsd: 'answer'; readonly id: number; readonly replies: readonly unknown[] }
  | { readonly kmsd: 'tell'; readonly id: number; readonly kind: FanOutKind; readonly body: unknown }
  /** Answers `lock`: granted, or (without wait) held elsewhere. */
  | { readonly kmsd: 'locked'; readonly id: number; readonly granted: boolean };

/** True for a message of this protocol (node's and prom-client's share the channel). */
export function isKmsdMessage<M extends { kmsd: string }>(message: unknown): message is M {
  return typeof message === 'object' && message !== null && typeof (message as { kmsd?: unknown }).kmsd === 'string';
}
