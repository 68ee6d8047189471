import {
  type GetOptions,
  type ListedObject,
  type ListOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type StoredObject,
  StoreError,
} from '@bucketpipe/core';
import type { TransferMetrics } from './registry.js';

type Op = 'put' | 'get' | 'head' | 'list' | 'delete';

/** The kind of object a key names, for the latency histogram: chunk PUTs and manifest PUTs differ by orders of magnitude. */
export function objectKind(key: string): 'chunk' | 'manifest' | 'receiver' | 'other' {
  if (key.startsWith('chunks/')) return 'chunk';
  if (key === 'manifest.json') return 'manifest';
  if (key.startsWith('receivers/')) return 'receiver';
  return 'other';
}

/**
 * Wraps a store and measures every request: duration of the successful ones, requests and PUT
 * bytes in flight, body bytes, and failures by StoreError kind. Retryable failures (throttled,
 * transient) are counted as retries here rather than in withRetry's onRetry: every request of
 * every pipeline passes through the store, while withRetry is called from a dozen places. A
 * request that failed because the transfer was aborted is not an error of the store.
 */
export class MeteredStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #metrics: TransferMetrics;
  readonly #store: string;
  /** Called with the stored bytes of each chunk object read (receive counts its stored bytes here). */
  readonly #onChunkRead: ((bytes: number) => void) | undefined;

  constructor(inner: ObjectStore, metrics: TransferMetrics, store: string, onChunkRead?: (bytes: number) => void) {
    this.#inner = inner;
    this.#metrics = metrics;
    this.#store = store;
    this.#onChunkRead = onChunkRead;
  }

  get description(): string {
    return this.#inner.description;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    const inFlight = this.#metrics.putBytesInFlight.labels(this.#store);
    inFlight.inc(body.byteLength);
    try {
      const result = await this.#measure('put', key, options?.signal, () => this.#inner.put(key, body, options));
      this.#metrics.storeBytes.labels(this.#store, 'put').inc(body.byteLength);
      return result;
    } finally {
      inFlight.dec(body.byteLength);
    }
  }

  async get(key: string, options?: GetOptions): Promise<StoredObject | null> {
    const object = await this.#measure('get', key, options?.signal, () => this.#inner.get(key, options));
    if (object) {
      this.#metrics.storeBytes.labels(this.#store, 'get').inc(object.body.byteLength);
      if (!options?.range && objectKind(key) === 'chunk') this.#onChunkRead?.(object.body.byteLength);
    }
    return object;
  }

  head(key: string): Promise<ObjectInfo | null> {
    return this.#measure('head', key, undefined, () => this.#inner.head(key));
  }

  list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject> {
    return this.#list(prefix, options);
  }

  /** The whole listing is one measured request (its pages are the store's business), from the first item asked for to the last. */
  async *#list(prefix: string, options?: ListOptions): AsyncGenerator<ListedObject> {
    let finish: (() => void) | undefined;
    let fail: ((error: unknown) => void) | undefined;
    const listing = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    const measured = this.#measure('list', prefix, options?.signal, () => listing);
    measured.catch(() => {});
    try {
      for await (const item of this.#inner.list(prefix, options)) yield item;
      finish?.();
    } catch (error) {
      fail?.(error);
      throw error;
    } finally {
      finish?.(); // the consumer stopped early: the request ended, without error
      await measured.catch(() => {});
    }
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.#measure('delete', keys[0] ?? '', undefined, () => this.#inner.delete(keys));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async #measure<T>(op: Op, key: string, signal: AbortSignal | undefined, request: () => Promise<T>): Promise<T> {
    const metrics = this.#metrics;
    const inFlight = metrics.requestsInFlight.labels(this.#store, op);
    inFlight.inc();
    const started = performance.now();
    try {
      const result = await request();
      metrics.requestSeconds.labels(this.#store, op, objectKind(key)).observe((performance.now() - started) / 1000);
      return result;
    } catch (error) {
      if (!signal?.aborted) {
        const kind = error instanceof StoreError ? error.kind : 'unknown';
        metrics.storeErrors.labels(this.#store, op, kind).inc();
        if (error instanceof StoreError && error.retryable) metrics.retries.labels(this.#store, op, kind).inc();
      }
      throw error;
    } finally {
      inFlight.dec();
    }
  }
}
