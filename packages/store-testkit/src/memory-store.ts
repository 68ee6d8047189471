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

interface Entry {
  body: Uint8Array;
  etag: string;
}

/** Unique across every MemoryStore in the process, so an ETag never comes back after a delete. */
let nextVersion = 1;

/**
 * An object store in a Map, for unit tests. It keeps the contract the real stores keep (and the
 * conformance suite checks): ETags change on every write, create-only and compare-and-swap are
 * atomic, `list` is in byte order, ranges are half-open, and bytes are copied on the way in and out
 * so that a caller can neither alias nor mutate what is stored. Every call yields to the event loop
 * first, like a network round trip would, so concurrent callers really interleave.
 */
export class MemoryStore implements ObjectStore {
  readonly description: string;
  #objects = new Map<string, Entry>();
  #closed = false;

  constructor(description = 'memory://store') {
    this.description = description;
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag: string }> {
    await this.#enter(key, options.signal);
    const current = this.#objects.get(key);
    if (options.ifNoneMatch && current) {
      throw new StoreError('precondition', `${this.description}/${key} already exists`, { key });
    }
    if (options.ifMatch !== undefined && current?.etag !== options.ifMatch) {
      throw new StoreError(
        'precondition',
        current ? `${this.description}/${key} is not at version ${options.ifMatch}` : `${this.description}/${key} does not exist`,
        { key },
      );
    }
    const etag = `"m${(nextVersion++).toString(16)}"`;
    this.#objects.set(key, { body: copy(body), etag });
    return { etag };
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | null> {
    await this.#enter(key, options.signal);
    const entry = this.#objects.get(key);
    if (!entry) return null;
    const size = entry.body.length;
    const start = Math.min(Math.max(0, options.range?.start ?? 0), size);
    const end = Math.max(start, Math.min(options.range?.end ?? size, size));
    const body = entry.body.subarray(start, end);
    const into = options.into;
    if (into !== undefined && into.length >= body.length) {
      into.set(body);
      return { body: into.subarray(0, body.length), etag: entry.etag };
    }
    return { body: copy(body), etag: entry.etag };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    await this.#enter(key);
    const entry = this.#objects.get(key);
    return entry ? { size: entry.body.length, etag: entry.etag } : null;
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ListedObject> {
    await this.#enter(undefined, options.signal);
    const { startAfter } = options;
    // A snapshot: writes during the iteration do not disturb it.
    const listed = this.keys(prefix)
      .filter((key) => startAfter === undefined || byteOrder(key, startAfter) > 0)
      .map((key) => ({ key, size: this.#objects.get(key)?.body.length ?? 0 }));
    for (const item of listed) {
      options.signal?.throwIfAborted();
      yield item;
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) assertValidKey(key);
    await this.#enter();
    for (const key of keys) this.#objects.delete(key);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  // Synchronous introspection for tests (not part of ObjectStore).

  /** Stored keys starting with `prefix`, in byte order. */
  keys(prefix = ''): string[] {
    return [...this.#objects.keys()].filter((key) => key.startsWith(prefix)).sort(byteOrder);
  }

  has(key: string): boolean {
    return this.#objects.has(key);
  }

  /** A copy of the stored bytes, or undefined. */
  peek(key: string): Uint8Array | undefined {
    const entry = this.#objects.get(key);
    return entry ? copy(entry.body) : undefined;
  }

  async #enter(key?: string, signal?: AbortSignal): Promise<void> {
    if (key !== undefined) assertValidKey(key);
    await new Promise<void>((resolve) => setImmediate(resolve));
    signal?.throwIfAborted();
    if (this.#closed) throw new StoreError('fatal', `${this.description} is closed`, { key });
  }
}

/** Ascending byte order of UTF-8 keys (what S3 and GCS list in). */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A copy in an ArrayBuffer of its own (transferable to a worker, like a fresh network body). */
function copy(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(bytes.length));
  out.set(bytes);
  return out;
}
