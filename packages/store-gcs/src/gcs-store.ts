import { createHash } from 'node:crypto';
import {
  assertValidKey,
  type GetOptions,
  type ListedObject,
  type ListOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type StoredObject,
  StoreError,
} from '@bucketpipe/core';
import { type Bucket, IdempotencyStrategy, Storage } from '@google-cloud/storage';
import { type ErrorContext, statusOf, toStoreError } from './errors.js';
import { emulatorEndpoint } from './options.js';
import { downloadObject, uploadObject } from './transfer.js';

export interface GcsStoreOptions {
  bucket: string;
  /** Key prefix of the stream root inside the bucket, without leading or trailing '/' ('' for the bucket root). */
  prefix: string;
  /** A GCS JSON API server other than Google's (test server, emulator): used without credentials. */
  endpoint?: string;
  /** Objects of at least this many bytes go up as resumable uploads, smaller ones in one multipart request. */
  resumableThreshold?: number;
  /** Objects up to this size go up with their MD5, which the server checks before it stores them (default 1 MiB). */
  md5MaxBytes?: number;
  /** Parallel requests in a batch delete (default 16). */
  concurrency?: number;
  /** Per-request timeout of the client's JSON API and multipart calls (default 60 s). */
  requestTimeoutMs?: number;
  /** A download that receives nothing for this long is given up and retried (default 10 s). */
  downloadIdleTimeoutMs?: number;
}

/**
 * The client's read stream reports neither an end nor an error when a body is cut off mid-way
 * (seen with @google-cloud/storage 7.22 / gaxios 6.7), so a silent body is the only sign: a healthy
 * download never pauses this long, and retrying a chunk is cheap.
 */
export const DEFAULT_DOWNLOAD_IDLE_TIMEOUT_MS = 10_000;

/**
 * Below this, one multipart request; from it on, a resumable session (docs/TESTING.md has the
 * numbers). Up to 64 MiB both cost the same CPU and time on the test server, so the extra round trip
 * of a session decides for multipart; but a multipart upload must finish within the request timeout
 * and a resumable one need not, which decides for resumable once objects get large.
 */
export const DEFAULT_RESUMABLE_THRESHOLD = 32 * 1024 * 1024;

/**
 * MD5 costs about 1.3 ms of event-loop CPU per MiB; chunks carry their own SHA-256 that the receiver
 * checks, so only the small objects without one (manifest, receiver cursors) send an MD5 along.
 */
export const DEFAULT_MD5_MAX_BYTES = 1024 * 1024;

const PAGE_SIZE = 1000;
const LIST_FIELDS = 'items(name,size),nextPageToken';

/**
 * Cloud Storage through @google-cloud/storage. ETags are object generations, so `ifNoneMatch` maps
 * to `ifGenerationMatch=0` and `ifMatch` to `ifGenerationMatch=<generation>`: GCS checks both
 * atomically with the write. The client's own retries are off: core's withRetry retries by kind.
 */
export class GcsObjectStore implements ObjectStore {
  readonly description: string;
  readonly #storage: Storage;
  readonly #bucket: Bucket;
  readonly #bucketName: string;
  readonly #root: string;
  readonly #endpoint: string | undefined;
  readonly #resumableThreshold: number;
  readonly #md5MaxBytes: number;
  readonly #concurrency: number;
  readonly #timeoutMs: number;
  readonly #downloadIdleTimeoutMs: number;

  private constructor(options: GcsStoreOptions) {
    this.#bucketName = options.bucket;
    this.#root = options.prefix === '' ? '' : `${options.prefix}/`;
    this.description = `gs://${options.bucket}${options.prefix === '' ? '' : `/${options.prefix}`}`;
    const endpoint = options.endpoint ?? emulatorEndpoint(process.env.STORAGE_EMULATOR_HOST);
    this.#endpoint = endpoint;
    this.#resumableThreshold = options.resumableThreshold ?? DEFAULT_RESUMABLE_THRESHOLD;
    this.#md5MaxBytes = options.md5MaxBytes ?? DEFAULT_MD5_MAX_BYTES;
    this.#concurrency = options.concurrency ?? 16;
    this.#timeoutMs = options.requestTimeoutMs ?? 60_000;
    this.#downloadIdleTimeoutMs = options.downloadIdleTimeoutMs ?? DEFAULT_DOWNLOAD_IDLE_TIMEOUT_MS;
    this.#storage = new Storage({
      ...(endpoint === undefined ? {} : { apiEndpoint: endpoint }),
      timeout: this.#timeoutMs,
      // One retry layer only: core's withRetry, which knows what is safe to repeat.
      retryOptions: { autoRetry: false, idempotencyStrategy: IdempotencyStrategy.RetryNever },
    });
    if (endpoint !== undefined) {
      // The client takes STORAGE_EMULATOR_HOST verbatim as the JSON API base, without the /storage/v1
      // every real server serves under (and uploads go to apiEndpoint): set the base for both.
      this.#storage.baseUrl = `${endpoint}/storage/v1`;
    }
    this.#bucket = this.#storage.bucket(options.bucket);
  }

  /**
   * Opens the store and checks at once that the bucket exists and is readable (a one-key listing:
   * it needs only storage.objects.list, which senders and receivers both have, not buckets.get).
   */
  static async open(options: GcsStoreOptions): Promise<GcsObjectStore> {
    const store = new GcsObjectStore(options);
    try {
      await store.#bucket.getFiles({ prefix: store.#root, maxResults: 1, autoPaginate: false, fields: 'nextPageToken' });
    } catch (error) {
      throw store.#error(error, { action: 'open', opening: true });
    }
    return store;
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag: string }> {
    assertValidKey(key);
    const ifGenerationMatch = options.ifNoneMatch ? '0' : options.ifMatch === undefined ? undefined : generationOf(options.ifMatch);
    if (ifGenerationMatch === null) {
      // Not a generation this store ever returned, so it cannot be the current version.
      throw new StoreError('precondition', `${this.description}/${key} is not at version ${JSON.stringify(options.ifMatch)}`, { key });
    }
    const name = this.#root + key;
    const metadata: { contentType: string; md5Hash?: string } = {
      contentType: key.endsWith('.json') ? 'application/json' : 'application/octet-stream',
    };
    if (body.length <= this.#md5MaxBytes) metadata.md5Hash = createHash('md5').update(body).digest('base64');
    try {
      const generation = await uploadObject(
        this.#bucket.file(name),
        body,
        {
          resumable: body.length >= this.#resumableThreshold,
          metadata,
          preconditionOpts: ifGenerationMatch === undefined ? {} : { ifGenerationMatch },
          timeoutMs: this.#timeoutMs,
        },
        options.signal,
      );
      return { etag: generation };
    } catch (error) {
      throw this.#error(error, { action: 'write', object: name, key }, options.signal);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | null> {
    assertValidKey(key);
    const range = options.range;
    if (range && range.end <= range.start) return this.#emptyRange(key);
    const name = this.#root + key;
    try {
      const { body, generation } = await downloadObject(
        this.#bucket.file(name),
        range ? { start: range.start, end: range.end - 1 } : undefined,
        { idleTimeoutMs: this.#downloadIdleTimeoutMs, into: options.into },
        options.signal,
      );
      return { body, etag: generation };
    } catch (error) {
      const status = statusOf(error);
      if (status === 404 && !bucketMissing(error)) return null;
      if (status === 416) return this.#emptyRange(key); // the range starts at or past the end
      throw this.#error(error, { action: 'read', object: name, key }, options.signal);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertValidKey(key);
    const name = this.#root + key;
    try {
      const [metadata] = await this.#bucket.file(name).getMetadata();
      return { size: Number(metadata.size ?? 0), etag: String(metadata.generation) };
    } catch (error) {
      if (statusOf(error) === 404 && !bucketMissing(error)) return null;
      throw this.#error(error, { action: 'read', object: name, key });
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ListedObject> {
    // startOffset is inclusive: the object named exactly startAfter is dropped below.
    const startAfter = options.startAfter === undefined ? undefined : this.#root + options.startAfter;
    let pageToken: string | undefined;
    do {
      options.signal?.throwIfAborted();
      let response: unknown;
      try {
        [, , response] = await this.#bucket.getFiles({
          prefix: this.#root + prefix,
          maxResults: PAGE_SIZE,
          autoPaginate: false,
          fields: LIST_FIELDS,
          ...(startAfter === undefined ? {} : { startOffset: startAfter }),
          ...(pageToken === undefined ? {} : { pageToken }),
        });
      } catch (error) {
        throw this.#error(error, { action: 'list', object: `${this.#root}${prefix}*` });
      }
      const page = parseListPage(response);
      for (const item of page.items) {
        if (item.name !== startAfter) yield { key: item.name.slice(this.#root.length), size: item.size };
      }
      if (page.nextPageToken !== undefined && page.nextPageToken === pageToken) {
        throw new StoreError(
          'fatal',
          `listing ${this.description}/${prefix}* does not advance: the server returned the same page token twice`,
        );
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== undefined);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) assertValidKey(key);
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++] as string;
        const name = this.#root + key;
        try {
          await this.#bucket.file(name).delete({ ignoreNotFound: true });
        } catch (error) {
          throw this.#error(error, { action: 'delete', object: name, key });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, keys.length) }, worker));
  }

  async close(): Promise<void> {
    // The client keeps no per-instance sockets: its keep-alive agent is shared by the process
    // (and unref'd when idle), so there is nothing to release here.
  }

  async #emptyRange(key: string): Promise<StoredObject | null> {
    const info = await this.head(key);
    return info && { body: new Uint8Array(0), etag: info.etag };
  }

  #error(error: unknown, context: Omit<ErrorContext, 'bucket' | 'endpoint'>, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason;
    return toStoreError(error, { ...context, bucket: this.#bucketName, ...(this.#endpoint ? { endpoint: this.#endpoint } : {}) });
  }
}

/** A generation as this store hands it out (the ETag); null for anything else. */
function generationOf(etag: string): string | null {
  return /^[1-9]\d{0,18}$/.test(etag) ? etag : null;
}

function bucketMissing(error: unknown): boolean {
  return /bucket does not exist/i.test((error as { message?: unknown })?.message as string);
}

function parseListPage(response: unknown): { items: Array<{ name: string; size: number }>; nextPageToken: string | undefined } {
  const page = (response ?? {}) as { items?: unknown; nextPageToken?: unknown };
  const items = Array.isArray(page.items) ? page.items : [];
  return {
    items: items.map((item: { name?: unknown; size?: unknown }) => {
      if (typeof item.name !== 'string') throw new StoreError('fatal', `object listing from Cloud Storage has an item without a name`);
      return { name: item.name, size: Number(item.size ?? 0) };
    }),
    nextPageToken: typeof page.nextPageToken === 'string' && page.nextPageToken !== '' ? page.nextPageToken : undefined,
  };
}
