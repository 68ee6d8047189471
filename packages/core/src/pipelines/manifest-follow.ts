import { setTimeout as sleep } from 'node:timers/promises';
import { MANIFEST_KEY, type Manifest, readManifest } from '../protocol/manifest.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';

export interface WaitForManifestOptions {
  pollIntervalMs: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onWaiting?: (what: string | null) => void;
}

/** Polls until the stream's manifest exists: followers may start before the sender. */
export async function waitForManifest(store: ObjectStore, options: WaitForManifestOptions): Promise<Manifest> {
  return (await waitForStream(store, () => readManifest(store), options)).manifest;
}

/** The same wait, with the caller's own way of reading the manifest (e.g. keeping its bytes). */
export async function waitForStream<T>(store: ObjectStore, read: () => Promise<T | null>, options: WaitForManifestOptions): Promise<T> {
  for (;;) {
    const found = await withRetry(read, { policy: options.retry, signal: options.signal });
    if (found) {
      options.onWaiting?.(null);
      return found;
    }
    options.onWaiting?.(`the stream to start (no ${MANIFEST_KEY} at ${store.description} yet)`);
    await sleep(options.pollIntervalMs, undefined, { signal: options.signal });
  }
}
