interface Waiter {
  resolve: (slab: Uint8Array) => void;
  reject: (error: unknown) => void;
  /** Detaches the abort listener once the waiter is settled. */
  cleanup: () => void;
}

/** A WebAssembly page: shared memories grow by whole pages, and every page starts page-aligned. */
const WASM_PAGE = 65_536;
/** A 32-bit WebAssembly memory's largest size, 4 GiB. */
const MAX_MEMORY_PAGES = 65_536;

/** The part of WebAssembly's JavaScript API used here (TypeScript declares it only in its DOM library). */
interface SharedMemory {
  readonly buffer: SharedArrayBuffer;
  grow(pages: number): number;
}
const { Memory } = (
  globalThis as unknown as { WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => SharedMemory } }
).WebAssembly;

/** Consecutive slabs in one shared memory. */
interface Arena {
  memory: SharedMemory;
  /** Index in the pool of this arena's first slab. */
  first: number;
  /** Slabs this arena holds now. */
  slabs: number;
  /** Slabs it can hold: its maximum size. */
  capacity: number;
}

/**
 * A fixed number of equal-size buffers, allocated on first use and reused: the sender's and
 * receiver's memory is bounded by `maxSlabs * slabSize` by construction, independent of when the
 * garbage collector runs. `acquire` waits (FIFO) while every slab is in use: that is backpressure.
 *
 * Slabs are views of shared WebAssembly memories, one per 4 GiB of slabs, so every slab begins on a
 * 64 KiB boundary: a file store can write and read them with O_DIRECT, which needs page-aligned
 * memory that no other JavaScript buffer guarantees. They are shared with the codec workers, never
 * transferred: V8 counts a SharedArrayBuffer in no isolate's external memory, while every
 * transferred ArrayBuffer is counted again where it arrives; hundreds of MiB of counted buffers
 * made each few MiB of socket reads set off a full collection (docs/PERFORMANCE.md, "Shared slabs").
 */
export class SlabPool {
  readonly slabSize: number;
  readonly maxSlabs: number;
  /** Distance between slabs in an arena: slabSize rounded up to whole WebAssembly pages. */
  readonly #stride: number;
  /** Every slab allocated so far, by index: the whole view, as handed out. */
  #slabs: Uint8Array[] = [];
  /** Indexes of free slabs, the most recently released last (reused first: its pages are warm). */
  #free: number[] = [];
  #isFree: boolean[] = [];
  #arenas: Arena[] = [];
  /** Every SharedArrayBuffer object a slab was cut from (each growth of an arena makes a new one). */
  #buffers = new Map<SharedArrayBuffer, Arena>();
  #waiters: Waiter[] = [];

  constructor(slabSize: number, maxSlabs: number) {
    if (!Number.isSafeInteger(slabSize) || slabSize <= 0) throw new TypeError(`slabSize must be a positive integer, got ${slabSize}`);
    if (!Number.isSafeInteger(maxSlabs) || maxSlabs <= 0) throw new TypeError(`maxSlabs must be a positive integer, got ${maxSlabs}`);
    this.#stride = Math.ceil(slabSize / WASM_PAGE) * WASM_PAGE;
    if (this.#stride > MAX_MEMORY_PAGES * WASM_PAGE) throw new TypeError(`slabSize must be at most 4 GiB, got ${slabSize}`);
    this.slabSize = slabSize;
    this.maxSlabs = maxSlabs;
  }

  get inUse(): number {
    return this.#slabs.length - this.#free.length;
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

  /** Returns a slab (any view that lies within one slab of this pool). */
  release(view: Uint8Array): void {
    const index = this.#indexOf(view);
    if (index === undefined) throw new TypeError('released buffer is not a slab of this pool');
    if (this.#isFree[index]) throw new Error('slab released twice');
    this.#isFree[index] = true;
    this.#free.push(index);
    this.#wakeWaiter();
  }

  #indexOf(view: Uint8Array): number | undefined {
    const arena = view.buffer instanceof SharedArrayBuffer ? this.#buffers.get(view.buffer) : undefined;
    if (!arena) return undefined;
    const slot = Math.floor(view.byteOffset / this.#stride);
    const end = slot * this.#stride + this.slabSize;
    if (slot >= arena.slabs || view.byteOffset + view.length > end) return undefined;
    return arena.first + slot;
  }

  #take(): Uint8Array | undefined {
    const index = this.#free.pop();
    if (index !== undefined) {
      this.#isFree[index] = false;
      return this.#slabs[index];
    }
    if (this.#slabs.length >= this.maxSlabs) return undefined;
    const slab = this.#allocate();
    this.#slabs.push(slab);
    this.#isFree.push(false);
    return slab;
  }

  #allocate(): Uint8Array {
    let arena = this.#arenas.at(-1);
    if (!arena || arena.slabs === arena.capacity) {
      const capacity = Math.min(this.maxSlabs - this.#slabs.length, Math.floor((MAX_MEMORY_PAGES * WASM_PAGE) / this.#stride));
      const maximum = (capacity * this.#stride) / WASM_PAGE;
      arena = { memory: new Memory({ initial: 0, maximum, shared: true }), first: this.#slabs.length, slabs: 0, capacity };
      this.#arenas.push(arena);
    }
    // Grown a slab at a time, so that memory is committed as slabs are first needed.
    arena.memory.grow(this.#stride / WASM_PAGE);
    const buffer = arena.memory.buffer;
    this.#buffers.set(buffer, arena);
    const slab = new Uint8Array(buffer, arena.slabs * this.#stride, this.slabSize);
    arena.slabs++;
    return slab;
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
