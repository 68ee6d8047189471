import { MemoryStore } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { CountingStore } from './counting-store.js';

vi.mock('@bucketpipe/core', () => import('../index.js'));

describe('CountingStore', () => {
  it('counts each call by operation and passes everything through', async () => {
    const inner = new MemoryStore('memory://counted');
    const store = new CountingStore(inner);
    expect(store.description).toBe('memory://counted');
    const { etag } = await store.put('a', new Uint8Array([1, 2, 3]));
    await store.put('b', new Uint8Array([4]), { ifNoneMatch: true });
    expect((await store.get('a'))?.etag).toBe(etag);
    expect(await store.get('missing')).toBeNull();
    expect((await store.head('b'))?.size).toBe(1);
    const keys: string[] = [];
    for await (const item of store.list('')) keys.push(item.key);
    await store.delete(['a', 'b']);
    expect(keys).toEqual(['a', 'b']);
    expect(inner.has('a')).toBe(false);
    expect(store.counts).toEqual({ put: 2, get: 2, head: 1, list: 1, delete: 1 });
  });

  it('hands out snapshots, not its live counters', async () => {
    const store = new CountingStore(new MemoryStore());
    const before = store.counts;
    await store.put('x', new Uint8Array(1));
    expect(before.put).toBe(0);
    expect(store.counts.put).toBe(1);
  });
});
