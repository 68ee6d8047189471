import { createHash, randomFillSync } from 'node:crypto';
import { type ListOptions, type ObjectStore, StoreError, type StoreErrorKind } from '@bucketpipe/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { byteOrder } from './memory-store.js';

export interface ConformanceOptions {
  /** Size of the large-object round trip (default 32 MiB + 12,345 bytes: not a multiple of anything). */
  largeObjectBytes?: number;
  /** Keys in the listing/deleting test; more than 1,000 forces a cloud store to page (default 1,005). */
  manyKeys?: number;
  /** Parallel writers in the race tests (default 8). */
  racers?: number;
  /** Timeout of each test in ms (default 60 s: network stores are slower). */
  timeoutMs?: number;
}

const text = (s: string) => new TextEncoder().encode(s);
const decode = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes).toString('utf8') : undefined);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Resolves to the StoreError a promise rejected with; fails the test when it fulfilled or threw something else. */
export async function expectStoreError(promise: Promise<unknown>, kind: StoreErrorKind): Promise<StoreError> {
  const outcome = await promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  if (outcome.ok) throw new Error(`expected a StoreError of kind '${kind}', but the call succeeded with ${JSON.stringify(outcome.value)}`);
  expect(outcome.error, 'rejects with a StoreError (of the same @bucketpipe/core the retry policy uses)').toBeInstanceOf(StoreError);
  expect((outcome.error as StoreError).kind).toBe(kind);
  return outcome.error as StoreError;
}

async function collect(store: ObjectStore, prefix: string, options?: ListOptions): Promise<Array<{ key: string; size: number }>> {
  const out: Array<{ key: string; size: number }> = [];
  for await (const item of store.list(prefix, options)) out.push({ key: item.key, size: item.size });
  return out;
}

async function keysOf(store: ObjectStore, prefix: string, options?: ListOptions): Promise<string[]> {
  return (await collect(store, prefix, options)).map((item) => item.key);
}

/** Runs `task` over `items` with at most `limit` at a time. */
async function eachLimit<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * The contract every ObjectStore implementation must keep, as one vitest suite; a store package
 * runs it from its own tests: `describeStoreConformance('FsStore', () => FsStore.open(dir()))`.
 * `makeStore` must return an empty store (a fresh directory or key prefix) for every test; the
 * suite closes it after the test.
 */
export function describeStoreConformance(
  name: string,
  makeStore: () => ObjectStore | Promise<ObjectStore>,
  options: ConformanceOptions = {},
): void {
  const largeObjectBytes = options.largeObjectBytes ?? 32 * 1024 * 1024 + 12_345;
  const manyKeys = options.manyKeys ?? 1_005;
  const racers = options.racers ?? 8;
  const timeout = options.timeoutMs ?? 60_000;

  describe(`${name}: ObjectStore conformance`, () => {
    let store: ObjectStore;
    beforeEach(async () => {
      store = await makeStore();
      expect(await collect(store, ''), 'makeStore must return an empty store').toEqual([]);
    });
    afterEach(async () => {
      await store?.close();
    });

    describe('objects', () => {
      it('put then get returns the same bytes, and put, get and head agree on the etag', { timeout }, async () => {
        const body = text('hello, bucket');
        const { etag } = await store.put('a/b.json', body);
        expect(typeof etag).toBe('string');
        expect(etag.length).toBeGreaterThan(0);
        const got = await store.get('a/b.json');
        expect(decode(got?.body)).toBe('hello, bucket');
        expect(got?.etag).toBe(etag);
        expect(await store.head('a/b.json')).toEqual({ size: body.length, etag });
      });

      it('stores empty objects', { timeout }, async () => {
        const { etag } = await store.put('empty', new Uint8Array(0));
        const got = await store.get('empty');
        expect(got).not.toBeNull();
        expect(got?.body.length).toBe(0);
        expect(got?.etag).toBe(etag);
        expect(await store.head('empty')).toEqual({ size: 0, etag });
        expect(await collect(store, '')).toEqual([{ key: 'empty', size: 0 }]);
      });

      it('get reads the half-open byte range [start, end), clamped at the end of the object', { timeout }, async () => {
        const { etag } = await store.put('r', text('0123456789'));
        const middle = await store.get('r', { range: { start: 2, end: 5 } });
        expect(decode(middle?.body)).toBe('234');
        expect(middle?.etag).toBe(etag);
        expect(decode((await store.get('r', { range: { start: 0, end: 1 } }))?.body)).toBe('0');
        expect(decode((await store.get('r', { range: { start: 7, end: 10 } }))?.body)).toBe('789');
        expect(decode((await store.get('r', { range: { start: 7, end: 1000 } }))?.body)).toBe('789');
      });

      it('get with a buffer to read into gives the same bytes, as a view of it from offset 0 if it used it', { timeout }, async () => {
        await store.put('into', text('0123456789'));
        const roomy = new Uint8Array(64).fill(0x2a);
        const whole = await store.get('into', { into: roomy });
        expect(decode(whole?.body)).toBe('0123456789');
        if (whole?.body.buffer === roomy.buffer) expect(whole.body.byteOffset).toBe(0);
        const ranged = await store.get('into', { into: roomy, range: { start: 3, end: 6 } });
        expect(decode(ranged?.body)).toBe('345');
        // Too small to hold the object: never a truncated body.
        const small = new Uint8Array(4);
        const fallback = await store.get('into', { into: small });
        expect(decode(fallback?.body)).toBe('0123456789');
        expect(fallback?.body.buffer).not.toBe(small.buffer);
        expect(await store.get('absent-into', { into: roomy })).toBeNull();
      });

      it('get and head of an absent key return null, also where the key is only a prefix of other keys', { timeout }, async () => {
        expect(await store.get('nothing')).toBeNull();
        expect(await store.head('nothing')).toBeNull();
        expect(await store.get('nothing', { range: { start: 0, end: 4 } })).toBeNull();
        await store.put('dir/x', text('x'));
        expect(await store.get('dir')).toBeNull();
        expect(await store.head('dir')).toBeNull();
        expect(await store.get('dir/x/y')).toBeNull();
        expect(await store.head('dir/x/y')).toBeNull();
      });

      it('put without a condition replaces the object and gives it a new etag', { timeout }, async () => {
        const first = await store.put('k', text('first'));
        const second = await store.put('k', text('other'));
        expect(second.etag).not.toBe(first.etag);
        const got = await store.get('k');
        expect(decode(got?.body)).toBe('other');
        expect(got?.etag).toBe(second.etag);
      });

      it('etags of successive versions of the same size all differ (no ABA between versions)', { timeout }, async () => {
        const etags = new Set<string>();
        for (let i = 0; i < 20; i++) etags.add((await store.put('same-size', text(`version ${String(i).padStart(2, '0')}`))).etag);
        expect(etags.size).toBe(20);
      });

      it('does not alias the caller’s buffers, in either direction', { timeout }, async () => {
        const body = text('original');
        await store.put('alias', body);
        body.fill(0x58);
        const first = await store.get('alias');
        expect(decode(first?.body)).toBe('original');
        first?.body.fill(0x59);
        expect(decode((await store.get('alias'))?.body)).toBe('original');
      });

      it('round-trips a large object byte for byte, and reads ranges deep inside it', { timeout: Math.max(timeout, 120_000) }, async () => {
        const body = new Uint8Array(largeObjectBytes);
        randomFillSync(body);
        const { etag } = await store.put('large/object', body);
        expect(await store.head('large/object')).toEqual({ size: largeObjectBytes, etag });
        const got = await store.get('large/object');
        expect(got?.body.length).toBe(largeObjectBytes);
        // Compare with Buffer.equals: a deep equality of 32 MiB would take minutes.
        expect(got && Buffer.from(got.body).equals(body), 'identical bytes').toBe(true);
        expect(got && sha256(got.body)).toBe(sha256(body));
        const start = Math.floor(largeObjectBytes / 2) + 3;
        const end = largeObjectBytes - 1;
        const range = await store.get('large/object', { range: { start, end } });
        expect(range && Buffer.from(range.body).equals(body.subarray(start, end)), 'identical range').toBe(true);
      });
    });

    describe('list', () => {
      it('lists keys with their sizes in ascending byte order', { timeout }, async () => {
        const keys = [
          'chunks/000000000010',
          'receivers/a.json',
          'chunks/000000000002',
          'manifest.json',
          'x/a0',
          'x/a/b',
          'x/a.b',
          'x/a-b',
          'x/_',
          'x/B',
          'chunks/000000000001',
          'receivers/b-c.json',
        ];
        for (const [i, key] of keys.entries()) await store.put(key, new Uint8Array(i));
        const expected = [...keys].sort(byteOrder).map((key) => ({ key, size: keys.indexOf(key) }));
        // Spelled out, so that a wrong comparator here cannot hide a wrong order in the store.
        expect(expected.map((e) => e.key)).toEqual([
          'chunks/000000000001',
          'chunks/000000000002',
          'chunks/000000000010',
          'manifest.json',
          'receivers/a.json',
          'receivers/b-c.json',
          'x/B',
          'x/_',
          'x/a-b',
          'x/a.b',
          'x/a/b',
          'x/a0',
        ]);
        expect(await collect(store, '')).toEqual(expected);
      });

      it('filters by prefix, including prefixes that end inside a key segment', { timeout }, async () => {
        const keys = [
          'chunks/000000000001',
          'chunks/000000000002',
          'chunks/000000000010',
          'chunks/000000000011',
          'chunks/000000000100',
          'chunksmith',
          'manifest.json',
          'receivers/a.json',
        ];
        for (const key of keys) await store.put(key, text(key));
        expect(await keysOf(store, 'chunks/')).toEqual(keys.slice(0, 5));
        expect(await keysOf(store, 'chunks/00000000001')).toEqual(['chunks/000000000010', 'chunks/000000000011']);
        expect(await keysOf(store, 'chunks/000000000001')).toEqual(['chunks/000000000001']);
        expect(await keysOf(store, 'chunk')).toEqual(keys.slice(0, 6));
        expect(await keysOf(store, 'manifest')).toEqual(['manifest.json']);
        expect(await keysOf(store, 'receivers/')).toEqual(['receivers/a.json']);
        expect(await keysOf(store, 'receivers/a.json')).toEqual(['receivers/a.json']);
        expect(await keysOf(store, '')).toEqual(keys);
      });

      it('lists only the keys after startAfter (exclusive; it need not exist), skipping whole directories', { timeout }, async () => {
        const keys = [
          'a/chunks/000000000000',
          'a/chunks/000000000001',
          'a/chunks/zz',
          'a/manifest.json',
          'a/receivers/r.json',
          'ab',
          'b/chunks/000000000000',
          'b/manifest.json',
        ];
        for (const [i, key] of keys.entries()) await store.put(key, new Uint8Array(i));
        const keysAfter = (startAfter: string, prefix = '') => keysOf(store, prefix, { startAfter });
        expect(await keysAfter('a/chunks/000000000000')).toEqual(keys.slice(1));
        expect(await keysAfter('a/chunks/999999999999')).toEqual(keys.slice(2));
        expect(await keysAfter('a/chunks0')).toEqual(keys.slice(3));
        expect(await keysAfter('a/')).toEqual(keys);
        expect(await keysAfter('a/zzz')).toEqual(keys.slice(5));
        expect(await keysAfter('')).toEqual(keys);
        expect(await keysAfter('b/manifest.json')).toEqual([]);
        expect(await collect(store, 'a/', { startAfter: 'a/manifest.json' })).toEqual([{ key: 'a/receivers/r.json', size: 4 }]);
        expect(await keysAfter('a/chunks/000000000001', 'b/')).toEqual(['b/chunks/000000000000', 'b/manifest.json']);
        expect(await keysAfter('b/chunks/000000000000', 'a/')).toEqual([]);
      });

      it('lists nothing for a prefix nothing starts with', { timeout }, async () => {
        await store.put('chunks/000000000000', text('x'));
        expect(await keysOf(store, 'nothing/')).toEqual([]);
        expect(await keysOf(store, 'chunks/1')).toEqual([]);
        expect(await keysOf(store, 'chunks/000000000000/')).toEqual([]);
      });

      it(`lists and deletes more than 1,000 keys (${manyKeys}: a cloud store must page)`, {
        timeout: Math.max(timeout, 120_000),
      }, async () => {
        const keys = Array.from({ length: manyKeys }, (_, i) => `many/${String(i).padStart(12, '0')}`);
        await store.put('other', text('not listed under many/'));
        await eachLimit([...keys].reverse(), 32, async (key) => {
          await store.put(key, text(key.slice(-4)));
        });
        const listed = await collect(store, 'many/');
        expect(listed.length).toBe(manyKeys);
        expect(listed.map((item) => item.key)).toEqual(keys);
        expect(listed.every((item) => item.size === 4)).toBe(true);
        // A prefix that selects keys from the second page only.
        expect(await keysOf(store, `many/${String(1000).padStart(12, '0').slice(0, 11)}`)).toEqual(keys.slice(1000, 1010));
        // startAfter on the first page, then paging from there.
        expect(await keysOf(store, 'many/', { startAfter: keys[2] })).toEqual(keys.slice(3));
        // Stopping early must not fail or hang.
        let seen = 0;
        for await (const _ of store.list('many/')) if (++seen === 3) break;
        expect(seen).toBe(3);
        await store.delete(keys);
        expect(await keysOf(store, '')).toEqual(['other']);
      });
    });

    describe('delete', () => {
      it('deletes keys, and absent keys are not an error', { timeout }, async () => {
        await store.put('d/1', text('1'));
        await store.put('d/2', text('2'));
        await store.put('d/3', text('3'));
        await store.delete(['d/1', 'd/3', 'd/absent']);
        expect(await store.get('d/1')).toBeNull();
        expect(await store.head('d/3')).toBeNull();
        expect(await keysOf(store, '')).toEqual(['d/2']);
        await store.delete(['d/1']);
        await store.delete([]);
        expect(await keysOf(store, '')).toEqual(['d/2']);
      });
    });

    describe('conditional writes', () => {
      it('create-only put (ifNoneMatch) creates an absent key and is refused with kind precondition when it exists', {
        timeout,
      }, async () => {
        const { etag } = await store.put('manifest.json', text('mine'), { ifNoneMatch: true });
        await expectStoreError(store.put('manifest.json', text('theirs'), { ifNoneMatch: true }), 'precondition');
        const got = await store.get('manifest.json');
        expect(decode(got?.body)).toBe('mine');
        expect(got?.etag).toBe(etag);
      });

      it('create-only put succeeds again once the key was deleted', { timeout }, async () => {
        await store.put('once', text('1'), { ifNoneMatch: true });
        await store.delete(['once']);
        await store.put('once', text('2'), { ifNoneMatch: true });
        expect(decode((await store.get('once'))?.body)).toBe('2');
      });

      it('compare-and-swap put (ifMatch) replaces the object when the etag is current', { timeout }, async () => {
        const v1 = await store.put('cas', text('v1'));
        const v2 = await store.put('cas', text('v2'), { ifMatch: v1.etag });
        expect(v2.etag).not.toBe(v1.etag);
        const got = await store.get('cas');
        expect(decode(got?.body)).toBe('v2');
        expect(got?.etag).toBe(v2.etag);
        const v3 = await store.put('cas', text('v3'), { ifMatch: (await store.head('cas'))?.etag ?? 'none' });
        expect((await store.get('cas'))?.etag).toBe(v3.etag);
      });

      it('compare-and-swap is refused with a stale etag, including one from two versions back', { timeout }, async () => {
        const v1 = await store.put('cas', text('v1'));
        const v2 = await store.put('cas', text('v2'), { ifMatch: v1.etag });
        await expectStoreError(store.put('cas', text('late'), { ifMatch: v1.etag }), 'precondition');
        const v3 = await store.put('cas', text('v3'), { ifMatch: v2.etag });
        await expectStoreError(store.put('cas', text('late'), { ifMatch: v1.etag }), 'precondition');
        await expectStoreError(store.put('cas', text('late'), { ifMatch: v2.etag }), 'precondition');
        await expectStoreError(store.put('cas', text('late'), { ifMatch: 'not-an-etag' }), 'precondition');
        const got = await store.get('cas');
        expect(decode(got?.body)).toBe('v3');
        expect(got?.etag).toBe(v3.etag);
      });

      it('compare-and-swap is refused when the key is absent, also with the etag it had before a delete', { timeout }, async () => {
        await expectStoreError(store.put('never', text('x'), { ifMatch: '"0"' }), 'precondition');
        expect(await store.head('never')).toBeNull();
        const { etag } = await store.put('gone', text('x'));
        await store.delete(['gone']);
        await expectStoreError(store.put('gone', text('y'), { ifMatch: etag }), 'precondition');
        expect(await store.head('gone')).toBeNull();
      });

      it(`of ${racers} parallel create-only puts of the same key exactly one wins`, { timeout }, async () => {
        for (let round = 0; round < 3; round++) {
          const key = `race/create-${round}`;
          const results = await Promise.allSettled(
            Array.from({ length: racers }, (_, i) => store.put(key, text(`racer ${i}`), { ifNoneMatch: true })),
          );
          const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, etag: r.value.etag }] : []));
          expect(winners.length, 'winners').toBe(1);
          for (const r of results) {
            if (r.status === 'rejected') await expectStoreError(Promise.reject(r.reason), 'precondition');
          }
          const got = await store.get(key);
          expect(decode(got?.body)).toBe(`racer ${winners[0]?.i}`);
          expect(got?.etag).toBe(winners[0]?.etag);
        }
      });

      it(`of ${racers} parallel compare-and-swap puts from the same etag exactly one wins`, { timeout }, async () => {
        let { etag } = await store.put('race/cas', text('start'));
        for (let round = 0; round < 3; round++) {
          const from = etag;
          const results = await Promise.allSettled(
            Array.from({ length: racers }, (_, i) => store.put('race/cas', text(`round ${round} racer ${i}`), { ifMatch: from })),
          );
          const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, etag: r.value.etag }] : []));
          expect(winners.length, 'winners').toBe(1);
          for (const r of results) {
            if (r.status === 'rejected') await expectStoreError(Promise.reject(r.reason), 'precondition');
          }
          const got = await store.get('race/cas');
          expect(decode(got?.body)).toBe(`round ${round} racer ${winners[0]?.i}`);
          expect(got?.etag).toBe(winners[0]?.etag);
          etag = winners[0]?.etag ?? '';
        }
      });
    });

    describe('keys', () => {
      const invalid = [
        '../x',
        'a/../b',
        '/abs',
        '',
        'a//b',
        '.hidden',
        'a/.tmp-x',
        'a/./b',
        'trailing/',
        'back\\slash',
        'sp ace',
        'x'.repeat(1025),
      ];

      it.each(invalid.map((key) => [JSON.stringify(key.length > 40 ? `${key.slice(0, 10)}…(${key.length})` : key), key]))(
        'refuses the invalid key %s with kind fatal',
        { timeout },
        async (_, key) => {
          await expectStoreError(store.put(key, text('x')), 'fatal');
          await expectStoreError(store.put(key, text('x'), { ifNoneMatch: true }), 'fatal');
          await expectStoreError(store.get(key), 'fatal');
          await expectStoreError(store.head(key), 'fatal');
          await expectStoreError(store.delete([key]), 'fatal');
          expect(await collect(store, '')).toEqual([]);
        },
      );

      it('accepts the key characters the protocol uses', { timeout }, async () => {
        const keys = ['manifest.json', 'chunks/000000000000', 'receivers/host-1_a.json', 'A/b.c-d_e', 'x.y'];
        for (const key of keys) await store.put(key, text(key));
        for (const key of keys) expect(decode((await store.get(key))?.body)).toBe(key);
      });
    });
  });
}
