import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SlabPool } from './slab-pool.js';

/** Lets pending promise callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(promise: Promise<T>): { settled: () => boolean; value: () => T | undefined; error: () => unknown } {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  promise.then(
    (v) => {
      done = true;
      value = v;
    },
    (e: unknown) => {
      done = true;
      error = e;
    },
  );
  return { settled: () => done, value: () => value, error: () => error };
}

describe('SlabPool', () => {
  it('validates its options', () => {
    for (const [size, count] of [
      [0, 1],
      [-1, 1],
      [1.5, 1],
      [1, 0],
      [1, 2.5],
      [Number.NaN, 1],
    ]) {
      expect(() => new SlabPool(size as number, count as number)).toThrow(TypeError);
    }
  });

  it('hands out at most maxSlabs slabs of slabSize, each starting on its own 64 KiB page of shared memory', () => {
    const pool = new SlabPool(1000, 2);
    const a = pool.tryAcquire();
    const b = pool.tryAcquire();
    expect(pool.tryAcquire()).toBeUndefined();
    expect(pool.inUse).toBe(2);
    expect(pool.available).toBe(0);
    for (const slab of [a, b]) {
      expect(slab?.length).toBe(1000);
      expect((slab?.byteOffset ?? 1) % 65_536).toBe(0);
      expect(slab?.buffer).toBeInstanceOf(SharedArrayBuffer);
    }
    expect(a?.byteOffset).not.toBe(b?.byteOffset);
    a?.fill(1);
    expect(b?.every((byte) => byte === 0)).toBe(true); // disjoint
  });

  it('takes back each slab by any view of it, including views held from before the memory grew', () => {
    const pool = new SlabPool(70_000, 3); // two WebAssembly pages apart
    const a = pool.tryAcquire();
    const b = pool.tryAcquire();
    const c = pool.tryAcquire();
    if (!a || !b || !c) throw new Error('no slab');
    pool.release(b.subarray(100, 200));
    pool.release(a.subarray(69_999));
    expect(pool.inUse).toBe(1);
    expect(pool.tryAcquire()).toBe(a); // the most recently released first
    expect(pool.tryAcquire()).toBe(b);
    expect(() => pool.release(b.subarray(0, 1))).not.toThrow();
    expect(() => pool.release(b)).toThrow('slab released twice');
  });

  it('refuses a view into the padding between two slabs', () => {
    const pool = new SlabPool(70_000, 2);
    const a = pool.tryAcquire();
    if (!a) throw new Error('no slab');
    pool.tryAcquire();
    expect(() => pool.release(new Uint8Array(a.buffer, 70_000, 10))).toThrow('released buffer is not a slab of this pool');
    expect(() => pool.release(new Uint8Array(a.buffer, 69_990, 20))).toThrow('released buffer is not a slab of this pool');
    expect(pool.inUse).toBe(2);
  });

  it('reuses released slabs instead of allocating', () => {
    const pool = new SlabPool(64, 1);
    const a = pool.tryAcquire();
    if (!a) throw new Error('no slab');
    pool.release(a);
    expect(pool.inUse).toBe(0);
    expect(pool.available).toBe(1);
    expect(pool.tryAcquire()).toBe(a);
  });

  it('takes back a view into a slab and returns the whole slab', () => {
    const pool = new SlabPool(64, 1);
    const a = pool.tryAcquire();
    if (!a) throw new Error('no slab');
    pool.release(a.subarray(10, 20));
    const again = pool.tryAcquire();
    expect(again?.buffer).toBe(a.buffer);
    expect(again?.byteOffset).toBe(0);
    expect(again?.length).toBe(64);
  });

  it('makes acquire wait while all slabs are in use and serves waiters first come, first served', async () => {
    const pool = new SlabPool(16, 1);
    const first = await pool.acquire();
    const second = track(pool.acquire());
    const third = track(pool.acquire());
    await settle();
    expect(second.settled()).toBe(false);
    expect(third.settled()).toBe(false);

    pool.release(first);
    await settle();
    expect(second.value()).toBe(first);
    expect(third.settled()).toBe(false);
    expect(pool.inUse).toBe(1);

    pool.release(first);
    await settle();
    expect(third.value()).toBe(first);
  });

  it('rejects a waiting acquire with the abort reason and drops it from the queue', async () => {
    const pool = new SlabPool(16, 1);
    const slab = await pool.acquire();
    const controller = new AbortController();
    const aborted = track(pool.acquire(controller.signal));
    const next = track(pool.acquire());
    const reason = new Error('stop');
    controller.abort(reason);
    await settle();
    expect(aborted.error()).toBe(reason);
    expect(next.settled()).toBe(false);
    pool.release(slab);
    await settle();
    expect(next.value()).toBe(slab); // the aborted waiter did not swallow it
  });

  it('refuses to start acquiring with an already aborted signal', async () => {
    const pool = new SlabPool(16, 1);
    const reason = new Error('already');
    // Whether acquire throws or rejects, the caller sees the reason and no slab is taken.
    await expect(Promise.resolve().then(() => pool.acquire(AbortSignal.abort(reason)))).rejects.toBe(reason);
    expect(pool.inUse).toBe(0);
  });

  it('does not leave an abort listener behind once a waiting acquire got its slab', async () => {
    // The sender passes one long-lived signal to every acquire of a transfer of millions of chunks.
    const pool = new SlabPool(16, 1);
    const controller = new AbortController();
    const slab = await pool.acquire(controller.signal);
    for (let i = 0; i < 20; i++) {
      const waiting = pool.acquire(controller.signal);
      pool.release(slab);
      await waiting;
    }
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects the release of a buffer that cannot be one of its slabs', () => {
    const pool = new SlabPool(64, 2);
    pool.tryAcquire();
    expect(() => pool.release(new Uint8Array(32))).toThrow(TypeError);
    expect(() => pool.release(new Uint8Array(128).subarray(0, 64))).toThrow('released buffer is not a slab of this pool');
    expect(() => pool.release(new Uint8Array(new SharedArrayBuffer(64)))).toThrow('released buffer is not a slab of this pool');
    const other = new SlabPool(64, 1).tryAcquire();
    if (!other) throw new Error('no slab');
    expect(() => pool.release(other)).toThrow('released buffer is not a slab of this pool');
    expect(pool.inUse).toBe(1);
  });
});
