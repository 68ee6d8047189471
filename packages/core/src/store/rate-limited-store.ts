import { raceAbort } from '../abort.js';
import type { GetOptions, ListedObject, ListOptions, ObjectInfo, ObjectStore, PutOptions, StoredObject } from './store.js';
import type { TokenBucket } from './token-bucket.js';

/**
 * Bodies up to this size (manifests, cursors, heartbeats) wait only for the bucket's debt, not
 * behind queued chunk bodies, so a slow rate cannot make a heartbeat look stale. They still count.
 */
export const SMALL_OBJECT_BYTES = 64 * 1024;

/**
 * Wraps a store and paces the object bodies that cross the network through a token bucket; head,
 * list and delete (small, bodiless) pass unpaced.
 *
 * A put pays for its body before it is sent. A get cannot know its size before the response, so it
 * reserves an estimate — the range's length, or the largest object read so far from the same
 * directory (chunk objects are alike) — and settles the difference when the body has arrived: a
 * refund, or debt that delays the next request. The first get of a directory has no estimate; it
 * goes alone, and the other gets of that directory wait for its size, so a receiver's first
 * `--concurrency` downloads do not burst out together and then stall.
 */
export class RateLimitedStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #bucket: TokenBucket;
  readonly #largest = new Map<string, number>();
  readonly #probes = new Map<string, Promise<void>>();

  constructor(inner: ObjectStore, bucket: TokenBucket) {
    this.#inner = inner;
    this.#bucket = bucket;
  }

  get description(): string {
    return this.#inner.description;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    await this.#take(body.byteLength, options?.signal);
    return this.#inner.put(key, body, options);
  }

  async get(key: string, options?: GetOptions): Promise<StoredObject | null> {
    const signal = options?.signal;
    const directory = key.slice(0, key.lastIndexOf('/') + 1);
    const range = options?.range;
    let estimate = range ? Math.max(0, range.end - range.start) : undefined;
    let endProbe: (() => void) | undefined;
    while (estimate === undefined) {
      estimate = this.#largest.get(directory);
      if (estimate !== undefined) break;
      const probe = this.#probes.get(directory);
      if (!probe) {
        estimate = 0;
        endProbe = this.#startProbe(directory);
        break;
      }
      await raceAbort(probe, signal);
    }
    try {
      await this.#take(estimate, signal);
      const object = await this.#inner.get(key, options);
      const size = object?.body.byteLength ?? 0;
      this.#bucket.settle(size - estimate);
      if (object && !range) this.#largest.set(directory, Math.max(size, this.#largest.get(directory) ?? 0));
      return object;
    } finally {
      endProbe?.();
    }
  }

  head(key: string): Promise<ObjectInfo | null> {
    return this.#inner.head(key);
  }

  list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject> {
    return this.#inner.list(prefix, options);
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.#inner.delete(keys);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #take(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    return bytes <= SMALL_OBJECT_BYTES ? this.#bucket.takeAhead(bytes, signal) : this.#bucket.take(bytes, signal);
  }

  /** Marks a get of `directory` as the one that learns its object size; returns its end. */
  #startProbe(directory: string): () => void {
    let end = () => {};
    this.#probes.set(
      directory,
      new Promise<void>((resolve) => {
        end = resolve;
      }),
    );
    return () => {
      this.#probes.delete(directory);
      end();
    };
  }
}
