import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RateLimitedStore, SMALL_OBJECT_BYTES } from './rate-limited-store.js';
import type { GetOptions, ListedObject, ObjectInfo, ObjectStore, StoredObject } from './store.js';
import { TokenBucket } from './token-bucket.js';

const RATE = 100_000; // bytes per second: a 200 kB object takes 2 s
const BIG = 200_000;

describe('RateLimitedStore', () => {
  let inner: InstantStore;
  let bucket: TokenBucket;
  let store: RateLimitedStore;

  beforeEach(() => {
    vi.useFakeTimers();
    inner = new InstantStore();
    bucket = new TokenBucket({ bytesPerSecond: RATE, burstBytes: 0, now: () => Date.now() });
    store = new RateLimitedStore(inner, bucket);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Starts the operations and records when each one finished, in ms since the start. */
  function track(operations: Array<() => Promise<unknown>>) {
    const start = Date.now();
    const at: Array<number | string> = operations.map(() => 'pending');
    operations.forEach((operation, i) => {
      operation().then(
        () => {
          at[i] = Date.now() - start;
        },
        (error: unknown) => {
          at[i] = `rejected: ${String(error)}`;
        },
      );
    });
    return at;
  }

  it('pays for a put body before sending it', async () => {
    const at = track([() => store.put('chunks/a', new Uint8Array(BIG)), () => store.put('chunks/b', new Uint8Array(BIG))]);
    await vi.advanceTimersByTimeAsync(1999);
    expect(inner.has('chunks/a')).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(inner.has('chunks/a')).toBe(true);
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual([2000, 4000]);
    expect(store.description).toBe('memory://limited');
  });

  it('sends the first get of a directory alone, then reserves the size it learned for the others', async () => {
    for (const key of ['chunks/a', 'chunks/b', 'chunks/c']) await inner.put(key, new Uint8Array(BIG));
    const at = track(['chunks/a', 'chunks/b', 'chunks/c'].map((key) => () => store.get(key)));
    await vi.advanceTimersByTimeAsync(10_000);
    // a goes at once and leaves 2 s of debt; b and c each wait for their own 2 s after that.
    expect(at).toEqual([0, 4000, 6000]);
  });

  it('refunds what a get reserved but did not receive, so the average stays exact', async () => {
    await inner.put('chunks/a', new Uint8Array(BIG));
    await inner.put('chunks/b', new Uint8Array(BIG / 2));
    await inner.put('chunks/c', new Uint8Array(BIG));
    await store.get('chunks/a'); // learns 200 kB, 2 s of debt
    const at = track([() => store.get('chunks/b'), () => store.get('chunks/missing'), () => store.get('chunks/c')]);
    await vi.advanceTimersByTimeAsync(20_000);
    // b reserves 200 kB (done at 4 s) and gets 100 kB back; the absent object costs nothing.
    expect(at).toEqual([4000, 5000, 5000]);
    expect(bucket.tokens).toBe(0);
  });

  it('reserves a range by its length', async () => {
    await inner.put('chunks/a', new Uint8Array(BIG));
    const at = track([
      () => store.get('chunks/a', { range: { start: 0, end: BIG } }),
      () => store.get('chunks/a', { range: { start: 0, end: 100_000 } }),
    ]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual([2000, 3000]);
  });

  it('lets small objects pass queued chunk bodies, and charges them', async () => {
    const at = track([
      () => store.put('chunks/a', new Uint8Array(BIG)),
      () => store.put('manifest.json', new Uint8Array(SMALL_OBJECT_BYTES)),
    ]);
    await vi.advanceTimersByTimeAsync(0);
    expect(at).toEqual(['pending', 0]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual([Math.ceil(2000 + (SMALL_OBJECT_BYTES * 1000) / RATE), 0]);
  });

  it('gives up a wait when its signal aborts, without touching the store', async () => {
    const controller = new AbortController();
    const at = track([() => store.put('chunks/a', new Uint8Array(BIG), { signal: controller.signal })]);
    await vi.advanceTimersByTimeAsync(500);
    controller.abort(new Error('interrupted'));
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual(['rejected: Error: interrupted']);
    expect(inner.has('chunks/a')).toBe(false);
  });

  it('lets head, list and delete through unpaced', async () => {
    await inner.put('chunks/a', new Uint8Array(BIG));
    expect((await store.head('chunks/a'))?.size).toBe(BIG);
    const keys: string[] = [];
    for await (const item of store.list('chunks/')) keys.push(item.key);
    expect(keys).toEqual(['chunks/a']);
    await store.delete(['chunks/a']);
    expect(inner.has('chunks/a')).toBe(false);
    expect(bucket.tokens).toBe(0);
  });
});

/** A store that answers without touching the event loop (MemoryStore yields with setImmediate, which fake timers hold up). */
class InstantStore implements ObjectStore {
  readonly description = 'memory://limited';
  readonly #objects = new Map<string, Uint8Array>();

  has(key: string): boolean {
    return this.#objects.has(key);
  }

  async put(key: string, body: Uint8Array): Promise<{ etag: string }> {
    this.#objects.set(key, body.slice());
    return { etag: '"x"' };
  }

  async get(key: string, options?: GetOptions): Promise<StoredObject | null> {
    const body = this.#objects.get(key);
    if (!body) return null;
    return { body: body.slice(options?.range?.start ?? 0, options?.range?.end ?? body.length), etag: '"x"' };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const body = this.#objects.get(key);
    return body ? { size: body.length, etag: '"x"' } : null;
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    for (const [key, body] of [...this.#objects].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (key.startsWith(prefix)) yield { key, size: body.length };
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.#objects.delete(key);
  }

  async close(): Promise<void> {}
}
