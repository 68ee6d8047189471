import { afterEach, describe, expect, it, vi } from 'vitest';
import { defaultRetryPolicy, type RetryPolicy, withRetry } from './retry.js';
import { StoreError, type StoreErrorKind } from './store.js';

const fast: RetryPolicy = { attempts: 4, baseDelayMs: 1, maxDelayMs: 2 };

/** An operation that fails with the given errors, in order, then returns 'ok'. */
function failing(...errors: unknown[]) {
  const operation = vi.fn(async () => {
    const error = errors[operation.mock.calls.length - 1];
    if (error !== undefined) throw error;
    return 'ok';
  });
  return operation;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('withRetry', () => {
  it('returns at once when the operation succeeds', async () => {
    const operation = failing();
    await expect(withRetry(operation, { policy: fast })).resolves.toBe('ok');
    expect(operation).toHaveBeenCalledTimes(1);
  });

  it('retries throttled and transient store errors until the operation succeeds', async () => {
    const operation = failing(new StoreError('throttled', 'slow down'), new StoreError('transient', 'ECONNRESET'));
    await expect(withRetry(operation, { policy: fast })).resolves.toBe('ok');
    expect(operation).toHaveBeenCalledTimes(3);
  });

  it('gives up after policy.attempts attempts in total and rethrows the last error', async () => {
    const errors = [1, 2, 3, 4, 5].map((n) => new StoreError('transient', `failure ${n}`));
    const operation = failing(...errors);
    await expect(withRetry(operation, { policy: fast })).rejects.toBe(errors[3]);
    expect(operation).toHaveBeenCalledTimes(4);
  });

  it('makes one attempt only when the policy allows one', async () => {
    const error = new StoreError('throttled', 'slow down');
    const operation = failing(error);
    await expect(withRetry(operation, { policy: { ...fast, attempts: 1 } })).rejects.toBe(error);
    expect(operation).toHaveBeenCalledTimes(1);
  });

  for (const kind of ['precondition', 'auth', 'not-found', 'fatal'] as StoreErrorKind[]) {
    it(`never retries a ${kind} error`, async () => {
      const error = new StoreError(kind, kind);
      expect(error.retryable).toBe(false);
      const operation = failing(error);
      await expect(withRetry(operation, { policy: fast })).rejects.toBe(error);
      expect(operation).toHaveBeenCalledTimes(1);
    });
  }

  it('never retries errors that are not StoreErrors', async () => {
    for (const error of [new Error('bug'), new TypeError('x'), 'string thrown']) {
      const operation = failing(error);
      await expect(withRetry(operation, { policy: fast })).rejects.toBe(error);
      expect(operation).toHaveBeenCalledTimes(1);
    }
  });

  it('backs off exponentially up to maxDelayMs with full jitter', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999_999);
    const delays: Array<[number, number]> = [];
    const errors = [1, 2, 3, 4].map(() => new StoreError('transient', 'x'));
    const operation = failing(...errors);
    await withRetry(operation, {
      policy: { attempts: 5, baseDelayMs: 1, maxDelayMs: 3 },
      onRetry: (error, attempt, delayMs) => {
        expect(error).toBe(errors[attempt - 1]);
        delays.push([attempt, delayMs]);
      },
    });
    expect(delays).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 3],
    ]);
  });

  it('draws each delay from [0, ceiling]', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const delays: number[] = [];
    await withRetry(failing(new StoreError('transient', 'x'), new StoreError('transient', 'x')), {
      policy: { attempts: 3, baseDelayMs: 1000, maxDelayMs: 1000 },
      onRetry: (_error, _attempt, delayMs) => delays.push(delayMs),
    });
    expect(delays).toEqual([0, 0]);
  });

  it('does not start when the signal is already aborted', async () => {
    const reason = new Error('cancelled');
    const operation = failing();
    await expect(withRetry(operation, { policy: fast, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(operation).not.toHaveBeenCalled();
  });

  it('stops waiting between attempts as soon as the signal aborts', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999_999);
    const controller = new AbortController();
    const reason = new Error('cancelled');
    const operation = failing(new StoreError('transient', 'x'), new StoreError('transient', 'x'));
    const started = Date.now();
    const result = withRetry(operation, {
      policy: { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 },
      signal: controller.signal,
      onRetry: () => setImmediate(() => controller.abort(reason)),
    });
    const error = await result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(operation).toHaveBeenCalledTimes(1);
    // node:timers/promises rejects with an AbortError whose cause is the reason.
    expect(error === reason || (error as Error).cause === reason).toBe(true);
  });

  it('has a default policy of 8 attempts, 200 ms base, 15 s cap', () => {
    expect(defaultRetryPolicy).toEqual({ attempts: 8, baseDelayMs: 200, maxDelayMs: 15_000 });
  });
});
