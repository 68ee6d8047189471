import { getEventListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { HttpHandler } from '@smithy/core/protocols';
import { afterEach, describe, expect, it } from 'vitest';
import { silenceSdkNodeVersionWarning } from './s3-client.js';
import { toStoreError } from './s3-errors.js';
import { buildQueryString, type SdkHttpRequest, UndiciHttpHandler } from './undici-handler.js';

silenceSdkNodeVersionWarning();

type Handler = (req: IncomingMessage, body: Buffer, res: ServerResponse) => void;
const servers: Server[] = [];
const handlers: UndiciHttpHandler[] = [];

afterEach(async () => {
  for (const h of handlers.splice(0)) h.destroy();
  await Promise.all(
    servers.splice(0).map((s) => {
      const closed = new Promise((resolve) => s.close(resolve));
      s.closeAllConnections();
      return closed;
    }),
  );
});

/** A local HTTP server that hands each request, with its whole body, to `handler`. */
async function serve(handler: Handler): Promise<{ port: number; seen: { req: IncomingMessage; body: Buffer }[] }> {
  const seen: { req: IncomingMessage; body: Buffer }[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      seen.push({ req, body });
      handler(req, body, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, seen };
}

function handler(options: Partial<ConstructorParameters<typeof UndiciHttpHandler>[0]> = {}): UndiciHttpHandler {
  const h = new UndiciHttpHandler({ connections: 4, connectTimeoutMs: 5_000, socketTimeoutMs: 120_000, ...options });
  handlers.push(h);
  return h;
}

function request(port: number, extra: Partial<SdkHttpRequest> = {}): SdkHttpRequest {
  return { method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port, path: '/bucket/key', headers: {}, ...extra };
}

async function text(body: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(part as Buffer);
  return Buffer.concat(parts).toString();
}

describe('UndiciHttpHandler', () => {
  it('is an HttpHandler in the SDK’s own type', () => {
    const h: HttpHandler = handler();
    expect(h.metadata?.handlerProtocol).toBe('http/1.1');
  });

  it('sends method, path, the query escaped as SigV4 signs it, and headers, without the ones undici refuses', async () => {
    const { port, seen } = await serve((_req, _body, res) => {
      res.setHeader('x-amz-meta-a', ['1', '2']);
      res.end('answer');
    });
    const { response } = await handler().handle(
      request(port, {
        method: 'PUT',
        path: '/bucket/a%20b',
        query: { 'list-type': '2', prefix: "x y!'()*", delete: null, tag: ['b', 'a'] },
        headers: { 'Content-Length': '4', Expect: '100-continue', 'x-amz-content-sha256': 'abc', host: `127.0.0.1:${port}` },
        body: new Uint8Array(Buffer.from('..body..')).subarray(2, 6),
      }),
    );
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-amz-meta-a']).toBe('1,2');
    expect(response.body).toBeInstanceOf(Readable);
    expect(await text(response.body as Readable)).toBe('answer');
    const [{ req, body }] = seen as [{ req: IncomingMessage; body: Buffer }];
    expect(req.method).toBe('PUT');
    expect(req.url).toBe('/bucket/a%20b?delete&list-type=2&prefix=x%20y%21%27%28%29%2A&tag=b&tag=a');
    expect(req.headers.expect).toBeUndefined();
    expect(req.headers['x-amz-content-sha256']).toBe('abc');
    expect(body.toString()).toBe('body');
  });

  it('builds the query string exactly as the SDK does', () => {
    expect(buildQueryString({ b: 'x/y', a: '', c: null })).toBe('a=&b=x%2Fy&c');
  });

  it('sends Buffer, string, Readable and ArrayBuffer bodies', async () => {
    const { port, seen } = await serve((_req, _body, res) => res.end());
    const h = handler();
    for (const body of [
      Buffer.from('one'),
      'two',
      Readable.from([Buffer.from('th'), Buffer.from('ree')]),
      new TextEncoder().encode('four').buffer,
    ]) {
      const { response } = await h.handle(request(port, { method: 'PUT', body }));
      await text(response.body as Readable);
    }
    expect(seen.map((s) => s.body.toString())).toEqual(['one', 'two', 'three', 'four']);
  });

  it('answers bodies the SDK consumes (GetObject through an S3Client, transformToByteArray)', async () => {
    const payload = Buffer.alloc(3 * 1024 * 1024, 7);
    const { port } = await serve((_req, _body, res) => {
      res.setHeader('content-length', payload.length);
      res.setHeader('etag', '"e"');
      res.end(payload);
    });
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
      requestHandler: handler(),
    });
    const object = await client.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'key' }));
    expect(object.ETag).toBe('"e"');
    expect(Buffer.from((await object.Body?.transformToByteArray()) ?? []).equals(payload)).toBe(true);
  });

  it('a server silent for socketTimeoutMs fails the request with a transient TimeoutError (UND_ERR_HEADERS_TIMEOUT)', async () => {
    const { port } = await serve(() => undefined);
    const error = await handler({ socketTimeoutMs: 300 })
      .handle(request(port))
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TimeoutError', code: 'UND_ERR_HEADERS_TIMEOUT' });
    expect(toStoreError(error, { bucket: 'b', endpoint: 'e', customEndpoint: true, action: 'read' }).kind).toBe('transient');
  });

  it('a body that stops for socketTimeoutMs, or a connection cut in the middle of a body, fails the read transiently', async () => {
    const { port } = await serve((req, _body, res) => {
      res.setHeader('content-length', 100);
      res.write('x'.repeat(10));
      if (req.url === '/cut') setTimeout(() => res.socket?.destroy(), 20);
    });
    const h = handler({ socketTimeoutMs: 300 });
    for (const [path, code] of [
      ['/silent', 'UND_ERR_BODY_TIMEOUT'],
      ['/cut', 'UND_ERR_SOCKET'],
    ] as const) {
      const { response } = await h.handle(request(port, { path }));
      const error = await text(response.body as Readable).catch((e: unknown) => e);
      expect(error, path).toMatchObject({ code });
      expect(toStoreError(error, { bucket: 'b', endpoint: 'e', customEndpoint: true, action: 'read' }).kind).toBe('transient');
    }
  });

  it('a refused connection is ECONNREFUSED (fatal at open, transient later)', async () => {
    const { port } = await serve(() => undefined);
    await new Promise((resolve) => servers.pop()?.close(resolve));
    const error = await handler()
      .handle(request(port))
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ECONNREFUSED' });
    const context = { bucket: 'b', endpoint: 'e', customEndpoint: true, action: 'list' };
    expect(toStoreError(error, { ...context, phase: 'open' }).kind).toBe('fatal');
    expect(toStoreError(error, context).kind).toBe('transient');
  });

  it('an abort, before or during the request, rejects with an AbortError carrying the reason', async () => {
    const { port } = await serve(() => undefined);
    const h = handler();
    const reason = new Error('stop');
    const early = await h.handle(request(port), { abortSignal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
    expect(early).toMatchObject({ name: 'AbortError', cause: reason });
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 50);
    const late = await h.handle(request(port), { abortSignal: controller.signal }).catch((e: unknown) => e);
    expect(late).toMatchObject({ name: 'AbortError', cause: reason });
  });

  it('an abort while the body is on its way fails the body with an AbortError carrying the reason', async () => {
    const { port } = await serve((_req, _body, res) => {
      res.setHeader('content-length', 100);
      res.write('x'.repeat(10));
    });
    const controller = new AbortController();
    const reason = new Error('stop');
    // A short socketTimeoutMs: a handler deaf to the abort fails with UND_ERR_BODY_TIMEOUT instead of hanging.
    const { response } = await handler({ socketTimeoutMs: 2_000 }).handle(request(port), { abortSignal: controller.signal });
    const reading = text(response.body as Readable).catch((e: unknown) => e);
    setTimeout(() => controller.abort(reason), 20);
    expect(await reading).toMatchObject({ name: 'AbortError', cause: reason });
  });

  it('listens to the caller’s signal until the body closes, and not after (no listeners pile up on a shared signal)', async () => {
    const { port } = await serve((_req, _body, res) => res.end('answer'));
    const h = handler();
    const controller = new AbortController();
    const { response } = await h.handle(request(port), { abortSignal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    await text(response.body as Readable);
    await new Promise((resolve) => setImmediate(resolve));
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    for (let i = 0; i < 20; i++) {
      const { response } = await h.handle(request(port), { abortSignal: controller.signal });
      await text(response.body as Readable);
    }
    // A request that fails before its headers lets go of the signal at once.
    const cut = await serve((_req, _body, res) => res.socket?.destroy());
    const failed = await h.handle(request(cut.port), { abortSignal: controller.signal }).catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: 'UND_ERR_SOCKET' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('requestTimeout limits the wait for the answer, as NodeHttpHandler’s does', async () => {
    const { port } = await serve(() => undefined);
    const error = await handler()
      .handle(request(port), { requestTimeout: 100 })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TimeoutError', code: 'ETIMEDOUT' });
  });

  it('destroy may be called twice (both SDK clients call it); later requests fail', async () => {
    const { port } = await serve((_req, _body, res) => res.end());
    const h = handler();
    h.destroy();
    h.destroy();
    await expect(h.handle(request(port))).rejects.toThrow();
  });
});
