import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fault-injecting HTTP reverse proxy for the end-to-end tests: it sits between the CLI and a test
 * server (radosgw, the GCS test server), listens on 127.0.0.1 at a free port, and forwards every
 * request to `target` — headers as the client sent them (including Host, which S3 SigV4 signs: the
 * client signs the proxy's address and the server checks the signature against the Host it is
 * given), bodies streamed both ways. Rules pick requests by method, path and query, the nth match or
 * a seeded probability, and do one of:
 *
 * - `reset`: destroy the client's connection, before forwarding (`at: 'request'`, optionally after
 *   reading part of the upload) or after the server answered (`at: 'response'`: the request took
 *   effect, the reply is lost; optionally after part of the response body);
 * - `status`: answer 500/503/… with an S3- or GCS-shaped error body, without forwarding, or
 *   (`afterForward`) after the server handled the request — a lost reply to a write that landed;
 * - `delay`: wait before forwarding;
 * - `stall`: send part of the response body, then nothing for `ms` (then the rest) or forever;
 * - `truncate`: send part of the response body and close the connection.
 *
 * It runs in the test process (vitest worker): tests change rules, take it down and bring it back
 * directly. Plain HTTP only.
 */

export type FaultAction =
  | { kind: 'reset'; at: 'request' | 'response'; afterBytes?: number }
  | { kind: 'status'; status: number; afterForward?: boolean }
  | { kind: 'delay'; ms: number }
  | { kind: 'stall'; afterBytes: number; ms: number | 'forever' }
  | { kind: 'truncate'; afterBytes: number };

export interface FaultRule {
  /** A name for the log and the counts (default: the action's kind). */
  name?: string;
  /** HTTP method to match (any when absent). */
  method?: string;
  /** Matched against the path and query, e.g. /manifest\.json/ or /uploadType=multipart/. */
  path?: RegExp;
  /** Fire on these matching requests only (1-based, counted per rule). */
  nth?: number[];
  /** Fire on each matching request with this probability (the proxy's seeded PRNG). */
  probability?: number;
  /** Fire at most this many times. */
  times?: number;
  action: FaultAction;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  /** The status the client got; undefined when it got none (reset, truncated, stalled). */
  status: number | undefined;
  /** The rule that fired, by name. */
  fault: string | undefined;
  /** When it arrived, ms since the proxy started. */
  atMs: number;
}

export interface FaultProxyOptions {
  /** Where to forward, e.g. http://127.0.0.1:7480. */
  target: string;
  /** Shapes injected error bodies: S3 XML or GCS JSON. */
  flavor: 's3' | 'gcs';
  /** Seed of the PRNG behind `probability` (default 1). */
  seed?: number;
}

interface ArmedRule extends FaultRule {
  seen: number;
  fired: number;
}

/** mulberry32: small, fast, and the same sequence for the same seed on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FaultProxy {
  readonly #target: URL;
  readonly #flavor: 's3' | 'gcs';
  #random: () => number;
  #rules: ArmedRule[] = [];
  #server: Server | undefined;
  #port = 0;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 256 });
  readonly #started = performance.now();
  /** Every request, in arrival order. */
  readonly log: ProxiedRequest[] = [];

  constructor(options: FaultProxyOptions) {
    this.#target = new URL(options.target);
    this.#flavor = options.flavor;
    this.#random = seededRandom(options.seed ?? 1);
  }

  /** The proxy's base URL (give it to the CLI as --s3-endpoint / --gcs-endpoint). */
  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Listens (again, on the same port after `down()`); resolves with the endpoint. */
  async listen(): Promise<string> {
    const server = createServer((req, res) => this.#handle(req, res));
    server.keepAliveTimeout = 5_000;
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
    return this.endpoint;
  }

  /** Stops listening and cuts every open connection: the store is unreachable (connection refused) until `listen()`. */
  async down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.down();
    this.#agent.destroy();
  }

  /** Adds a rule; earlier rules are tried first, the first that fires wins. */
  add(rule: FaultRule): this {
    this.#rules.push({ ...rule, seen: 0, fired: 0 });
    return this;
  }

  /** Removes every rule and restarts the PRNG (from `seed` when given). */
  clear(seed?: number): this {
    this.#rules = [];
    if (seed !== undefined) this.#random = seededRandom(seed);
    return this;
  }

  /** How many times each rule fired, by name. */
  fired(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const rule of this.#rules) {
      const name = ruleName(rule);
      counts[name] = (counts[name] ?? 0) + rule.fired;
    }
    return counts;
  }

  #pick(method: string, path: string): ArmedRule | undefined {
    for (const rule of this.#rules) {
      if (rule.method !== undefined && rule.method !== method) continue;
      if (rule.path !== undefined && !rule.path.test(path)) continue;
      rule.seen++;
      if (rule.times !== undefined && rule.fired >= rule.times) continue;
      const byCount = rule.nth?.includes(rule.seen) ?? false;
      // The PRNG is drawn only for rules with a probability, so that adding an nth rule does not shift the sequence.
      const byChance = rule.probability !== undefined && this.#random() < rule.probability;
      if (rule.nth === undefined && rule.probability === undefined ? true : byCount || byChance) {
        rule.fired++;
        return rule;
      }
    }
    return undefined;
  }

  #later(ms: number, then: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      then();
    }, ms);
    this.#timers.add(timer);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const rule = this.#pick(method, path);
    const entry: ProxiedRequest = {
      method,
      path,
      status: undefined,
      fault: rule && ruleName(rule),
      atMs: Math.round(performance.now() - this.#started),
    };
    this.log.push(entry);
    const action = rule?.action;
    const clientSocket = req.socket;
    // A client that goes away (its own timeout, an abort) must not leave the upstream request running.
    req.on('error', () => {});
    res.on('error', () => {});

    if (action?.kind === 'reset' && action.at === 'request') {
      const cut = action.afterBytes ?? 0;
      if (cut === 0) {
        clientSocket.destroy();
        return;
      }
      let received = 0;
      req.on('data', (part: Buffer) => {
        received += part.length;
        if (received >= cut) clientSocket.destroy();
      });
      req.on('end', () => clientSocket.destroy());
      return;
    }
    if (action?.kind === 'status' && !action.afterForward) {
      // Read the upload first, as a server does before it answers: otherwise the client sees EPIPE, not the status.
      req.resume();
      req.on('end', () => {
        entry.status = action.status;
        this.#answerError(method, res, action.status);
      });
      return;
    }
    const forward = () => this.#forward(req, res, entry, action);
    if (action?.kind === 'delay') this.#later(action.ms, forward);
    else forward();
  }

  #forward(req: IncomingMessage, res: ServerResponse, entry: ProxiedRequest, action: FaultAction | undefined): void {
    const clientSocket = req.socket;
    if (clientSocket.destroyed) return;
    const upstream = httpRequest({
      protocol: this.#target.protocol,
      hostname: this.#target.hostname,
      port: this.#target.port,
      method: req.method,
      path: req.url,
      // As the client sent them, Host included (signed by S3 SigV4).
      headers: req.rawHeaders,
      setHost: false,
      agent: this.#agent,
    });
    upstream.on('error', () => clientSocket.destroy());
    // The client went away (its own timeout, an abort) before the answer was complete: stop the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);

    upstream.on('response', (reply) => {
      reply.on('error', () => clientSocket.destroy());
      if (action?.kind === 'status' && action.afterForward) {
        // The request took effect; the client never hears so.
        reply.resume();
        reply.on('end', () => {
          entry.status = action.status;
          this.#answerError(req.method ?? 'GET', res, action.status);
        });
        return;
      }
      if (action?.kind === 'reset' && action.at === 'response' && (action.afterBytes ?? 0) === 0) {
        reply.resume();
        reply.on('end', () => clientSocket.destroy());
        return;
      }
      res.writeHead(reply.statusCode ?? 502, reply.statusMessage, reply.rawHeaders);
      const cutAt =
        action?.kind === 'truncate' || action?.kind === 'stall' || (action?.kind === 'reset' && action.at === 'response')
          ? (action.afterBytes ?? 0)
          : undefined;
      if (cutAt === undefined) {
        entry.status = reply.statusCode;
        reply.pipe(res);
        return;
      }
      let sent = 0;
      let cut = false;
      reply.on('data', (part: Buffer) => {
        if (cut) return;
        if (sent + part.length < cutAt) {
          sent += part.length;
          if (!res.write(part)) {
            reply.pause();
            res.once('drain', () => reply.resume());
          }
          return;
        }
        cut = true;
        const head = part.subarray(0, cutAt - sent);
        const rest = part.subarray(cutAt - sent);
        sent = cutAt;
        res.write(head);
        if (action?.kind === 'stall') {
          reply.pause();
          if (action.ms === 'forever') return; // until the client gives up or the proxy goes down
          this.#later(action.ms, () => {
            entry.status = reply.statusCode;
            res.write(rest);
            reply.pipe(res);
            reply.resume();
          });
          return;
        }
        reply.destroy();
        if (action?.kind === 'truncate') clientSocket.end();
        else clientSocket.destroy();
      });
      reply.on('end', () => {
        // The body was shorter than the cut: it went through whole.
        if (!cut) {
          entry.status = reply.statusCode;
          res.end();
        }
      });
    });
  }

  #answerError(method: string, res: ServerResponse, status: number): void {
    if (res.headersSent || res.destroyed) return;
    const [type, body] = errorBody(this.#flavor, status);
    res.writeHead(status, { 'content-type': type, 'content-length': method === 'HEAD' ? 0 : Buffer.byteLength(body) });
    res.end(method === 'HEAD' ? undefined : body);
  }
}

function ruleName(rule: FaultRule): string {
  return rule.name ?? rule.action.kind;
}

/** What S3 (XML) or GCS (JSON) answers for this status. */
function errorBody(flavor: 's3' | 'gcs', status: number): [string, string] {
  if (flavor === 's3') {
    const code = status === 503 ? 'SlowDown' : status === 500 ? 'InternalError' : 'ServiceUnavailable';
    return [
      'application/xml',
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>`,
    ];
  }
  const reason = status === 503 ? 'backendError' : 'internalError';
  return [
    'application/json; charset=UTF-8',
    JSON.stringify({
      error: {
        code: status,
        message: 'injected by the fault proxy',
        errors: [{ message: 'injected by the fault proxy', domain: 'global', reason }],
      },
    }),
  ];
}

/** Starts a proxy in front of `target`. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const proxy = new FaultProxy(options);
  await proxy.listen();
  return proxy;
}
