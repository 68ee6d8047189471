import { setTimeout as sleep } from 'node:timers/promises';
import { MANIFEST_KEY, type Manifest, readManifest } from './manifest.js';
import { type RetryPolicy, withRetry } from './retry.js';
import type { ObjectStore } from './store.js';

export interface WaitForManifestOptions {
  pollIntervalMs: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onWaiting?: (what: string | null) => void;
}

/** Polls until the stream's manifest exists: followers may start before the sender. */
export async function waitForManifest(store: ObjectStore, options: WaitForManifestOptions): Promise<Manifest> {
  for (;;) {
    const found = await withRetry(() => readManifest(store), { policy: options.retry, signal: options.signal });
    if (found) {
      options.onWaiting?.(null);
      return found.manifest;
    }
    options.onWaiting?.(`the stream to start (no ${MANIFEST_KEY} at ${store.description} yet)`);
    await sleep(options.pollIntervalMs, undefined, { signal: options.signal });
  }
}
