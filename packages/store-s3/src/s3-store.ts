import {
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
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
import { type ConditionalSupport, formatIfMatch, PROBE_DIR, type ProbeTarget, probeConditionalSupport } from './conditional-probe.js';
import { createS3Clients, MULTIPART_QUEUE, resolveRegion, type S3Clients, silenceSdkNodeVersionWarning } from './s3-client.js';
import { type ErrorContext, isBadCredentials, isNotFound, toStoreError } from './s3-errors.js';
import type { S3Settings } from './s3-options.js';

const MiB = 1024 * 1024;
/** S3's limits: one PUT or one part at most 5 GiB, at most 10,000 parts, an object at most 5 TiB. */
export const MAX_SINGLE_PUT = 5 * 1024 * MiB;
const MAX_PARTS = 10_000;
const MAX_OBJECT = 5 * 1024 * 1024 * MiB;
/**
 * Objects up to this size go up in one PUT, larger ones as a multipart upload. Measured against
 * radosgw on this machine (README.md): one PUT is faster and cheaper in CPU up to 64 MiB and even
 * at 256 MiB; multipart is for objects that must be split (over 5 GiB) and for not resending a
 * whole large object after one failed request.
 */
export const DEFAULT_MULTIPART_THRESHOLD = 128 * MiB;
export const DEFAULT_PART_SIZE = 32 * MiB;
const DELETE_BATCH = 1000;

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix of the stream root, without leading or trailing '/'; '' for the bucket's root. */
  prefix: string;
  settings: S3Settings;
  region: string;
  /** Objects larger than this are uploaded in parts (default 128 MiB). */
  multipartThreshold?: number;
  /** Size of each part of a multipart upload (default 32 MiB; raised as needed to stay within 10,000 parts). */
  partSize?: number;
  /**
   * Told once per store when the server honours no conditional writes and `allowUnconditionalWrites`
   * lets the store emulate them (check, then write: two writers can still race). The factory
   * passes none: the user asked for it with --unsafe-unconditional-writes.
   */
  onWarning?: (message: string) => void;
}

/**
 * An S3 bucket (AWS or a compatible server) as an ObjectStore, rooted at a key prefix. Create-only
 * and compare-and-swap writes use If-None-Match / If-Match, in the form the server was found to
 * honour by a probe on the first conditional write.
 */
export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly multipartThreshold: number;
  readonly partSize: number;
  #clients: S3Clients;
  #settings: S3Settings;
  #root: string;
  #endpointLabel: string;
  #onWarning: ((message: string) => void) | undefined;
  #warned = false;
  #conditional: Promise<ConditionalSupport> | undefined;

  constructor(options: S3StoreOptions) {
    silenceSdkNodeVersionWarning();
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.#settings = options.settings;
    this.#root = options.prefix === '' ? '' : `${options.prefix}/`;
    this.#endpointLabel = options.settings.endpoint ?? `AWS S3 (${options.region})`;
    this.description = `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''}${options.settings.endpoint ? ` at ${options.settings.endpoint}` : ''}`;
    this.multipartThreshold = Math.min(options.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD, MAX_SINGLE_PUT);
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (this.partSize < 5 * MiB || this.partSize > MAX_SINGLE_PUT)
      throw new TypeError(`partSize must be from 5 MiB to 5 GiB, got ${this.partSize}`);
    this.#onWarning = options.onWarning;
    this.#clients = createS3Clients(options.settings, options.region);
  }

  /**
   * Resolves the region and checks with one cheap request (a listing of at most one key) that the
   * endpoint answers, the credentials are valid and the bucket exists, so that these fail at once
   * with a clear message before any data moves. Credentials that are valid but may not list are
   * let through: a receiver needs to read objects only.
   */
  static async open(options: Omit<S3StoreOptions, 'region'> & { region?: string }): Promise<S3ObjectStore> {
    silenceSdkNodeVersionWarning();
    const region = options.region ?? (await resolveRegion(options.settings, options.bucket));
    const store = new S3ObjectStore({ ...options, region });
    try {
      await store.#send('open', undefined, undefined, (client, abortSignal) =>
        client.send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: store.#root, MaxKeys: 1 }), { abortSignal }),
      );
    } catch (error) {
      const permissionOnly = error instanceof StoreError && error.kind === 'auth' && !isBadCredentials(error.cause);
      if (!permissionOnly) {
        await store.close();
        throw error;
      }
    }
    return store;
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag: string }> {
    const fullKey = this.#key(key);
    if (body.length > MAX_OBJECT)
      throw new StoreError('fatal', `cannot store ${key}: ${body.length} bytes is more than S3's 5 TiB per object`, { key });
    if (options.ifNoneMatch || options.ifMatch !== undefined) return this.#conditionalPut(key, fullKey, body, options);
    if (body.length > this.multipartThreshold) return { etag: await this.#multipartPut(key, fullKey, body, options.signal) };
    return { etag: await this.#singlePut(key, fullKey, body, {}, options.signal) };
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | null> {
    const fullKey = this.#key(key);
    const range = options.range;
    if (range !== undefined && range.end <= range.start) return this.#emptyRange(key);
    let response: GetObjectCommandOutput;
    try {
      response = await this.#send('read', key, options.signal, (client, abortSignal) =>
        client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: fullKey, Range: range ? `bytes=${range.start}-${range.end - 1}` : undefined }),
          { abortSignal },
        ),
      );
    } catch (error) {
      if (error instanceof StoreError && isNotFound(error.cause)) return null;
      // A range that starts at or past the end: HTTP says 416, the contract says an empty body.
      if (error instanceof StoreError && isInvalidRange(error.cause)) return this.#emptyRange(key);
      throw error;
    }
    const body = await this.#readBody(response, key, options);
    return { body, etag: response.ETag ?? '' };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const fullKey = this.#key(key);
    try {
      const response = await this.#send('read', key, undefined, (client, abortSignal) =>
        client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: fullKey }), { abortSignal }),
      );
      return { size: response.ContentLength ?? 0, etag: response.ETag ?? '' };
    } catch (error) {
      if (error instanceof StoreError && isNotFound(error.cause)) return null;
      throw error;
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ListedObject> {
    assertValidListPrefix(prefix);
    // The continuation token carries the position from the second page on.
    const startAfter = options.startAfter === undefined ? undefined : this.#root + options.startAfter;
    let token: string | undefined;
    do {
      const continuation = token;
      const position = continuation === undefined ? { StartAfter: startAfter } : { ContinuationToken: continuation };
      const page = await this.#send('list', prefix, options.signal, (client, abortSignal) =>
        client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.#root + prefix, ...position }), {
          abortSignal,
        }),
      );
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(this.#root.length);
        // Keys with a segment starting with '.' are the store's own (the probe's scratch objects).
        if (key === undefined || key === '' || key.split('/').some((segment) => segment.startsWith('.'))) continue;
        yield { key, size: object.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async delete(keys: readonly string[]): Promise<void> {
    const fullKeys = keys.map((key) => this.#key(key));
    for (let i = 0; i < fullKeys.length; i += DELETE_BATCH) {
      const batch = fullKeys.slice(i, i + DELETE_BATCH);
      const response = await this.#send(
        'delete',
        batch.length === 1 ? keys[i] : `${batch.length} objects`,
        undefined,
        (client, abortSignal) =>
          client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), {
            abortSignal,
          }),
      );
      const failure = response.Errors?.find((e) => e.Code !== 'NoSuchKey');
      if (failure) {
        const key = failure.Key?.slice(this.#root.length);
        const error = Object.assign(new Error(failure.Message ?? failure.Code ?? 'delete failed'), { name: failure.Code ?? 'Error' });
        throw toStoreError(error, this.#context('delete', key));
      }
    }
  }

  async close(): Promise<void> {
    this.#clients.destroy();
  }

  /** What the probe found on this server (runs it if it has not run yet). */
  conditionalSupport(): Promise<ConditionalSupport> {
    // Once per store; a failed probe (network, read-only credentials) is not remembered, so that
    // the next conditional write tries again.
    const context = this.#context('probe conditional writes in', `${PROBE_DIR}/`);
    const isRetryable = (error: unknown) => toStoreError(error, context).retryable;
    this.#conditional ??= probeConditionalSupport(this.#probeTarget(), this.#root, { isRetryable }).catch((error: unknown) => {
      this.#conditional = undefined;
      throw toStoreError(error, context);
    });
    return this.#conditional;
  }

  async #conditionalPut(key: string, fullKey: string, body: Uint8Array, options: PutOptions): Promise<{ etag: string }> {
    if (body.length > MAX_SINGLE_PUT) {
      throw new StoreError('fatal', `cannot write ${key} conditionally: ${body.length} bytes is more than one PUT may carry (5 GiB)`, {
        key,
      });
    }
    const support = await this.conditionalSupport();
    const honoured = options.ifNoneMatch ? support.createOnly : support.ifMatchForm !== null;
    if (!honoured) return this.#emulatedConditionalPut(key, fullKey, body, options, support);
    const condition = options.ifNoneMatch
      ? { IfNoneMatch: '*' }
      : { IfMatch: formatIfMatch(options.ifMatch ?? '', support.ifMatchForm ?? 'quoted') };
    try {
      return { etag: await this.#singlePut(key, fullKey, body, condition, options.signal) };
    } catch (error) {
      // AWS answers If-Match on an absent key with 404 NoSuchKey, radosgw with 412: both mean "not that version".
      if (options.ifMatch !== undefined && error instanceof StoreError && isNotFound(error.cause)) {
        throw new StoreError('precondition', `${key} in ${this.description} does not exist (expected version ${options.ifMatch})`, {
          key,
          cause: error.cause,
        });
      }
      if (error instanceof StoreError && error.retryable && !options.signal?.aborted) {
        return this.#settleConditionalPut(key, body, options, error);
      }
      throw error;
    }
  }

  /**
   * A conditional PUT that failed without an answer to its condition (5xx, reset connection) may
   * or may not have been applied: radosgw answers the losers of racing If-Match writes with 500,
   * and a write can land just before its connection breaks. Retrying blindly would turn a write
   * that landed into a false "another writer" (412), or a lost race into a success. So look:
   * our bytes are there → it landed; the object is still at the expected version (or absent for
   * create-only) → it was not applied, retrying is safe; anything else → another writer won.
   */
  async #settleConditionalPut(key: string, body: Uint8Array, options: PutOptions, failure: StoreError): Promise<{ etag: string }> {
    let current: StoredObject | null;
    try {
      current = await this.get(key, { signal: options.signal });
    } catch {
      throw failure;
    }
    if (current !== null && Buffer.from(current.body.buffer, current.body.byteOffset, current.body.length).equals(body)) {
      return { etag: current.etag };
    }
    const untouched = options.ifNoneMatch ? current === null : current !== null && sameEtag(current.etag, options.ifMatch ?? '');
    if (untouched) throw failure;
    throw new StoreError('precondition', `${key} in ${this.description} was changed by another writer (${failure.message})`, {
      key,
      cause: failure,
    });
  }

  /** Check, then write: only with allowUnconditionalWrites, and racy by nature (two writers can both pass the check). */
  async #emulatedConditionalPut(
    key: string,
    fullKey: string,
    body: Uint8Array,
    options: PutOptions,
    support: ConditionalSupport,
  ): Promise<{ etag: string }> {
    if (!this.#settings.allowUnconditionalWrites) {
      const missing = [support.createOnly ? '' : 'If-None-Match', support.ifMatchForm ? '' : 'If-Match'].filter(Boolean).join(' and ');
      throw new StoreError(
        'fatal',
        `${this.#endpointLabel} does not honour ${missing} on PUT, so two senders could overwrite each other's manifest: use a server that supports conditional writes, or pass --unsafe-unconditional-writes to accept that risk`,
        { key },
      );
    }
    if (!this.#warned) {
      this.#warned = true;
      this.#onWarning?.(
        `${this.#endpointLabel} does not honour conditional writes: emulating them by check-then-write (two writers can still race)`,
      );
    }
    const current = await this.head(key);
    if (options.ifNoneMatch ? current !== null : current?.etag !== options.ifMatch) {
      throw new StoreError('precondition', `${key} in ${this.description} ${options.ifNoneMatch ? 'exists' : 'is not at that version'}`, {
        key,
      });
    }
    return { etag: await this.#singlePut(key, fullKey, body, {}, options.signal) };
  }

  async #singlePut(
    key: string,
    fullKey: string,
    body: Uint8Array,
    condition: { IfNoneMatch?: string; IfMatch?: string },
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const response = await this.#send('write', key, signal, (client, abortSignal) =>
      client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: fullKey,
          Body: body,
          ContentLength: body.length,
          ContentType: 'application/octet-stream',
          ...condition,
        }),
        { abortSignal },
      ),
    );
    return response.ETag || (await this.#etagAfterWrite(key));
  }

  async #multipartPut(key: string, fullKey: string, body: Uint8Array, signal: AbortSignal | undefined): Promise<string> {
    // At most 10,000 parts: raise the part size (in whole MiB) for very large objects.
    const partSize = Math.max(this.partSize, Math.ceil(body.length / MAX_PARTS / MiB) * MiB);
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await this.#send('write', key, signal, () =>
        new Upload({
          client: this.#clients.partsClient,
          params: { Bucket: this.bucket, Key: fullKey, Body: body, ContentType: 'application/octet-stream' },
          partSize,
          queueSize: MULTIPART_QUEUE,
          abortController: controller,
        }).done(),
      );
      return response.ETag || (await this.#etagAfterWrite(key));
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Some servers leave the ETag out of a PUT's answer (radosgw 16 after a multipart upload: empty); the object's head has it. */
  async #etagAfterWrite(key: string): Promise<string> {
    const info = await this.head(key);
    if (!info?.etag)
      throw new StoreError('fatal', `${this.#endpointLabel} returned no ETag for ${key}: this server cannot be used`, { key });
    return info.etag;
  }

  async #emptyRange(key: string): Promise<StoredObject | null> {
    const info = await this.head(key);
    return info === null ? null : { body: new Uint8Array(0), etag: info.etag };
  }

  /** Reads a GET body into one buffer of its own (not Node's shared pool), so that it can be handed to a worker. */
  async #readBody(response: GetObjectCommandOutput, key: string, { signal, into }: GetOptions): Promise<Uint8Array> {
    const stream = response.Body as AsyncIterable<Uint8Array> | undefined;
    const expected = response.ContentLength;
    if (stream === undefined) return new Uint8Array(0);
    try {
      if (expected === undefined) {
        const parts: Uint8Array[] = [];
        for await (const part of stream) parts.push(part);
        return new Uint8Array(Buffer.concat(parts));
      }
      const body = into !== undefined && into.length >= expected ? into.subarray(0, expected) : new Uint8Array(expected);
      let read = 0;
      for await (const part of stream) {
        if (read + part.length > expected)
          throw Object.assign(new Error(`body longer than Content-Length ${expected}`), { name: 'InternalError' });
        body.set(part, read);
        read += part.length;
      }
      if (read !== expected) {
        throw Object.assign(new Error(`body ended after ${read} of ${expected} bytes`), { name: 'RequestTimeout', code: 'ECONNRESET' });
      }
      return body;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw toStoreError(error, this.#context('read', key));
    }
  }

  /** Runs one SDK call; an abort rejects with the signal's reason, anything else becomes a StoreError. */
  async #send<T>(
    action: string,
    key: string | undefined,
    signal: AbortSignal | undefined,
    call: (client: S3Clients['client'], abortSignal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> {
    signal?.throwIfAborted();
    try {
      return await call(this.#clients.client, signal);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw toStoreError(error, { ...this.#context(action, key), phase: action === 'open' ? 'open' : 'call' });
    }
  }

  #context(action: string, key?: string): ErrorContext {
    return { bucket: this.bucket, endpoint: this.#endpointLabel, customEndpoint: this.#settings.endpoint !== undefined, action, key };
  }

  #key(key: string): string {
    assertValidKey(key);
    return this.#root + key;
  }

  /** Raw writes for the probe: its keys start with '.', which assertValidKey rightly refuses to callers. */
  #probeTarget(): ProbeTarget {
    const client = this.#clients.client;
    return {
      put: async (fullKey, body, condition) => {
        const response = await client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: fullKey,
            Body: body,
            ContentLength: body.length,
            ...(condition?.ifNoneMatch ? { IfNoneMatch: condition.ifNoneMatch } : {}),
            ...(condition?.ifMatch ? { IfMatch: condition.ifMatch } : {}),
          }),
        );
        return response.ETag ?? '';
      },
      remove: async (fullKey) => {
        await client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: [{ Key: fullKey }], Quiet: true } }));
      },
    };
  }
}

/** A listing prefix may end inside a segment ('chunks/00000000001'), but its complete segments must be valid keys. */
function assertValidListPrefix(prefix: string): void {
  const cut = prefix.lastIndexOf('/');
  if (cut !== -1) assertValidKey(prefix.slice(0, cut));
  const tail = prefix.slice(cut + 1);
  if (!/^([A-Za-z0-9_-][A-Za-z0-9._-]*)?$/.test(tail)) assertValidKey(tail);
}

function sameEtag(a: string, b: string): boolean {
  return formatIfMatch(a, 'unquoted') === formatIfMatch(b, 'unquoted');
}

function isInvalidRange(error: unknown): boolean {
  const e = error as { name?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
  return e?.name === 'InvalidRange' || e?.$metadata?.httpStatusCode === 416;
}
