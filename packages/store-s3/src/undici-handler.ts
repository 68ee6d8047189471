import { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';

/**
 * The shapes of the SDK's HttpHandler contract (`@smithy/core/protocols` HttpHandler,
 * `@smithy/types` HttpRequest/HttpResponse), declared here so that this package depends on
 * `undici` and the SDK only. The unit test checks that UndiciHttpHandler is assignable to the
 * SDK's own type.
 */
export interface SdkHttpRequest {
  method: string;
  protocol: string;
  hostname: string;
  port?: number | undefined;
  path: string;
  query?: Record<string, string | string[] | null> | undefined;
  headers: Record<string, string>;
  username?: string | undefined;
  password?: string | undefined;
  fragment?: string | undefined;
  // biome-ignore lint/suspicious/noExplicitAny: the SDK's own type for a body (Buffer, Uint8Array, string, Readable…)
  body?: any;
}
export interface SdkHttpResponse {
  statusCode: number;
  reason?: string;
  headers: Record<string, string>;
  // biome-ignore lint/suspicious/noExplicitAny: the SDK's own type for a body
  body?: any;
}
export interface SdkHandlerOptions {
  /** The SDK's type also allows its deprecated AbortSignal-like object (`onabort`). */
  abortSignal?: AbortSignal | { aborted: boolean; onabort: unknown } | undefined;
  requestTimeout?: number | undefined;
}

export interface UndiciHandlerOptions {
  /** Connections kept per origin (undici's Pool size), the equivalent of an http.Agent's maxSockets. */
  connections: number;
  /** Give up connecting (TCP + TLS) after this long. */
  connectTimeoutMs: number;
  /**
   * Silence on a connection for this long fails the request: while sending the request and
   * waiting for the answer's headers (undici's headersTimeout, refreshed by each write that
   * fills the socket's buffer), and between pieces of the answer's body (bodyTimeout).
   */
  socketTimeoutMs: number;
  /** A limit on the whole request until the answer's headers (the SDK's requestTimeout); none by default. */
  requestTimeoutMs?: number | undefined;
}

/**
 * Request headers undici refuses (it sets them itself, or does not support them). `expect`:
 * the SDK adds `Expect: 100-continue` to S3 PUTs of 2 MiB and more; NodeHttpHandler with an agent
 * of our own does not wait for the 100 either, and SigV4 never signs it.
 */
const DROPPED_HEADERS = new Set(['expect', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade']);

/** undici error codes that mean "the network failed": transient, like ECONNRESET or a socket timeout. */
const NETWORK_ERROR_CODES = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/**
 * The SDK's HttpHandler on an undici Agent: keep-alive connections, `connections` per origin,
 * connect and silence timeouts like NodeHttpHandler's connectionTimeout and socketTimeout.
 * Response bodies are undici's BodyReadable, a Node `Readable`, which the SDK's sdkStreamMixin
 * and stream collector take as they take NodeHttpHandler's IncomingMessage.
 */
export class UndiciHttpHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };
  readonly #agent: Agent;
  #config: Record<string | symbol, unknown>;
  #destroyed = false;

  constructor(options: UndiciHandlerOptions) {
    this.#config = { ...options };
    this.#agent = new Agent({
      connections: options.connections,
      connect: { timeout: options.connectTimeoutMs },
      headersTimeout: options.socketTimeoutMs,
      bodyTimeout: options.socketTimeoutMs,
    });
  }

  async handle(request: SdkHttpRequest, { abortSignal, requestTimeout }: SdkHandlerOptions = {}): Promise<{ response: SdkHttpResponse }> {
    if (abortSignal?.aborted) throw abortError(abortSignal);
    // The caller's abort reaches undici through a signal of our own (which the requestTimeout
    // also aborts). It must stay connected until the answer's body closes, not only until the
    // headers arrive: undici destroys the body when that signal aborts, and a GetObject body is
    // read long after handle() returned. NodeHttpHandler likewise listens until the request's
    // 'close'. (Disconnected at the headers, an abort in the middle of a body went unheard: the
    // whole body was still read and the aborted call succeeded.)
    const controller = new AbortController();
    const onAbort = () => controller.abort(abortError(abortSignal));
    const release = () => {
      if (abortSignal === undefined) return;
      if ('removeEventListener' in abortSignal) abortSignal.removeEventListener('abort', onAbort);
      else if (abortSignal.onabort === onAbort) abortSignal.onabort = null;
    };
    if (abortSignal !== undefined) {
      if ('addEventListener' in abortSignal) abortSignal.addEventListener('abort', onAbort, { once: true });
      else abortSignal.onabort = onAbort;
    }
    let bodyListens = false;
    const limit = requestTimeout ?? this.#config.requestTimeoutMs;
    const timer =
      typeof limit === 'number' && limit > 0
        ? setTimeout(() => {
            const error = Object.assign(new Error(`the request exceeded the requestTimeout of ${limit} ms`), {
              name: 'TimeoutError',
              code: 'ETIMEDOUT',
            });
            controller.abort(error);
          }, limit)
        : undefined;
    try {
      const answer = await this.#agent.request({
        origin: origin(request),
        path: pathAndQuery(request),
        method: request.method as Dispatcher.HttpMethod,
        headers: requestHeaders(request.headers),
        body: requestBody(request.body),
        signal: controller.signal,
      });
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
      }
      if (abortSignal !== undefined && !answer.body.closed) {
        answer.body.once('close', release);
        bodyListens = true;
      }
      return { response: { statusCode: answer.statusCode, headers, body: answer.body } };
    } catch (error) {
      if (controller.signal.aborted) throw controller.signal.reason;
      throw asSdkError(error);
    } finally {
      // requestTimeout limits the wait for the headers only (as documented); the abort stays while the body lives.
      clearTimeout(timer);
      if (!bodyListens) release();
    }
  }

  updateHttpClientConfig(key: string | symbol, value: unknown): void {
    this.#config = { ...this.#config, [key]: value };
  }

  httpHandlerConfigs(): Record<string | symbol, unknown> {
    return this.#config;
  }

  /** Closes every connection at once (requests in flight fail); both SDK clients call it, the second time is a no-op. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#agent.destroy().catch(() => undefined);
  }
}

function origin(request: SdkHttpRequest): string {
  // The SDK keeps an IPv6 address in brackets, as a URL wants it.
  return `${request.protocol}//${request.hostname}${request.port === undefined ? '' : `:${request.port}`}`;
}

function pathAndQuery(request: SdkHttpRequest): string {
  const query = request.query ? buildQueryString(request.query) : '';
  return `${request.path}${query ? `?${query}` : ''}`;
}

/** The SDK's buildQueryString (@smithy/core/protocols): sorted keys, RFC 3986 escaping, as SigV4 signed them. */
export function buildQueryString(query: Record<string, string | string[] | null>): string {
  const parts: string[] = [];
  for (const name of Object.keys(query).sort()) {
    const value = query[name];
    const key = escapeUri(name);
    if (Array.isArray(value)) {
      for (const v of value) parts.push(`${key}=${escapeUri(v)}`);
    } else {
      parts.push(typeof value === 'string' ? `${key}=${escapeUri(value)}` : key);
    }
  }
  return parts.join('&');
}

function escapeUri(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function requestHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!DROPPED_HEADERS.has(name.toLowerCase())) out[name] = value;
  }
  return out;
}

function requestBody(body: unknown): Dispatcher.DispatchOptions['body'] {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string' || body instanceof Uint8Array || body instanceof Readable) return body;
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ReadableStream) return Readable.fromWeb(body as import('node:stream/web').ReadableStream);
  if (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')
    return Readable.from(body as AsyncIterable<Uint8Array>, { objectMode: false });
  throw new TypeError(`cannot send a request body of type ${Object.prototype.toString.call(body)}`);
}

/**
 * Like NodeHttpHandler (which names ECONNRESET/EPIPE/ETIMEDOUT errors TimeoutError): network
 * failures get the name the SDK's retry strategy treats as transient, so that the parts client's
 * own retries (maxAttempts 3) cover them as they do with NodeHttpHandler. The undici code stays.
 */
function asSdkError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) error.name = 'TimeoutError';
  return error;
}

/** The error NodeHttpHandler rejects with on abort: name AbortError, the signal's reason as cause. */
function abortError(signal: SdkHandlerOptions['abortSignal']): Error {
  const reason = signal !== undefined && 'reason' in signal ? (signal.reason as unknown) : undefined;
  const error = new Error(reason instanceof Error || reason === undefined ? 'Request aborted' : String(reason), {
    cause: reason instanceof Error ? reason : undefined,
  });
  error.name = 'AbortError';
  return error;
}
