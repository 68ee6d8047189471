import type { GetOptions, ListedObject, ListOptions, ObjectInfo, ObjectStore, PutOptions, StoredObject } from './store.js';

/** Requests made of a store, by operation: what a transfer cost in API calls. */
export interface RequestCounts {
  put: number;
  get: number;
  head: number;
  list: number;
  delete: number;
}

/**
 * Wraps a store and counts the requests made through it (one per call; a list counts once per
 * call, however many pages the store fetched). Used for the summary line and the benchmark's
 * requests-per-chunk figures.
 */
export class CountingStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #counts: RequestCounts = { put: 0, get: 0, head: 0, list: 0, delete: 0 };

  constructor(inner: ObjectStore) {
    this.#inner = inner;
  }

  get description(): string {
    return this.#inner.description;
  }

  /** A snapshot of the counts so far. */
  get counts(): RequestCounts {
    return { ...this.#counts };
  }

  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    this.#counts.put++;
    return this.#inner.put(key, body, options);
  }

  get(key: string, options?: GetOptions): Promise<StoredObject | null> {
    this.#counts.get++;
    return this.#inner.get(key, options);
  }

  head(key: string): Promise<ObjectInfo | null> {
    this.#counts.head++;
    return this.#inner.head(key);
  }

  list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject> {
    this.#counts.list++;
    return this.#inner.list(prefix, options);
  }

  delete(keys: readonly string[]): Promise<void> {
    this.#counts.delete++;
    return this.#inner.delete(keys);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
