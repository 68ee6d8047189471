import { type AddressInfo, createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A slow network link for the bench and the tests: a TCP proxy on 127.0.0.1 in front of `target`
 * that gives every connection what a long path gives one TCP connection — a rate cap and a delay:
 *
 * - **rate**: each connection, in each direction, passes at most `bytesPerSecond`, through a token
 *   bucket of `burstBytes` (a small window: no burst beyond it, however long the connection idled);
 * - **delay**: every byte reaches the other side `delayMs` after it passed the cap, so that the
 *   bytes in flight each way are at most rate × delay (+ the burst), as on a real path; a request
 *   and its answer cost 2 × `delayMs` more than on loopback;
 * - **handshake**: a new connection's first byte reaches the server one round trip later than it
 *   would on an open connection (SYN, SYN-ACK), so that opening connections is not free.
 *
 * Bytes are taken from a sender only while the other side's socket accepts writes, so a slow
 * reader slows the sender down as TCP's window does; the proxy itself holds at most
 * `PENDING_LIMIT` plus what is in flight per direction. Ends (half-closes) travel with the data,
 * after the last byte; an error or reset on one side resets the other.
 *
 * Not modelled: TCP slow start, loss, and a cap shared by all connections (the seed's path limited
 * each connection, not the sum). The token bucket starts full.
 */

export interface LinkOptions {
  /** Where to forward, e.g. http://127.0.0.1:7480 (only host and port are used). */
  target: string;
  /** The cap of one connection in one direction, bytes per second. */
  bytesPerSecond: number;
  /** One-way delay in milliseconds. */
  delayMs: number;
  /** The token bucket's depth (default 64 KiB): the most that passes at once. */
  burstBytes?: number;
}

export interface LinkStats {
  /** Connections accepted so far. */
  connections: number;
  /** The most connections open at the same time. */
  maxOpenConnections: number;
  /** Bytes delivered to the server (client → server) and to the clients (server → client). */
  bytesUp: number;
  bytesDown: number;
}

/** Read from a sender ahead of the cap before it is paused: its own socket buffer holds the rest. */
const PENDING_LIMIT = 64 * 1024;
const DEFAULT_BURST = 64 * 1024;

/**
 * A token bucket on an explicit clock (milliseconds), so that it can be tested without waiting.
 * Tokens are bytes; they accrue at `bytesPerSecond` up to `burstBytes`.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    readonly bytesPerSecond: number,
    readonly burstBytes: number,
    now: number,
  ) {
    if (!(bytesPerSecond > 0) || !(burstBytes >= 1)) throw new RangeError(`bad token bucket: ${bytesPerSecond} B/s, burst ${burstBytes}`);
    this.#tokens = burstBytes;
    this.#last = now;
  }

  /** Takes as many whole bytes as are there, at most `want`; returns how many. */
  take(want: number, now: number): number {
    this.#refill(now);
    const taken = Math.min(want, Math.floor(this.#tokens));
    this.#tokens -= taken;
    return taken;
  }

  /** Milliseconds from `now` until `bytes` (at most the burst) can be taken at once. */
  msUntil(bytes: number, now: number): number {
    this.#refill(now);
    const missing = Math.min(bytes, this.burstBytes) - this.#tokens;
    return missing <= 0 ? 0 : (missing * 1000) / this.bytesPerSecond;
  }

  #refill(now: number): void {
    if (now > this.#last) {
      this.#tokens = Math.min(this.burstBytes, this.#tokens + ((now - this.#last) * this.bytesPerSecond) / 1000);
      this.#last = now;
    }
  }
}

interface InFlight {
  at: number;
  data: Buffer;
}

/** One direction of one connection: source → token bucket → delay line → destination. */
class Lane {
  readonly #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #inFlight: InFlight[] = [];
  #sourceEnded = false;
  #finished = false;
  #admitTimer: NodeJS.Timeout | undefined;
  #deliverTimer: NodeJS.Timeout | undefined;
  readonly #bucket: TokenBucket;

  constructor(
    private readonly source: Socket,
    private readonly destination: Socket,
    private readonly options: { bytesPerSecond: number; burstBytes: number; delayMs: number; openAt: number },
    private readonly delivered: (bytes: number) => void,
  ) {
    this.#bucket = new TokenBucket(options.bytesPerSecond, options.burstBytes, performance.now());
    source.on('data', (data: Buffer) => {
      this.#pending.push(data);
      this.#pendingBytes += data.length;
      if (this.#pendingBytes >= PENDING_LIMIT) source.pause();
      this.#admit();
    });
    source.on('end', () => {
      this.#sourceEnded = true;
      this.#finishWhenEmpty();
    });
    destination.on('drain', () => this.#admit());
  }

  stop(): void {
    clearTimeout(this.#admitTimer);
    clearTimeout(this.#deliverTimer);
    this.#admitTimer = undefined;
    this.#deliverTimer = undefined;
  }

  /** Moves what the bucket allows from the pending bytes onto the delay line. */
  #admit(): void {
    if (this.#admitTimer !== undefined || this.destination.destroyed) return;
    const now = performance.now();
    if (now < this.options.openAt) {
      this.#admitTimer = setTimeout(() => this.#wake(), this.options.openAt - now);
      return;
    }
    // The receiving side does not keep up: take nothing more until it drains (TCP's window closing).
    if (this.destination.writableNeedDrain) return;
    while (this.#pending.length > 0) {
      const head = this.#pending[0] as Buffer;
      const taken = this.#bucket.take(head.length, now);
      if (taken === 0) {
        // Wait for half a bucket (or the whole head, if smaller): a timer per few KiB, not per byte.
        const wait = this.#bucket.msUntil(Math.min(head.length, this.options.burstBytes / 2), now);
        this.#admitTimer = setTimeout(() => this.#wake(), Math.max(1, Math.ceil(wait)));
        break;
      }
      const piece = taken === head.length ? (this.#pending.shift() as Buffer) : head.subarray(0, taken);
      if (taken < head.length) this.#pending[0] = head.subarray(taken);
      this.#pendingBytes -= taken;
      this.#inFlight.push({ at: now + this.options.delayMs, data: piece });
    }
    if (this.#pendingBytes < PENDING_LIMIT && this.source.isPaused() && !this.source.destroyed) this.source.resume();
    this.#scheduleDelivery();
  }

  #wake(): void {
    this.#admitTimer = undefined;
    this.#admit();
  }

  #scheduleDelivery(): void {
    if (this.#deliverTimer !== undefined) return;
    const head = this.#inFlight[0];
    if (head === undefined) {
      this.#finishWhenEmpty();
      return;
    }
    this.#deliverTimer = setTimeout(
      () => {
        this.#deliverTimer = undefined;
        this.#deliver();
      },
      Math.max(0, head.at - performance.now()),
    );
  }

  /** Hands every byte whose delay is over to the destination. */
  #deliver(): void {
    if (this.destination.destroyed) return;
    const now = performance.now();
    while (this.#inFlight.length > 0 && (this.#inFlight[0] as InFlight).at <= now) {
      const { data } = this.#inFlight.shift() as InFlight;
      this.destination.write(data);
      this.delivered(data.length);
    }
    this.#scheduleDelivery();
  }

  #finishWhenEmpty(): void {
    if (this.#finished || !this.#sourceEnded || this.#pendingBytes > 0 || this.#inFlight.length > 0) return;
    this.#finished = true;
    this.destination.end();
  }
}

export class LinkProxy {
  readonly #target: URL;
  readonly #bytesPerSecond: number;
  readonly #delayMs: number;
  readonly #burstBytes: number;
  #server: Server | undefined;
  readonly #open = new Set<Socket>();
  readonly #lanes = new Set<Lane>();
  #openConnections = 0;
  readonly stats: LinkStats = { connections: 0, maxOpenConnections: 0, bytesUp: 0, bytesDown: 0 };

  constructor(options: LinkOptions) {
    this.#target = new URL(options.target);
    if (!(options.bytesPerSecond > 0)) throw new RangeError(`link rate ${options.bytesPerSecond}: must be above 0 bytes/s`);
    if (!(options.delayMs >= 0)) throw new RangeError(`link delay ${options.delayMs}: must be 0 ms or more`);
    this.#bytesPerSecond = options.bytesPerSecond;
    this.#delayMs = options.delayMs;
    this.#burstBytes = options.burstBytes ?? DEFAULT_BURST;
  }

  /** host:port of the proxy; as a URL: `http://${address}`. */
  get address(): string {
    const address = this.#server?.address() as AddressInfo | null | undefined;
    if (!address) throw new Error('the link is not listening');
    return `127.0.0.1:${address.port}`;
  }

  get port(): number {
    return Number(this.address.split(':')[1]);
  }

  async listen(): Promise<string> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    return this.address;
  }

  /** Stops listening and cuts every connection. */
  async close(): Promise<void> {
    const server = this.#server;
    for (const lane of this.#lanes) lane.stop();
    for (const socket of this.#open) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    const acceptedAt = performance.now();
    const port = Number(this.#target.port || (this.#target.protocol === 'https:' ? 443 : 80));
    const server = createConnection({ host: this.#target.hostname, port, allowHalfOpen: true, noDelay: true });
    this.stats.connections++;
    this.#openConnections++;
    this.stats.maxOpenConnections = Math.max(this.stats.maxOpenConnections, this.#openConnections);
    for (const socket of [client, server]) this.#open.add(socket);
    const lane = (openAt: number) => ({
      bytesPerSecond: this.#bytesPerSecond,
      burstBytes: this.#burstBytes,
      delayMs: this.#delayMs,
      openAt,
    });
    const lanes = [
      // The client's first byte leaves after SYN and SYN-ACK, one round trip after it connected.
      new Lane(client, server, lane(acceptedAt + 2 * this.#delayMs), (n) => {
        this.stats.bytesUp += n;
      }),
      new Lane(server, client, lane(acceptedAt), (n) => {
        this.stats.bytesDown += n;
      }),
    ];
    for (const l of lanes) this.#lanes.add(l);
    let closed = 0;
    for (const [socket, other] of [
      [client, server],
      [server, client],
    ] as const) {
      // A reset (or any error) on one side is a reset on the other.
      socket.on('error', () => other.resetAndDestroy());
      socket.on('close', (hadError) => {
        this.#open.delete(socket);
        // Closed before its sender said it was done (an abort, a reset): the other side is cut too.
        if (hadError || !socket.readableEnded) other.resetAndDestroy();
        if (++closed < 2) return;
        this.#openConnections--;
        for (const l of lanes) {
          l.stop();
          this.#lanes.delete(l);
        }
      });
    }
  }
}

/** Starts a link in front of `target`. */
export async function startLink(options: LinkOptions): Promise<LinkProxy> {
  const link = new LinkProxy(options);
  await link.listen();
  return link;
}
