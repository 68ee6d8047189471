import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket } from './token-bucket.js';

describe('TokenBucket (fake clock)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const bucket = (bytesPerSecond: number, burstBytes?: number) => new TokenBucket({ bytesPerSecond, burstBytes, now: () => Date.now() });

  /** Starts the takes and records when each one resolved, in ms since the start. */
  function track(takes: Array<() => Promise<void>>) {
    const start = Date.now();
    const at: Array<number | string> = takes.map(() => 'pending');
    takes.forEach((take, i) => {
      take().then(
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

  it('starts empty and admits bytes at the rate, each request when its bytes are covered', async () => {
    const b = bucket(1000);
    const at = track(Array.from({ length: 5 }, () => () => b.take(1000)));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(at).toEqual([1000, 2000, 3000, 4000, 5000]);
  });

  it('saves up at most the burst while idle', async () => {
    const b = bucket(1000, 200);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(b.tokens).toBe(200);
    const at = track([() => b.take(100), () => b.take(100), () => b.take(100), () => b.take(100)]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(at).toEqual([0, 0, 100, 200]);
  });

  it('lets a request larger than the burst through alone, after its own bytes are covered', async () => {
    const b = bucket(1000, 100);
    const at = track([() => b.take(5000), () => b.take(100)]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(at).toEqual([5000, 5100]);
  });

  it('serves in arrival order: a small request does not overtake a large one', async () => {
    const b = bucket(1000, 0);
    const at = track([() => b.take(3000), () => b.take(10), () => b.take(10)]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual([3000, 3010, 3020]);
  });

  it('rejects an aborted wait with the reason, and the bytes it did not take go to the next in line', async () => {
    const b = bucket(1000, 0);
    const controller = new AbortController();
    const at = track([() => b.take(1000), () => b.take(5000, controller.signal), () => b.take(1000)]);
    await vi.advanceTimersByTimeAsync(1500);
    controller.abort(new Error('stop'));
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual([1000, 'rejected: Error: stop', 2000]);
    await expect(b.take(1, AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });

  it('makes later requests pay for debt and gives refunds back', async () => {
    const b = bucket(1000, 0);
    b.settle(2000);
    expect(b.tokens).toBe(-2000);
    const at = track([() => b.take(1000)]);
    await vi.advanceTimersByTimeAsync(1000);
    b.settle(-1500);
    await vi.advanceTimersByTimeAsync(1000);
    expect(at).toEqual([1500]);
  });

  it('lets takeAhead pass the line unless the bucket is in debt', async () => {
    const b = bucket(1000, 0);
    const at = track([() => b.take(3000), () => b.takeAhead(500)]);
    await vi.advanceTimersByTimeAsync(0);
    expect(at).toEqual(['pending', 0]);
    // takeAhead spent 500 into debt: the line pays for it.
    await vi.advanceTimersByTimeAsync(5000);
    expect(at).toEqual([3500, 0]);
    b.settle(1000);
    const later = track([() => b.takeAhead(10)]);
    await vi.advanceTimersByTimeAsync(999);
    expect(later).toEqual(['pending']);
    await vi.advanceTimersByTimeAsync(1);
    expect(later).toEqual([1000]);
  });

  it('carries a late timer over to the next request instead of losing the time', async () => {
    let skew = 0;
    const now = () => Date.now() + skew;
    const b = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 0, now });
    const at: number[] = [];
    for (let i = 0; i < 3; i++) void b.take(1000).then(() => at.push(now()));
    const start = now();
    await vi.advanceTimersByTimeAsync(1999);
    skew = 50; // the event loop was busy: the timer due at 2000 runs at 2050
    await vi.advanceTimersByTimeAsync(2000);
    expect(at.map((t) => t - start)).toEqual([1000, 2050, 3000]);
  });

  it('refuses a rate that is not positive', () => {
    expect(() => new TokenBucket({ bytesPerSecond: 0 })).toThrow(RangeError);
    expect(() => new TokenBucket({ bytesPerSecond: Number.NaN })).toThrow(RangeError);
  });
});

describe('TokenBucket (real timers)', () => {
  it('keeps the average exact under concurrency although timers fire late', async () => {
    const b = new TokenBucket({ bytesPerSecond: 1e6 });
    const started = performance.now();
    // 40 requests of 10 kB from 8 concurrent "uploads": 400 kB at 1 MB/s is 400 ms.
    let next = 0;
    const worker = async () => {
      while (next < 40) {
        next++;
        await b.take(10_000);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeGreaterThan(0.39);
    // Late timers must not add up (each wait is computed from the deficit, not slept in full); a
    // busy machine (the suite runs in parallel) may still delay the last ones: 100 ms of slack.
    expect(seconds).toBeLessThan(0.5);
  });
});
