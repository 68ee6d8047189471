import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type LinkProxy, startLink, TokenBucket } from './link.js';

// The link model behind bench case (f). Timing checks are lower bounds only (the cap and the
// delay must never be beaten; a busy machine may only make things slower), plus one bound on
// what the proxy lets through to a reader that does not read.

/** Timers may fire up to a millisecond before performance.now() says the time is up. */
const TIMER_SLACK_MS = 2;

describe('TokenBucket', () => {
  it('starts full, never holds more than its burst, and refills at its rate', () => {
    const bucket = new TokenBucket(1_000_000, 10_000, 0);
    expect(bucket.take(50_000, 0)).toBe(10_000);
    expect(bucket.take(1, 0)).toBe(0);
    expect(bucket.take(50_000, 1)).toBe(1_000); // 1 ms at 1 MB/s
    expect(bucket.take(50_000, 1_000_000)).toBe(10_000); // a long idle time is still only one burst
  });

  it('says how long to wait for a number of bytes, capped at the burst', () => {
    const bucket = new TokenBucket(1_000_000, 10_000, 0);
    bucket.take(10_000, 0);
    expect(bucket.msUntil(2_000, 0)).toBeCloseTo(2, 9);
    expect(bucket.msUntil(1_000_000, 0)).toBeCloseTo(10, 9);
    expect(bucket.msUntil(500, 5)).toBe(0);
  });

  it('passes bytes at its rate over a long run, whatever the pieces asked for', () => {
    const rate = 10_000_000;
    const bucket = new TokenBucket(rate, 65_536, 0);
    let now = 0;
    let moved = 0;
    const total = 50_000_000;
    while (moved < total) {
      const want = Math.min(total - moved, 1 + ((moved * 7919) % 200_000));
      const taken = bucket.take(want, now);
      moved += taken;
      if (taken < want) now += Math.max(bucket.msUntil(want - taken, now), 0.001);
    }
    // Everything but the initial burst waited for tokens: (50 MB − 64 KiB) / 10 MB/s.
    expect(now).toBeCloseTo(((total - 65_536) / rate) * 1000, 0);
  });

  it('refuses a rate or burst that cannot work', () => {
    expect(() => new TokenBucket(0, 1000, 0)).toThrow(RangeError);
    expect(() => new TokenBucket(1000, 0, 0)).toThrow(RangeError);
  });
});

describe('LinkProxy', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  /** A TCP server on 127.0.0.1; `onConnection` gets each accepted socket. */
  async function tcpServer(onConnection: (socket: Socket) => void): Promise<{ server: Server; target: string }> {
    const accepted = new Set<Socket>();
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      accepted.add(socket);
      onConnection(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    cleanup.push(async () => {
      for (const socket of accepted) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { server, target: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  async function link(target: string, bytesPerSecond: number, delayMs: number, burstBytes?: number): Promise<LinkProxy> {
    const proxy = await startLink({ target, bytesPerSecond, delayMs, ...(burstBytes === undefined ? {} : { burstBytes }) });
    cleanup.push(() => proxy.close());
    return proxy;
  }

  function connect(proxy: LinkProxy): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true }, () => resolve(socket));
      socket.once('error', reject);
      cleanup.push(() => {
        socket.destroy();
      });
    });
  }

  function readAll(socket: Socket): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      socket.on('data', (part: Buffer) => parts.push(part));
      socket.once('end', () => resolve(Buffer.concat(parts)));
      socket.once('error', reject);
    });
  }

  const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

  it('carries the bytes unchanged both ways, with half-closes after the last byte', async () => {
    // The server answers with the reverse of what it received, once the client has finished.
    const { target } = await tcpServer((socket) => {
      void readAll(socket).then((got) => socket.end(Buffer.from(got).reverse()));
    });
    const proxy = await link(target, 50_000_000, 5);
    const sent = randomBytes(3_000_000);
    const client = await connect(proxy);
    const answer = readAll(client);
    client.end(sent);
    expect(sha(await answer)).toBe(sha(Buffer.from(sent).reverse()));
    expect(proxy.stats).toMatchObject({ connections: 1, bytesUp: sent.length, bytesDown: sent.length });
  });

  it('caps each connection at its rate, in each direction', async () => {
    const bytes = 2_000_000;
    const rate = 5_000_000;
    // Two connections at once: each must take its own (bytes − burst) / rate, upload and download.
    // Each interval is timed from a moment taken before its first byte can move to one taken after
    // its last byte arrived, so that a late event (a busy machine) can only lengthen it: the upload
    // from the client's write to the server's answer (the first byte names the connection), the
    // download from the server's write to the client's last byte.
    const answeredAt = new Map<number, number>();
    const { target } = await tcpServer((socket) => {
      void readAll(socket).then((got) => {
        answeredAt.set(got[0] ?? -1, performance.now());
        socket.end(randomBytes(bytes));
      });
    });
    const proxy = await link(target, rate, 0);
    const minimumMs = ((bytes - 65_536) / rate) * 1000 - TIMER_SLACK_MS;
    const oneConnection = async (id: number) => {
      const client = await connect(proxy);
      const upload = randomBytes(bytes);
      upload[0] = id;
      const started = performance.now();
      const answer = readAll(client);
      client.end(upload);
      expect((await answer).length).toBe(bytes);
      const answered = answeredAt.get(id) ?? Number.NaN;
      return { upMs: answered - started, downMs: performance.now() - answered };
    };
    const timings = await Promise.all([oneConnection(1), oneConnection(2)]);
    for (const { upMs, downMs } of timings) {
      expect(upMs).toBeGreaterThanOrEqual(minimumMs);
      expect(downMs).toBeGreaterThanOrEqual(minimumMs);
    }
    expect(proxy.stats.maxOpenConnections).toBe(2);
  });

  it('delays every byte each way, and a new connection by one more round trip', async () => {
    const delayMs = 40;
    const { target } = await tcpServer((socket) => socket.on('data', (part: Buffer) => socket.write(part)));
    const proxy = await link(target, 100_000_000, delayMs);
    const client = await connect(proxy);
    const roundTrip = async () => {
      const started = performance.now();
      const echoed = new Promise<void>((resolve) => client.once('data', () => resolve()));
      client.write('x');
      await echoed;
      return performance.now() - started;
    };
    // SYN + SYN-ACK, then the request and its answer.
    expect(await roundTrip()).toBeGreaterThanOrEqual(4 * delayMs - TIMER_SLACK_MS);
    for (let i = 0; i < 3; i++) expect(await roundTrip()).toBeGreaterThanOrEqual(2 * delayMs - TIMER_SLACK_MS);
  });

  it('stops taking bytes from a sender while the other side does not read', async () => {
    let serverSide: Socket | undefined;
    const { target } = await tcpServer((socket) => {
      socket.pause(); // reads nothing
      serverSide = socket;
    });
    // 1 GB/s in 1 MiB bursts: the timers' millisecond does not slow it down.
    const proxy = await link(target, 1_000_000_000, 0, 2 ** 20);
    const client = await connect(proxy);
    const offered = 128 * 2 ** 20;
    const piece = Buffer.alloc(2 ** 20);
    // Offer far more than the kernel's socket buffers hold; writes that do not fit wait in the client.
    for (let i = 0; i < offered / piece.length; i++) client.write(piece);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // At 1 GB/s an unbounded proxy would have passed on everything by now; the sockets' kernel buffers hold a few MiB.
    expect(proxy.stats.bytesUp).toBeLessThan(32 * 2 ** 20);
    // Reading again lets everything through.
    let received = 0;
    const all = new Promise<void>((resolve) =>
      serverSide?.on('data', (part: Buffer) => {
        received += part.length;
        if (received === offered) resolve();
      }),
    );
    serverSide?.resume();
    await all;
    expect(proxy.stats.bytesUp).toBe(offered);
  });

  it('cuts the other side when one side resets its connection', async () => {
    let serverClosed: Promise<void> = Promise.resolve();
    const { target } = await tcpServer((socket) => {
      socket.on('error', () => {});
      serverClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    });
    const proxy = await link(target, 10_000_000, 5);
    const client = await connect(proxy);
    client.write('half a request');
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.resetAndDestroy();
    await serverClosed;
  });
});
