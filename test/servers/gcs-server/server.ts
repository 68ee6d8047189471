import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { badRequest, GcsHttpError } from './errors.js';
import { type ArmedFault, Faults } from './faults.js';
import { parseMultipart } from './multipart.js';
import { ResumableUploads } from './resumable.js';
import { type Bucket, GcsState, parsePreconditions, type StoredObject } from './state.js';

/** What a handler answers; written by one place so that faults can replace it. */
interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Hashes the client declared and the server checked before storing (for the request log). */
  verified?: string[];
}

const json = (status: number, value: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { 'content-type': 'application/json; charset=UTF-8', ...headers },
  body: JSON.stringify(value),
});

const notServed = (method: string, path: string) =>
  new GcsHttpError(
    404,
    'notFound',
    `Not Found: ${method} ${path} is not served by the GCS test server (the JSON API is under /storage/v1)`,
  );

/**
 * An in-memory server for the subset of the Cloud Storage JSON API that @google-cloud/storage v7
 * uses for buckets and objects (see docs/TESTING.md for what it does and does not do).
 * Like Google's, it serves the API under /storage/v1 only (uploads under /upload/storage/v1,
 * downloads under /download/storage/v1): anything else, such as the bare /b/… the client calls
 * when STORAGE_EMULATOR_HOST is its only configuration, is a 404.
 */
export class GcsJsonApiServer {
  readonly state = new GcsState();
  readonly faults = new Faults();
  readonly #uploads = new ResumableUploads(this.state);
  /** The latest requests (at most 2,000), for tests that check what the client sent. */
  readonly log: LoggedRequest[] = [];
  readonly #server: Server;
  #requests = 0;

  constructor() {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        // A bug in the server, not a GCS answer: say so loudly in the response.
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`gcs test server bug: ${(error as Error)?.stack ?? String(error)}`);
      });
    });
    this.#server.keepAliveTimeout = 30_000;
  }

  /** Requests served so far. */
  get requests(): number {
    return this.#requests;
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    return `http://${host}:${address.port}`;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#requests++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const fault = url.pathname.startsWith('/_test/') ? undefined : this.faults.take(method, `${url.pathname}${url.search}`);
    if (fault?.delayMs !== undefined) await sleep(fault.delayMs);
    const body = await readBody(req);
    if (fault && (fault.when ?? 'before') === 'before' && (fault.status !== undefined || fault.reset)) {
      return this.#fail(res, fault);
    }
    let reply: Reply;
    try {
      reply = await this.#route(method, url, req, body);
    } catch (error) {
      if (!(error instanceof GcsHttpError)) throw error;
      reply = { status: error.status, headers: { 'content-type': 'application/json; charset=UTF-8' }, body: error.body() };
    }
    if (fault && fault.when === 'after' && (fault.status !== undefined || fault.reset)) return this.#fail(res, fault);
    this.#record(method, url, req, reply);
    res.writeHead(reply.status, reply.status === 308 ? 'Resume Incomplete' : undefined, reply.headers ?? {});
    res.end(method === 'HEAD' ? undefined : reply.body);
  }

  #record(method: string, url: URL, req: IncomingMessage, reply: Reply): void {
    if (url.pathname.startsWith('/_test/')) return;
    const entry: LoggedRequest = { method, path: url.pathname, query: Object.fromEntries(url.searchParams), status: reply.status };
    if (reply.verified !== undefined) entry.verified = reply.verified;
    const contentRange = header(req, 'content-range');
    if (contentRange !== undefined) entry.contentRange = contentRange;
    this.log.push(entry);
    if (this.log.length > 2_000) this.log.splice(0, this.log.length - 2_000);
  }

  #fail(res: ServerResponse, fault: ArmedFault): void {
    if (fault.reset) {
      res.socket?.destroy();
      return;
    }
    const status = fault.status ?? 503;
    const error = new GcsHttpError(status, status === 429 ? 'rateLimitExceeded' : 'injectedFault', `Injected fault: HTTP ${status}`);
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(error.body());
  }

  async #route(method: string, url: URL, req: IncomingMessage, body: Buffer): Promise<Reply> {
    const origin = `http://${req.headers.host ?? 'localhost'}`;
    const path = url.pathname;
    if (path.startsWith('/_test/')) return this.#control(method, path, body);
    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o\/?$/.exec(path);
    if (upload) return this.#upload(method, decodeURIComponent(upload[1] as string), url, req, body, origin);
    const download = /^\/download\/storage\/v1(\/b\/.*)$/.exec(path);
    const api = download?.[1] ?? /^\/storage\/v1(\/.*)$/.exec(path)?.[1];
    if (api === undefined) throw notServed(method, path);
    if (api === '/b' || api === '/b/') {
      if (method === 'GET')
        return json(200, { kind: 'storage#buckets', items: [...this.state.buckets.values()].map((b) => bucketResource(b, origin)) });
      if (method === 'POST') return this.#createBucket(body, origin);
    }
    const bucketPath = /^\/b\/([^/]+)\/?$/.exec(api);
    if (bucketPath) {
      const name = decodeURIComponent(bucketPath[1] as string);
      if (method === 'GET') return json(200, bucketResource(this.state.bucket(name), origin));
      if (method === 'DELETE') {
        this.state.deleteBucket(name);
        return { status: 204 };
      }
    }
    const listPath = /^\/b\/([^/]+)\/o\/?$/.exec(api);
    if (listPath && method === 'GET') return this.#list(decodeURIComponent(listPath[1] as string), url, origin);
    const objectPath = /^\/b\/([^/]+)\/o\/(.+)$/.exec(api);
    if (objectPath) {
      const bucket = decodeURIComponent(objectPath[1] as string);
      const name = decodeURIComponent(objectPath[2] as string);
      const conditions = parsePreconditions(url.searchParams);
      if (method === 'GET' || method === 'HEAD') {
        const object = this.state.getObject(bucket, name, conditions);
        const generation = url.searchParams.get('generation');
        if (generation !== null && generation !== String(object.generation)) {
          throw new GcsHttpError(404, 'notFound', `No such object: ${bucket}/${name}#${generation}`);
        }
        if (url.searchParams.get('alt') === 'media' || download) return media(object, req.headers.range);
        return json(200, objectResource(object, origin));
      }
      if (method === 'DELETE') {
        this.state.deleteObject(bucket, name, conditions);
        return { status: 204 };
      }
    }
    throw notServed(method, path);
  }

  #createBucket(body: Buffer, origin: string): Reply {
    const resource = parseJson(body) as { name?: unknown };
    if (typeof resource.name !== 'string') throw badRequest('Required: bucket name');
    return json(200, bucketResource(this.state.createBucket(resource.name), origin));
  }

  #list(bucket: string, url: URL, origin: string): Reply {
    const q = url.searchParams;
    const maxResults = q.has('maxResults') ? Number(q.get('maxResults')) : 1000;
    if (!Number.isInteger(maxResults) || maxResults < 0) throw badRequest(`Invalid value for maxResults: ${q.get('maxResults')}`);
    const page = this.state.list(bucket, {
      prefix: q.get('prefix') ?? '',
      delimiter: q.get('delimiter') || undefined,
      startOffset: q.get('startOffset') ?? undefined,
      endOffset: q.get('endOffset') || undefined,
      // GCS caps a page at 1,000 entries whatever the client asks for; 0 means the default.
      maxResults: Math.min(maxResults || 1000, 1000),
      pageToken: q.get('pageToken') || undefined,
      includeTrailingDelimiter: q.get('includeTrailingDelimiter') === 'true',
    });
    const out: Record<string, unknown> = { kind: 'storage#objects' };
    if (page.nextPageToken !== undefined) out.nextPageToken = page.nextPageToken;
    if (page.prefixes.length > 0) out.prefixes = page.prefixes;
    if (page.objects.length > 0) out.items = page.objects.map((o) => objectResource(o, origin));
    return json(200, out);
  }

  async #upload(method: string, bucket: string, url: URL, req: IncomingMessage, body: Buffer, origin: string): Promise<Reply> {
    const q = url.searchParams;
    const uploadId = q.get('upload_id');
    if (uploadId !== null) {
      if (method === 'DELETE') {
        this.#uploads.cancel(uploadId);
        return { status: 499, headers: { 'content-length': '0' } };
      }
      if (method !== 'PUT' && method !== 'POST') throw badRequest(`${method} is not a resumable upload request`);
      const result = this.#uploads.put(uploadId, header(req, 'content-range'), header(req, 'x-goog-hash'), body);
      if (result.status === 200) return { ...json(200, objectResource(result.object, origin)), verified: result.verified };
      const headers: Record<string, string> = { 'content-length': '0', 'x-guploader-uploadid': uploadId };
      if (result.received > 0) headers.range = `bytes=0-${result.received - 1}`;
      return { status: 308, headers };
    }
    if (method !== 'POST') throw badRequest(`${method} is not an upload initiation; use POST`);
    const conditions = parsePreconditions(q);
    const uploadType = q.get('uploadType');
    if (uploadType === 'media') {
      const name = requiredName(q.get('name'));
      const object = this.state.putObject(bucket, name, body, { contentType: header(req, 'content-type'), conditions });
      return { ...json(200, objectResource(object, origin)), verified: [] };
    }
    if (uploadType === 'multipart') {
      const [metaPart, dataPart, ...extra] = parseMultipart(header(req, 'content-type'), body);
      if (!metaPart || !dataPart || extra.length > 0) throw badRequest('A multipart upload has exactly two parts: metadata, then data');
      const metadata = parseJson(metaPart.body) as ObjectMetadata;
      const name = requiredName(q.get('name') ?? metadata.name);
      const expected = expectedHashes(metadata);
      const object = this.state.putObject(bucket, name, Buffer.from(dataPart.body), {
        contentType: metadata.contentType ?? dataPart.headers['content-type'],
        conditions,
        expected,
      });
      return { ...json(200, objectResource(object, origin)), verified: Object.keys(expected) };
    }
    if (uploadType === 'resumable') {
      const metadata = (body.length > 0 ? parseJson(body) : {}) as ObjectMetadata;
      const totalHeader = header(req, 'x-upload-content-length');
      const id = this.#uploads.open({
        bucket,
        name: requiredName(q.get('name') ?? metadata.name),
        contentType: metadata.contentType ?? header(req, 'x-upload-content-type') ?? 'application/octet-stream',
        conditions,
        expected: expectedHashes(metadata),
        total: totalHeader === undefined ? undefined : Number(totalHeader),
      });
      const location = `${origin}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&upload_id=${id}`;
      return { status: 200, headers: { location, 'x-guploader-uploadid': id, 'content-length': '0' } };
    }
    throw badRequest(`Unsupported uploadType: ${uploadType}`);
  }

  /** Test-only control endpoint, for tests in other processes: POST /_test/faults {rule}, DELETE /_test/faults. */
  #control(method: string, path: string, body: Buffer): Reply {
    if (path === '/_test/faults' && method === 'POST') {
      this.faults.add(parseJson(body) as Parameters<Faults['add']>[0]);
      return { status: 204 };
    }
    if (path === '/_test/faults' && method === 'DELETE') {
      this.faults.clear();
      return { status: 204 };
    }
    if (path === '/_test/stats' && method === 'GET') return json(200, { requests: this.#requests, faultHits: this.faults.hits });
    throw new GcsHttpError(404, 'notFound', `no test control at ${method} ${path}`);
  }
}

export interface LoggedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentRange?: string;
  /** The status answered (requests a fault replaced are not logged). */
  status: number;
  /** For uploads that stored an object: the hashes the client declared ('md5', 'crc32c') and the server checked. */
  verified?: string[];
}

interface ObjectMetadata {
  name?: string;
  contentType?: string;
  md5Hash?: string;
  crc32c?: string;
}

function expectedHashes(metadata: ObjectMetadata): { md5?: string; crc32c?: string } {
  const out: { md5?: string; crc32c?: string } = {};
  if (typeof metadata.md5Hash === 'string') out.md5 = metadata.md5Hash;
  if (typeof metadata.crc32c === 'string') out.crc32c = metadata.crc32c;
  return out;
}

function requiredName(name: unknown): string {
  if (typeof name !== 'string' || name === '') throw badRequest('Required: object name (the name query parameter or metadata.name)');
  return name;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function parseJson(body: Buffer): unknown {
  try {
    const value: unknown = JSON.parse(body.toString('utf8') || '{}');
    if (typeof value !== 'object' || value === null) throw new Error('not an object');
    return value;
  } catch (error) {
    throw badRequest(`Invalid JSON body: ${(error as Error).message}`);
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

function bucketResource(bucket: Bucket, origin: string): Record<string, unknown> {
  return {
    kind: 'storage#bucket',
    selfLink: `${origin}/storage/v1/b/${encodeURIComponent(bucket.name)}`,
    id: bucket.name,
    name: bucket.name,
    projectNumber: '0',
    metageneration: '1',
    location: 'US',
    storageClass: 'STANDARD',
    etag: 'CAE=',
    timeCreated: bucket.created.toISOString(),
    updated: bucket.created.toISOString(),
    locationType: 'multi-region',
  };
}

function objectResource(object: StoredObject, origin: string): Record<string, unknown> {
  const path = `b/${encodeURIComponent(object.bucket)}/o/${encodeURIComponent(object.name)}`;
  const time = object.created.toISOString();
  return {
    kind: 'storage#object',
    id: `${object.bucket}/${object.name}/${object.generation}`,
    selfLink: `${origin}/storage/v1/${path}`,
    mediaLink: `${origin}/download/storage/v1/${path}?generation=${object.generation}&alt=media`,
    name: object.name,
    bucket: object.bucket,
    generation: String(object.generation),
    metageneration: String(object.metageneration),
    contentType: object.contentType,
    storageClass: 'STANDARD',
    size: String(object.data.length),
    md5Hash: object.md5Hash,
    crc32c: object.crc32c,
    etag: etagOf(object),
    timeCreated: time,
    updated: time,
    timeStorageClassUpdated: time,
    timeFinalized: time,
  };
}

const etagOf = (object: StoredObject) => Buffer.from(`${object.generation}/${object.metageneration}`).toString('base64');

/** alt=media: the bytes, with the x-goog-* headers the client reads (hashes for its download validation). */
function media(object: StoredObject, rangeHeader: string | undefined): Reply {
  const size = object.data.length;
  const headers: Record<string, string> = {
    'content-type': object.contentType,
    'x-goog-generation': String(object.generation),
    'x-goog-metageneration': String(object.metageneration),
    'x-goog-hash': `crc32c=${object.crc32c},md5=${object.md5Hash}`,
    'x-goog-stored-content-length': String(size),
    'x-goog-stored-content-encoding': 'identity',
    'x-goog-storage-class': 'STANDARD',
    etag: etagOf(object),
    'last-modified': object.created.toUTCString(),
    'accept-ranges': 'bytes',
    'cache-control': 'no-cache, no-store, max-age=0, must-revalidate',
  };
  const range = parseRange(rangeHeader, size);
  if (range === undefined) return { status: 200, headers: { ...headers, 'content-length': String(size) }, body: object.data };
  if (range === 'unsatisfiable') {
    const error = new GcsHttpError(416, 'requestedRangeNotSatisfiable', 'The requested range cannot be satisfied.');
    return {
      status: 416,
      headers: { 'content-type': 'application/json; charset=UTF-8', 'content-range': `bytes */${size}` },
      body: error.body(),
    };
  }
  const body = object.data.subarray(range.start, range.end + 1);
  return {
    status: 206,
    headers: { ...headers, 'content-length': String(body.length), 'content-range': `bytes ${range.start}-${range.end}/${size}` },
    body,
  };
}

/** One `bytes=` range (first-last, first-, or -suffix), clamped to the object; undefined: the whole object. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined; // not a single range we understand: ignore it, as HTTP allows
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (match[2] !== '' && Number(match[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
