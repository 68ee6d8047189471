import { setTimeout as sleep } from 'node:timers/promises';
import { IntegrityError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';

/**
 * How long a chunk the manifest counts may stay unreadable before it counts as lost. A transfer
 * service (or an eventually consistent copy) can deliver the manifest before the chunks it counts,
 * so a missing chunk is first waited for, with capped exponential backoff.
 */
export interface MissingChunkPolicy {
  timeoutMs: number;
  firstDelayMs: number;
  maxDelayMs: number;
}

export const defaultMissingChunkPolicy: MissingChunkPolicy = { timeoutMs: 120_000, firstDelayMs: 250, maxDelayMs: 5_000 };

export interface FetchChunkOptions {
  /** The manifest's watermark when the fetch started, for the error message. */
  watermark: number;
  retry?: RetryPolicy;
  missing?: MissingChunkPolicy;
  signal?: AbortSignal;
  /** Told what is being waited for while the chunk is not readable yet, and null once it is. */
  onWaiting?: (what: string | null) => void;
  /** A buffer to read the object into when it fits (GetOptions.into). */
  into?: Uint8Array;
}

/** Reads the whole chunk object `index`, waiting for it while it is counted but not readable yet. */
export async function fetchChunkObject(store: ObjectStore, index: number, options: FetchChunkOptions): Promise<Uint8Array> {
  const key = chunkKey(index);
  const policy = options.missing ?? defaultMissingChunkPolicy;
  const started = performance.now();
  let delayMs = policy.firstDelayMs;
  let waiting = false;
  for (;;) {
    const object = await withRetry(() => store.get(key, { signal: options.signal, into: options.into }), {
      policy: options.retry,
      signal: options.signal,
    });
    if (object) {
      if (waiting) options.onWaiting?.(null);
      return object.body;
    }
    const waitedMs = performance.now() - started;
    if (waitedMs >= policy.timeoutMs) {
      throw new IntegrityError(
        'BP_CHUNK_MISSING',
        `chunk ${key} is missing from ${store.description} although the manifest says every chunk below ${options.watermark} is stored (waited ${formatSeconds(waitedMs)}): the stream is damaged; resend it to a new stream URL`,
      );
    }
    waiting = true;
    options.onWaiting?.(`chunk ${key} (counted by the manifest, not readable at ${store.description} yet)`);
    await sleep(Math.min(delayMs, Math.max(1, policy.timeoutMs - waitedMs)), undefined, { signal: options.signal });
    delayMs = Math.min(policy.maxDelayMs, delayMs * 2);
  }
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}
