import { randomUUID } from 'node:crypto';
import { badRequest, GcsHttpError, noSuchBucket, noSuchObject, preconditionFailed } from './errors.js';
import { crc32cBase64, md5Base64 } from './hashes.js';

export interface StoredObject {
  bucket: string;
  name: string;
  data: Buffer;
  generation: number;
  metageneration: number;
  contentType: string;
  md5Hash: string;
  crc32c: string;
  created: Date;
}

export interface Bucket {
  name: string;
  created: Date;
  objects: Map<string, StoredObject>;
  /** Object names in byte order, rebuilt lazily after a name appears or disappears. */
  sorted: string[] | undefined;
}

/** `ifGenerationMatch` & co. as the JSON API takes them in the query string. */
export interface Preconditions {
  ifGenerationMatch?: number;
  ifGenerationNotMatch?: number;
  ifMetagenerationMatch?: number;
  ifMetagenerationNotMatch?: number;
}

const preconditionNames = ['ifGenerationMatch', 'ifGenerationNotMatch', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch'] as const;

export function parsePreconditions(query: URLSearchParams): Preconditions {
  const out: Preconditions = {};
  for (const name of preconditionNames) {
    const text = query.get(name);
    if (text === null) continue;
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw badRequest(`Invalid argument for ${name}: ${text}`);
    out[name] = Number(text);
  }
  return out;
}

/** GCS orders names by their UTF-8 bytes, which differs from UTF-16 order for some characters. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export interface ListQuery {
  prefix: string;
  delimiter: string | undefined;
  startOffset: string | undefined;
  endOffset: string | undefined;
  maxResults: number;
  pageToken: string | undefined;
  includeTrailingDelimiter: boolean;
}

export interface ListPage {
  objects: StoredObject[];
  prefixes: string[];
  nextPageToken: string | undefined;
}

/** Buckets and objects in memory; every write makes a new generation, larger than any before it. */
export class GcsState {
  readonly buckets = new Map<string, Bucket>();
  #lastGeneration = Date.now() * 1000;

  createBucket(name: string): Bucket {
    if (!/^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$/.test(name)) throw badRequest(`Invalid bucket name: '${name}'`);
    if (this.buckets.has(name)) {
      throw new GcsHttpError(409, 'conflict', 'Your previous request to create the named bucket succeeded and you already own it.');
    }
    const bucket: Bucket = { name, created: new Date(), objects: new Map(), sorted: undefined };
    this.buckets.set(name, bucket);
    return bucket;
  }

  bucket(name: string): Bucket {
    const bucket = this.buckets.get(name);
    if (!bucket) throw noSuchBucket();
    return bucket;
  }

  deleteBucket(name: string): void {
    const bucket = this.bucket(name);
    if (bucket.objects.size > 0) throw new GcsHttpError(409, 'conflict', 'The bucket you tried to delete is not empty.');
    this.buckets.delete(name);
  }

  getObject(bucketName: string, name: string, conditions: Preconditions = {}): StoredObject {
    const bucket = this.bucket(bucketName);
    const object = bucket.objects.get(name);
    checkPreconditions(object, conditions);
    if (!object) throw noSuchObject(bucketName, name);
    return object;
  }

  /**
   * Stores a new generation of an object when the preconditions hold against the current one.
   * `expected` hashes (from object metadata or X-Goog-Hash) must match the data, or nothing is stored.
   */
  putObject(
    bucketName: string,
    name: string,
    data: Buffer,
    options: { contentType?: string; conditions?: Preconditions; expected?: { md5?: string; crc32c?: string } } = {},
  ): StoredObject {
    const bucket = this.bucket(bucketName);
    validateObjectName(name);
    const md5Hash = md5Base64(data);
    const crc32c = crc32cBase64(data);
    const expected = options.expected ?? {};
    if (expected.md5 !== undefined && expected.md5 !== md5Hash) {
      throw badRequest(`Provided MD5 hash "${expected.md5}" doesn't match calculated MD5 hash "${md5Hash}".`);
    }
    if (expected.crc32c !== undefined && expected.crc32c !== crc32c) {
      throw badRequest(`Provided CRC32C "${expected.crc32c}" doesn't match calculated CRC32C "${crc32c}".`);
    }
    const current = bucket.objects.get(name);
    checkPreconditions(current, options.conditions ?? {});
    const object: StoredObject = {
      bucket: bucketName,
      name,
      data,
      generation: this.#nextGeneration(),
      metageneration: 1,
      contentType: options.contentType || 'application/octet-stream',
      md5Hash,
      crc32c,
      created: new Date(),
    };
    if (!current) bucket.sorted = undefined;
    bucket.objects.set(name, object);
    return object;
  }

  deleteObject(bucketName: string, name: string, conditions: Preconditions = {}): void {
    const bucket = this.bucket(bucketName);
    const object = bucket.objects.get(name);
    checkPreconditions(object, conditions);
    if (!object) throw noSuchObject(bucketName, name);
    bucket.objects.delete(name);
    bucket.sorted = undefined;
  }

  list(bucketName: string, query: ListQuery): ListPage {
    const bucket = this.bucket(bucketName);
    bucket.sorted ??= [...bucket.objects.keys()].sort(byteOrder);
    const names = bucket.sorted;
    const token = query.pageToken === undefined ? undefined : decodePageToken(query.pageToken);
    const objects: StoredObject[] = [];
    const prefixes: string[] = [];
    let lastTaken: string | undefined;
    let index = lowerBound(
      names,
      [query.startOffset, token, query.prefix].reduce<string>((a, b) => (b !== undefined && byteOrder(b, a) > 0 ? b : a), ''),
    );
    for (; index < names.length; index++) {
      const name = names[index] as string;
      if (token !== undefined && byteOrder(name, token) <= 0) continue;
      if (!name.startsWith(query.prefix)) {
        if (byteOrder(name, query.prefix) > 0) break;
        continue;
      }
      if (query.endOffset !== undefined && byteOrder(name, query.endOffset) >= 0) break;
      if (objects.length + prefixes.length >= query.maxResults) {
        return { objects, prefixes, nextPageToken: encodePageToken(lastTaken as string) };
      }
      const cut = query.delimiter ? name.indexOf(query.delimiter, query.prefix.length) : -1;
      if (cut === -1) {
        objects.push(bucket.objects.get(name) as StoredObject);
        lastTaken = name;
        continue;
      }
      // A "directory": one prefix for all names below it; the page continues after the last of them.
      const collapsed = name.slice(0, cut + (query.delimiter as string).length);
      prefixes.push(collapsed);
      const trailing = bucket.objects.get(collapsed);
      if (query.includeTrailingDelimiter && trailing) objects.push(trailing);
      while (index + 1 < names.length && (names[index + 1] as string).startsWith(collapsed)) index++;
      lastTaken = names[index] as string;
    }
    return { objects, prefixes, nextPageToken: undefined };
  }

  #nextGeneration(): number {
    this.#lastGeneration = Math.max(this.#lastGeneration + 1, Date.now() * 1000);
    return this.#lastGeneration;
  }
}

function checkPreconditions(object: StoredObject | undefined, conditions: Preconditions): void {
  const generation = object?.generation ?? 0;
  if (conditions.ifGenerationMatch !== undefined && conditions.ifGenerationMatch !== generation) {
    throw preconditionFailed('ifGenerationMatch');
  }
  if (conditions.ifGenerationNotMatch !== undefined && conditions.ifGenerationNotMatch === generation) {
    throw preconditionFailed('ifGenerationNotMatch');
  }
  if (conditions.ifMetagenerationMatch !== undefined && conditions.ifMetagenerationMatch !== object?.metageneration) {
    throw preconditionFailed('ifMetagenerationMatch');
  }
  if (conditions.ifMetagenerationNotMatch !== undefined && object && conditions.ifMetagenerationNotMatch === object.metageneration) {
    throw preconditionFailed('ifMetagenerationNotMatch');
  }
}

function validateObjectName(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0 || bytes > 1024) throw badRequest('Object name must be between 1 and 1024 bytes long.');
  if (name === '.' || name === '..' || /[\r\n]/.test(name)) throw badRequest(`Invalid object name: '${name}'`);
}

function lowerBound(names: readonly string[], key: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byteOrder(names[mid] as string, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Opaque to clients, like GCS's own: the last name returned, so the next page starts after it.
const encodePageToken = (afterName: string) => Buffer.from(`v1:${afterName}`, 'utf8').toString('base64url');

function decodePageToken(token: string): string {
  const text = Buffer.from(token, 'base64url').toString('utf8');
  if (!text.startsWith('v1:')) throw badRequest(`Invalid page token: ${token}`);
  return text.slice(3);
}

export const newUploadId = () => randomUUID().replaceAll('-', '');
