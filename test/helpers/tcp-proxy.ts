// A TCP proxy in front of PostgreSQL that a test can cut and restore, to take the database away
// from kmsd and give it back without touching the shared server: cut() drops every connection
// (both ends, as when the server goes down) and refuses new ones (ECONNREFUSED, as when nothing
// listens); restore() accepts again on the same port.
import net from 'node:net';

export class TcpProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  #port = 0;
  #up = false;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Listens on an ephemeral loopback port and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    await proxy.#listen(0);
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** Connections open through the proxy now. */
  get connections(): number {
    return this.#sockets.size / 2;
  }

  /** Drops every connection and refuses new ones until restore(). */
  async cut(): Promise<void> {
    if (!this.#up) return;
    this.#up = false;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await closed;
  }

  /** Accepts connections again, on the same port. */
  async restore(): Promise<void> {
    if (this.#up) return;
    await this.#listen(this.#port);
  }

  async close(): Promise<void> {
    await this.cut();
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.removeListener('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as net.AddressInfo).port;
    this.#up = true;
  }

  #accept(client: net.Socket): void {
    if (!this.#up) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.#target.port, this.#target.host);
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.setNoDelay(true);
      // Either end going away takes the other with it.
      s.on('error', () => undefined);
      s.on('close', () => {
        this.#sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
