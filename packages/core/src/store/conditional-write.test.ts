// From the built package, like the memory store: one StoreError class on both sides of `instanceof`.
import { putIfAbsent, putIfMatch, withRetry } from '@bucketpipe/core';
import { FaultyStore, MemoryStore } from '@bucketpipe/store-testkit';
import { describe, expect, it } from 'vitest';

const fast = { attempts: 5, baseDelayMs: 1, maxDelayMs: 2 };
const bytes = (text: string) => Buffer.from(text);

describe('conditional writes', () => {
  it('write once, refuse another writer', async () => {
    const store = new MemoryStore();
    const first = await putIfAbsent(store, 'k', bytes('one'));
    expect(first).toHaveProperty('etag');
    expect(await putIfAbsent(store, 'k', bytes('two'))).toMatchObject({ refused: { kind: 'precondition' } });
    const etag = (first as { etag: string }).etag;
    const second = await putIfMatch(store, 'k', bytes('two'), etag);
    expect(second).toHaveProperty('etag');
    expect(await putIfMatch(store, 'k', bytes('three'), etag)).toMatchObject({ refused: { kind: 'precondition' } });
  });

  it('take a write whose reply was lost for their own, also when the read that checks it fails once', async () => {
    const store = new FaultyStore(new MemoryStore());
    const created = await putIfAbsent(store, 'k', bytes('v1'));
    const etag = (created as { etag: string }).etag;
    // The swap lands but its reply is lost; the retry is refused by our own write; the read that
    // would recognise it is reset once. Before, that read's failure was taken for another writer.
    store.inject({ op: 'put', nth: 1, failAfter: 'transient' });
    store.inject({ op: 'get', nth: 1, fail: 'transient' });
    const swapped = await withRetry(() => putIfMatch(store, 'k', bytes('v2'), etag), { policy: fast });
    expect(swapped).toHaveProperty('etag');
    expect(Buffer.from((await store.get('k'))?.body ?? []).toString()).toBe('v2');
  });
});
