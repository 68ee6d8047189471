import { setTimeout as sleep } from 'node:timers/promises';
import { StoreError } from './store.js';

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { attempts: 8, baseDelayMs: 200, maxDelayMs: 15_000 };

/**
 * Runs `operation`, retrying only errors a store marked retryable (throttling, transient), with
 * exponential backoff and full jitter. Preconditions, auth and not-found fail at once.
 */
export async function withRetry<T>(
  operation: () => Promise<T>,
  options: { policy?: RetryPolicy; signal?: AbortSignal; onRetry?: (error: StoreError, attempt: number, delayMs: number) => void } = {},
): Promise<T> {
  const policy = options.policy ?? defaultRetryPolicy;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof StoreError) || !error.retryable || attempt >= policy.attempts) throw error;
      const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(Math.random() * ceiling);
      options.onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, undefined, { signal: options.signal }).catch((sleepError: unknown) => {
        // Abort during the backoff rejects like an abort before an attempt: with the signal's reason.
        throw options.signal?.aborted ? options.signal.reason : sleepError;
      });
    }
  }
}
