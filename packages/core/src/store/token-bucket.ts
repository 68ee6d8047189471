export interface TokenBucketOptions {
  /** The sustained rate, bytes per second. */
  bytesPerSecond: number;
  /** Credit an idle bucket may save up (default: 100 ms at the rate); a request larger than this still passes, alone. */
  burstBytes?: number;
  /** Monotonic milliseconds; injectable for tests. */
  now?: () => number;
}

interface Waiter {
  cost: number;
  resolve: () => void;
  reject: (reason: unknown) => void;
  detach: () => void;
}

// setTimeout clamps longer delays to 1 ms; a longer wait is re-armed when it fires.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Paces bytes to a rate. The bucket starts empty (a new transfer has earned no credit) and fills at
 * `bytesPerSecond`; `take` waits in one FIFO line until its bytes are covered, so every request
 * leaves at its fair time and none is overtaken. Credit is capped at `burstBytes` only while nobody
 * waits: a timer that fires late then costs nothing, the lateness carries over to the next request.
 * The level may go negative (debt) through `settle`: what a request cost beyond its reservation
 * delays the requests after it, so the average stays exact.
 */
export class TokenBucket {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  readonly #now: () => number;
  #tokens = 0;
  #updatedAt: number;
  readonly #line: Waiter[] = [];
  readonly #ahead: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(options: TokenBucketOptions) {
    const { bytesPerSecond } = options;
    if (!(Number.isFinite(bytesPerSecond) && bytesPerSecond > 0))
      throw new RangeError(`rate must be a positive number of bytes per second, got ${bytesPerSecond}`);
    this.bytesPerSecond = bytesPerSecond;
    this.burstBytes = Math.max(0, options.burstBytes ?? bytesPerSecond / 10);
    this.#now = options.now ?? (() => performance.now());
    this.#updatedAt = this.#now();
  }

  /** The current credit in bytes; negative is debt. */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Waits in line until `bytes` are covered, then spends them. Rejects with the signal's reason on abort. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    return this.#enqueue(this.#line, bytes, signal);
  }

  /**
   * Waits only until the bucket is out of debt — not behind the requests in line — then spends
   * `bytes`, into debt if need be. For small requests (a manifest, a heartbeat) that must not sit
   * behind a queue of large ones; their bytes still count, and the debt delays the line.
   */
  takeAhead(bytes: number, signal?: AbortSignal): Promise<void> {
    return this.#enqueue(this.#ahead, bytes, signal);
  }

  /** Charges `bytes` more (a request cost more than it took) or refunds them when negative. Never waits. */
  settle(bytes: number): void {
    if (bytes === 0) return;
    this.#refill();
    this.#tokens -= bytes;
    this.#admit();
  }

  #enqueue(list: Waiter[], cost: number, signal: AbortSignal | undefined): Promise<void> {
    if (!(Number.isFinite(cost) && cost >= 0)) return Promise.reject(new RangeError(`cannot take ${cost} bytes`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#refill();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#refill();
        list.splice(list.indexOf(waiter), 1);
        reject(signal?.reason);
        this.#admit();
      };
      const waiter: Waiter = { cost, resolve, reject, detach: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(waiter);
      this.#admit();
    });
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens += ((now - this.#updatedAt) * this.bytesPerSecond) / 1000;
    this.#updatedAt = now;
    if (this.#line.length === 0 && this.#ahead.length === 0 && this.#tokens > this.burstBytes) this.#tokens = this.burstBytes;
  }

  #admit(): void {
    this.#refill();
    for (;;) {
      // A fraction of a byte short is rounding, not a reason for another timer.
      const list = this.#ahead.length > 0 ? this.#ahead : this.#line;
      const next = list[0];
      const threshold = list === this.#ahead ? 0 : (next?.cost ?? 0);
      if (!next || this.#tokens < threshold - 1e-6) break;
      list.shift();
      this.#tokens -= next.cost;
      next.detach();
      next.resolve();
    }
    this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const threshold = this.#ahead.length > 0 ? 0 : this.#line[0]?.cost;
    if (threshold === undefined) return;
    const ms = Math.ceil(((threshold - this.#tokens) * 1000) / this.bytesPerSecond);
    this.#timer = setTimeout(() => this.#admit(), Math.min(MAX_TIMER_MS, Math.max(1, ms)));
  }
}
