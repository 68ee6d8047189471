import type { GetOptions, ListedObject, ListOptions, ObjectInfo, ObjectStore, PutOptions, StoredObject } from './store.js';

/**
 * A view of the keys under `prefix` of another store, as a store of its own: how a series hands
 * each of its streams (`streams/<seq>/`) to the ordinary pipelines over one connection pool.
 * Closing the view leaves the underlying store open: it belongs to whoever opened it.
 */
export class PrefixedStore implements ObjectStore {
  readonly description: string;
  readonly #store: ObjectStore;
  readonly #prefix: string;

  constructor(store: ObjectStore, prefix: string) {
    if (!/^[^/].*\/$/.test(prefix)) throw new TypeError(`a store prefix is a relative path ending in '/', got ${JSON.stringify(prefix)}`);
    this.#store = store;
    this.#prefix = prefix;
    this.description = `${store.description.replace(/\/+$/, '')}/${prefix.slice(0, -1)}`;
  }

  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    return this.#store.put(this.#prefix + key, body, options);
  }

  get(key: string, options?: GetOptions): Promise<StoredObject | null> {
    return this.#store.get(this.#prefix + key, options);
  }

  head(key: string): Promise<ObjectInfo | null> {
    return this.#store.head(this.#prefix + key);
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject> {
    const startAfter = options?.startAfter === undefined ? undefined : this.#prefix + options.startAfter;
    for await (const object of this.#store.list(this.#prefix + prefix, { ...options, startAfter })) {
      yield { ...object, key: object.key.slice(this.#prefix.length) };
    }
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.#store.delete(keys.map((key) => this.#prefix + key));
  }

  async close(): Promise<void> {}
}
