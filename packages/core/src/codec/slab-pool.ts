interface Waiter {
  resolve: (slab: Uint8Array) => void;
  reject: (error: unknown) => void;
  /** Detaches the abort listener once the waiter is settled. */
  cleanup: () => void;
}

/**
 * A fixed number of equal-size buffers, allocated on first use and reused: the sender's and
 * receiver's memory is bounded by `maxSlabs * slabSize` by construction, independent of when the
 * garbage collector runs. `acquire` waits (FIFO) while every slab is in use: that is backpressure.
 */
export class SlabPool {
  readonly slabSize: number;
  readonly maxSlabs: number;
  #free: Uint8Array[] = [];
  #allocated = 0;
  #waiters: Waiter[] = [];

  constructor(slabSize: number, maxSlabs: number) {
    if (!Number.isSafeInteger(slabSize) || slabSize <= 0) throw new TypeError(`slabSize must be a positive integer, got ${slabSize}`);
    if (!Number.isSafeInteger(maxSlabs) || maxSlabs <= 0) throw new TypeError(`maxSlabs must be a positive integer, got ${maxSlabs}`);
    this.slabSize = slabSize;
    this.maxSlabs = maxSlabs;
  }

  get inUse(): number {
    return this.#allocated - this.#free.length;
  }

  get available(): number {
    return this.maxSlabs - this.inUse;
  }

  /** A slab now, or undefined when all are in use or others are already waiting (FIFO). */
  tryAcquire(): Uint8Array | undefined {
    return this.#waiters.length > 0 ? undefined : this.#take();
  }

  acquire(signal?: AbortSignal): Promise<Uint8Array> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const slab = this.tryAcquire();
    if (slab) return Promise.resolve(slab);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Returns a slab (any view whose buffer is a slab of this pool). */
  release(slab: Uint8Array): void {
    if (slab.buffer.byteLength !== this.slabSize) throw new TypeError('released buffer is not a slab of this pool');
    const whole = slab.byteOffset === 0 && slab.length === this.slabSize ? slab : new Uint8Array(slab.buffer, 0, this.slabSize);
    if (this.inUse <= 0 || this.#free.some((free) => free.buffer === whole.buffer)) {
      throw new Error('slab released twice');
    }
    this.#free.push(whole);
    this.#wakeWaiter();
  }

  #take(): Uint8Array | undefined {
    const slab = this.#free.pop();
    if (slab) return slab;
    if (this.#allocated >= this.maxSlabs) return undefined;
    this.#allocated++;
    // Shared with the codec workers, never transferred: V8 counts a SharedArrayBuffer in no
    // isolate's external memory, while every transferred ArrayBuffer is counted again where it
    // arrives. Hundreds of MiB of counted buffers made each few MiB of socket reads set off a
    // full collection (docs/PERFORMANCE.md, "Shared slabs").
    return new Uint8Array(new SharedArrayBuffer(this.slabSize));
  }

  #wakeWaiter(): void {
    if (this.#waiters.length === 0) return;
    const slab = this.#take();
    if (!slab) return;
    const waiter = this.#waiters.shift() as Waiter;
    waiter.cleanup();
    waiter.resolve(slab);
  }
}
