import { StoreError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { describeStoreConformance, expectStoreError } from './conformance.js';
import { FaultyStore, flipByte, truncate } from './faulty-store.js';
import { MemoryStore } from './memory-store.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);

// With no rules the wrapper must be invisible.
describeStoreConformance('FaultyStore without faults', () => new FaultyStore(new MemoryStore()), { largeObjectBytes: 4 * 1024 * 1024 });

describe('FaultyStore', () => {
  it('fails exactly the nth matching request, with a StoreError of the given kind, without passing it on', async () => {
    const inner = new MemoryStore();
    const store = new FaultyStore(inner);
    const fault = store.inject({ op: 'put', key: /^chunks\//, nth: 2, fail: 'transient' });
    await store.put('manifest.json', bytes('m'));
    await store.put('chunks/000000000000', bytes('0'));
    const error = await expectStoreError(store.put('chunks/000000000001', bytes('1')), 'transient');
    expect(error.key).toBe('chunks/000000000001');
    expect(error.retryable).toBe(true);
    expect(inner.has('chunks/000000000001')).toBe(false);
    await store.put('chunks/000000000001', bytes('1'));
    expect(fault.matched).toBe(3);
    expect(fault.hits).toBe(1);
  });

  it('fails `times` requests from nth on; without nth or times, every matching one', async () => {
    const store = new FaultyStore(new MemoryStore());
    store.inject({ op: 'put', key: 'k', nth: 2, times: 2, fail: 'throttled' });
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      outcomes.push(
        await store.put('k', bytes(`${i}`)).then(
          () => 'ok',
          (e: StoreError) => e.kind,
        ),
      );
    }
    expect(outcomes).toEqual(['ok', 'throttled', 'throttled', 'ok', 'ok']);
    const always = store.inject({ op: ['get', 'head'], fail: 'auth' });
    await expectStoreError(store.get('k'), 'auth');
    await expectStoreError(store.head('k'), 'auth');
    await expectStoreError(store.get('other'), 'auth');
    always.remove();
    expect(text((await store.get('k'))?.body)).toBe('4');
  });

  it('failAfter performs the write and then fails (a lost response)', async () => {
    const inner = new MemoryStore();
    const store = new FaultyStore(inner);
    store.inject({ op: 'put', key: 'k', failAfter: 'transient' });
    await expectStoreError(store.put('k', bytes('landed')), 'transient');
    expect(text(inner.peek('k'))).toBe('landed');
  });

  it('throws a given error object as is', async () => {
    const store = new FaultyStore(new MemoryStore());
    const boom = new Error('boom');
    store.inject({ op: 'delete', fail: boom });
    await expect(store.delete(['a'])).rejects.toBe(boom);
  });

  it('answers absent, corrupts or truncates what a get returns', async () => {
    const inner = new MemoryStore();
    const store = new FaultyStore(inner);
    await inner.put('a', bytes('abcdef'));
    store.inject({ op: ['get', 'head'], key: 'a', nth: 1, times: 2, absent: true });
    expect(await store.get('a')).toBeNull();
    expect(await store.head('a')).toBeNull();
    expect(text((await store.get('a'))?.body)).toBe('abcdef');
    store.heal();
    store.inject({ op: 'get', key: 'a', nth: 1, corrupt: flipByte(0) });
    store.inject({ op: 'get', key: 'a', nth: 2, corrupt: truncate(-2) });
    expect(text((await store.get('a'))?.body)).toBe('`bcdef');
    expect(text((await store.get('a'))?.body)).toBe('abcd');
    expect(text((await store.get('a'))?.body)).toBe('abcdef');
    expect(text(inner.peek('a'))).toBe('abcdef');
  });

  it('runs `before` hooks and delays before the request goes on', async () => {
    const store = new FaultyStore(new MemoryStore());
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const seen: string[] = [];
    store.inject({
      op: 'put',
      before: async (request) => {
        seen.push(`${request.op} ${request.key}`);
        await gate;
      },
    });
    let done = false;
    const put = store.put('k', bytes('x')).then(() => {
      done = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(seen).toEqual(['put k']);
    expect(done).toBe(false);
    open();
    await put;
    expect(done).toBe(true);
    store.heal();
    store.inject({ op: 'head', delayMs: 30 });
    const started = performance.now();
    await store.head('k');
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
  });

  it('fails a listing before it yields anything', async () => {
    const store = new FaultyStore(new MemoryStore());
    await store.put('a', bytes('a'));
    store.inject({ op: 'list', key: '', fail: 'transient' });
    const listing = async () => {
      for await (const _ of store.list('')) throw new Error('yielded');
    };
    await expectStoreError(listing(), 'transient');
  });

  it('counts requests per operation and per key pattern, faulted ones included', async () => {
    const store = new FaultyStore(new MemoryStore());
    store.inject({ op: 'get', key: 'manifest.json', nth: 1, fail: 'transient' });
    await store.put('manifest.json', bytes('m'));
    await store.put('chunks/000000000000', bytes('0'));
    await store.get('manifest.json').catch(() => {});
    await store.get('manifest.json');
    await store.get('chunks/000000000000');
    await store.head('chunks/000000000000');
    for await (const _ of store.list('chunks/')) {
      // drain
    }
    await store.delete(['a', 'b']);
    expect(store.counts).toEqual({ put: 2, get: 3, head: 1, list: 1, delete: 2 });
    expect(store.count('get', 'manifest.json')).toBe(2);
    expect(store.count('get', /^chunks\//)).toBe(1);
    expect(store.requests.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    store.resetCounts();
    expect(store.counts).toEqual({ put: 0, get: 0, head: 0, list: 0, delete: 0 });
  });

  it('matches RegExp keys statelessly even with the g flag', async () => {
    const store = new FaultyStore(new MemoryStore());
    store.inject({ op: 'put', key: /^c/g, fail: 'fatal' });
    await expectStoreError(store.put('c1', bytes('1')), 'fatal');
    await expectStoreError(store.put('c2', bytes('2')), 'fatal');
    expect(store.count('put', /^c/g)).toBe(2);
    expect(store.count('put', /^c/g)).toBe(2);
  });

  it('validates rules up front', () => {
    const store = new FaultyStore(new MemoryStore());
    expect(() => store.inject({ nth: 0, fail: 'fatal' })).toThrow(TypeError);
    expect(() => store.inject({ times: -1, fail: 'fatal' })).toThrow(TypeError);
  });

  it('is a StoreError the core retry policy recognises', async () => {
    const store = new FaultyStore(new MemoryStore());
    store.inject({ fail: 'throttled' });
    const error = await store.get('x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
  });
});
