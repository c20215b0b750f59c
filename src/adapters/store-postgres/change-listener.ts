import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { CHANGE_TOPICS, type Change, type ChangeFeed, type ChangeTopic, type FeedEvent, type FeedHandler } from '../../ports/change-feed.js';
import { connectionProblem } from './pg-errors.js';

// The PostgreSQL change feed: one dedicated connection per node (not from the pool: it must stay
// in LISTEN for the node's whole life).
//
// Changes. Writers pg_notify each change on the schema's change channel inside their transaction,
// so it is heard when, and only when, it commits. Notifications sent while a node's connection is
// down are lost for good, so the feed is `live` only while listening: it reports 'lost' the moment
// the connection fails (or stops answering), reconnects with backoff, and once LISTEN succeeds
// again reports 'resync', upon which caches drop everything. It starts unconnected (not live) and
// connects on the first subscription.
//
// Confirmations. A notification reaches the other nodes a moment after the COMMIT, and a client
// may be quicker than that moment: told "rotated" by node A, it asks node B at once. So every
// node that hears a change confirms it on the schema's confirmation channel after its handlers
// have run (its caches have dropped it), and the writer waits, after its COMMIT and before it
// answers, until every node it knows of has confirmed (`expectConfirmations`). Nodes make
// themselves known by a hello on that channel when they start listening (answered by a hello of
// every node that did not know them), then every second (also the connection's heartbeat), and a
// goodbye when they close; a node not heard from for PEER_TTL_MS is no longer waited for. A
// node that does not confirm within the confirmation timeout (dead but not yet forgotten, or
// stalled) is reported through `onWarning` and the writer answers anyway: its stalled peer would
// have to be stalled before receiving the change yet answer a request afterwards to serve stale
// data, and the TTL of the caches bounds even that.

/** A change as a NOTIFY payload: `<tag> <topic>:<id>`; only the first ':' after the tag splits, so an id may hold ':'. */
export function encodeChange(tag: string, change: Change): string {
  return `${tag} ${change.topic}:${change.id}`;
}

/** The tag and change of `payload`; change is undefined when it names a topic this kmsd does not know (a newer node's). */
export function decodeChange(payload: string): { tag: string; change: Change | undefined } {
  const space = payload.indexOf(' ');
  const tag = space < 0 ? '' : payload.slice(0, space);
  const rest = payload.slice(space + 1);
  const at = rest.indexOf(':');
  const topic = at < 0 ? '' : rest.slice(0, at);
  const known = (CHANGE_TOPICS as readonly string[]).includes(topic);
  return { tag, change: known ? { topic: topic as ChangeTopic, id: rest.slice(at + 1) } : undefined };
}

/**
 * The two channels of the schema the connection's search_path selects, so that stores in
 * different schemas of one database (tests, several deployments) do not hear each other. A NOTIFY
 * channel is an identifier of at most 63 bytes and a schema name may be that long already, hence
 * the hash.
 */
export const CHANNELS_SQL =
  `SELECT 'kmsd_changes_' || substr(md5(current_schema()), 1, 16) AS changes, ` +
  `'kmsd_confirms_' || substr(md5(current_schema()), 1, 16) AS confirms`;

export interface Channels {
  readonly changes: string;
  readonly confirms: string;
}

/** A node not heard from for this long is not waited for. */
const PEER_TTL_MS = 3000;

export interface ListenerOptions {
  /** How often the node says hello (and checks that its connection answers). Default 1000. */
  readonly helloMs?: number;
  /** How long a query or a connection attempt of the listener may take before it is given up. Default 3000. */
  readonly timeoutMs?: number;
  /** How long a writer waits for the other nodes to confirm a change. Default 1000. */
  readonly confirmTimeoutMs?: number;
  /** First and longest wait between reconnection attempts (it doubles in between). Default 100 and 5000. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Told about nodes that did not confirm in time. */
  readonly onWarning?: (message: string, details: Record<string, unknown>) => void;
}

/** Waiting for the confirmations of one transaction's changes. */
export interface Confirmations {
  /** Resolves when every node known at the start has confirmed, or the timeout passed. */
  readonly done: Promise<void>;
  /** Stop waiting (the transaction did not commit). */
  cancel(): void;
}

interface Waiter {
  readonly pending: Set<string>;
  readonly resolve: () => void;
}

export class PostgresChangeListener implements ChangeFeed {
  /** This node's name on the confirmation channel. */
  readonly nodeId = randomBytes(8).toString('hex');
  readonly #handlers = new Set<FeedHandler>();
  readonly #config: pg.ClientConfig;
  readonly #channels: Channels;
  readonly #o: Required<Omit<ListenerOptions, 'onWarning'>> & Pick<ListenerOptions, 'onWarning'>;
  /** Other nodes, by id: when each was last heard. */
  readonly #peers = new Map<string, number>();
  readonly #waiters = new Map<string, Waiter>();
  #tags = 0;
  #client: pg.Client | undefined;
  #live = false;
  #started = false;
  #closed = false;
  #retryMs: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #hello: NodeJS.Timeout | undefined;

  /** `config` connects like the store's pool does; `channels` is what CHANNELS_SQL answered there. */
  constructor(config: pg.ClientConfig, channels: Channels, options: ListenerOptions = {}) {
    this.#channels = channels;
    this.#o = { helloMs: 1000, timeoutMs: 3000, confirmTimeoutMs: 1000, retryMinMs: 100, retryMaxMs: 5000, ...options };
    this.#config = { ...config, connectionTimeoutMillis: this.#o.timeoutMs, keepAlive: true };
    this.#retryMs = this.#o.retryMinMs;
  }

  get live(): boolean {
    return this.#live;
  }

  subscribe(handler: FeedHandler): () => void {
    const h: FeedHandler = (e) => handler(e);
    this.#handlers.add(h);
    if (!this.#started && !this.#closed) {
      this.#started = true;
      void this.#connect();
    }
    return () => {
      this.#handlers.delete(h);
    };
  }

  /** A tag for the changes of one transaction, unique to this node. */
  newTag(): string {
    return `${this.nodeId}.${(++this.#tags).toString(36)}`;
  }

  /**
   * Starts waiting for the other nodes to confirm the changes published under `tag`; call it
   * before the COMMIT, so that no confirmation can arrive unexpected. Waits for nobody while this
   * node is not listening itself (it would not hear the confirmations).
   */
  expectConfirmations(tag: string): Confirmations {
    const now = Date.now();
    const pending = new Set<string>();
    if (this.#live) for (const [peer, heard] of this.#peers) if (now - heard < PEER_TTL_MS) pending.add(peer);
    if (pending.size === 0) return { done: Promise.resolve(), cancel: () => undefined };
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const timer = setTimeout(() => {
      if (this.#waiters.get(tag) === undefined) return;
      this.#waiters.delete(tag);
      this.#o.onWarning?.('nodes did not confirm a change in time; answering anyway', { nodes: [...pending], timeoutMs: this.#o.confirmTimeoutMs });
      resolve();
    }, this.#o.confirmTimeoutMs);
    timer.unref();
    this.#waiters.set(tag, {
      pending,
      resolve: () => {
        clearTimeout(timer);
        resolve();
      },
    });
    return {
      done,
      cancel: () => {
        clearTimeout(timer);
        this.#waiters.delete(tag);
        resolve();
      },
    };
  }

  /** Says goodbye (so writers stop waiting for this node) and stops listening for good. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#hello);
    this.#live = false;
    for (const w of this.#waiters.values()) w.resolve();
    this.#waiters.clear();
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      await this.#say(client, `bye ${this.nodeId}`).catch(() => undefined);
      await endQuietly(client, this.#o.timeoutMs);
    }
  }

  #emit(event: FeedEvent): void {
    for (const h of [...this.#handlers]) h(event);
  }

  /** One message on the confirmation channel, with the listener's timeout. */
  #say(client: pg.Client, message: string): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the listening connection did not answer within ${this.#o.timeoutMs} ms`)), this.#o.timeoutMs);
    });
    return Promise.race([client.query('SELECT pg_notify($1, $2)', [this.#channels.confirms, message]), timeout]).finally(() => clearTimeout(timer));
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client(this.#config);
    this.#client = client;
    // Any later trouble of this client ends its life as the listener; events of a client that
    // was already given up are ignored.
    const lose = (why: unknown) => this.#lose(client, why);
    client.on('error', lose);
    client.on('end', () => lose(new Error('the listening connection ended')));
    client.on('notification', (msg) => {
      if (client !== this.#client) return;
      if (msg.channel === this.#channels.changes) this.#onChange(client, msg.payload ?? '');
      else if (msg.channel === this.#channels.confirms) this.#onConfirm(client, msg.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(this.#channels.changes)}`);
      await client.query(`LISTEN ${client.escapeIdentifier(this.#channels.confirms)}`);
      await this.#say(client, `hello ${this.nodeId}`);
    } catch (e) {
      lose(e);
      return;
    }
    if (client !== this.#client || this.#closed) return;
    this.#retryMs = this.#o.retryMinMs;
    this.#live = true;
    this.#startHello(client);
    // Changes committed before LISTEN took effect were not heard: whatever is cached may predate them.
    this.#emit({ kind: 'resync' });
  }

  #onChange(client: pg.Client, payload: string): void {
    const { tag, change } = decodeChange(payload);
    // A topic this kmsd does not know: something changed that it cannot name, so drop everything.
    this.#emit(change === undefined ? { kind: 'resync' } : { kind: 'changed', change });
    // Only now, with the caches cleared, may the writer answer its client. Its own changes need no
    // confirmation: it invalidates them itself before answering.
    if (tag !== '' && !tag.startsWith(`${this.nodeId}.`)) {
      this.#say(client, `ack ${this.nodeId} ${tag}`).catch((e: unknown) => this.#lose(client, e));
    }
  }

  #onConfirm(client: pg.Client, payload: string): void {
    const [kind, node, tag] = payload.split(' ');
    if (node === undefined || node === this.nodeId) return;
    if (kind === 'bye') {
      this.#peers.delete(node);
      for (const [t, w] of this.#waiters) this.#confirmed(t, w, node);
      return;
    }
    const known = this.#peers.has(node);
    this.#peers.set(node, Date.now());
    // A node just started: answer its hello at once, so that it knows of this one too.
    if (kind === 'hello' && !known) this.#say(client, `hello ${this.nodeId}`).catch((e: unknown) => this.#lose(client, e));
    if (kind === 'ack' && tag !== undefined) {
      const w = this.#waiters.get(tag);
      if (w) this.#confirmed(tag, w, node);
    }
  }

  #confirmed(tag: string, w: Waiter, node: string): void {
    w.pending.delete(node);
    if (w.pending.size > 0) return;
    this.#waiters.delete(tag);
    w.resolve();
  }

  #startHello(client: pg.Client): void {
    clearInterval(this.#hello);
    this.#hello = setInterval(() => {
      // Also the heartbeat: a connection that died silently fails to answer and is replaced.
      this.#say(client, `hello ${this.nodeId}`).catch((e: unknown) => this.#lose(client, e));
    }, this.#o.helloMs);
    this.#hello.unref();
  }

  #lose(client: pg.Client, why: unknown): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    clearInterval(this.#hello);
    void endQuietly(client, this.#o.timeoutMs);
    // Not hearing confirmations any more: stop waiting for them.
    for (const w of this.#waiters.values()) w.resolve();
    this.#waiters.clear();
    if (this.#live) {
      this.#live = false;
      this.#emit({ kind: 'lost', reason: describe(why) });
    }
    if (this.#closed) return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, this.#o.retryMaxMs);
    this.#retryTimer = setTimeout(() => void this.#connect(), wait);
    this.#retryTimer.unref();
  }
}

/** A short description that never includes a connection string. */
function describe(why: unknown): string {
  return connectionProblem(why) ?? (why instanceof Error ? why.message : String(why));
}

/** Ends a client without waiting forever for a connection that no longer answers. */
async function endQuietly(client: pg.Client, timeoutMs: number): Promise<void> {
  client.removeAllListeners('notification');
  // A client may still report an error while ending; without a listener it would crash the process.
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.end().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
}
