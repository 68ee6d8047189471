import { describe, expect, it } from 'vitest';
import { describeStoreConformance } from './conformance.js';
import { MemoryStore } from './memory-store.js';

describeStoreConformance('MemoryStore', () => new MemoryStore());

describe('MemoryStore', () => {
  it('hands out bodies in buffers of their own (transferable to a worker)', async () => {
    const store = new MemoryStore();
    await store.put('k', new Uint8Array([1, 2, 3, 4, 5]));
    const range = await store.get('k', { range: { start: 1, end: 3 } });
    expect(range?.body.byteOffset).toBe(0);
    expect(range?.body.buffer.byteLength).toBe(2);
  });

  it('honours an aborted signal', async () => {
    const store = new MemoryStore();
    const reason = new Error('stop');
    await expect(store.put('k', new Uint8Array(1), { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(store.has('k')).toBe(false);
  });

  it('refuses work after close', async () => {
    const store = new MemoryStore();
    await store.close();
    await expect(store.get('k')).rejects.toMatchObject({ kind: 'fatal' });
  });

  it('introspects synchronously: keys, has, peek (a copy)', async () => {
    const store = new MemoryStore();
    await store.put('b', new Uint8Array([2]));
    await store.put('a/x', new Uint8Array([1]));
    expect(store.keys()).toEqual(['a/x', 'b']);
    expect(store.keys('a/')).toEqual(['a/x']);
    expect(store.has('b')).toBe(true);
    const peeked = store.peek('b');
    peeked?.fill(9);
    expect(store.peek('b')).toEqual(new Uint8Array([2]));
  });
});
