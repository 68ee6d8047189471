import { type Manifest, updateManifest } from '../protocol/manifest.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';

export interface ManifestWriterOptions {
  intervalMs: number;
  heartbeatMs: number;
  retry?: RetryPolicy;
  /** Cancels writes in progress (the sender failed or was interrupted). */
  signal?: AbortSignal;
  onError: (error: unknown) => void;
}

/**
 * Owns the sender's manifest after creation: coalesces progress into at most one write per
 * interval, refreshes the heartbeat when idle, and serialises writes so that each one carries the
 * ETag of the previous (compare-and-swap: a concurrent writer is detected, never overwritten).
 */
export class ManifestWriter {
  #store: ObjectStore;
  #manifest: Manifest;
  #etag: string;
  #version = 0;
  #writtenVersion = 0;
  #lastWriteAt = Date.now();
  #writing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #options: ManifestWriterOptions;

  constructor(store: ObjectStore, created: { manifest: Manifest; etag: string }, options: ManifestWriterOptions) {
    this.#store = store;
    this.#manifest = created.manifest;
    this.#etag = created.etag;
    this.#options = options;
  }

  get manifest(): Readonly<Manifest> {
    return this.#manifest;
  }

  start(): void {
    this.#timer = setInterval(() => this.#tick(), this.#options.intervalMs);
    this.#timer.unref();
  }

  /** Records progress; it is written at the next tick. */
  set(patch: Partial<Manifest>): void {
    this.#manifest = { ...this.#manifest, ...patch };
    this.#version++;
  }

  /** Stops the timer, waits for a write in progress, then writes `patch` now. */
  async finish(patch: Partial<Manifest>): Promise<void> {
    clearInterval(this.#timer);
    await this.#writing?.catch(() => {});
    this.set(patch);
    // Not cancellable: the final state (complete, or aborted after a failure) must still be written.
    await this.#write(undefined);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #tick(): void {
    if (this.#writing) return;
    const heartbeatDue = Date.now() - this.#lastWriteAt >= this.#options.heartbeatMs;
    if (this.#version === this.#writtenVersion && !heartbeatDue) return;
    this.#writing = this.#write(this.#options.signal)
      .catch(this.#options.onError)
      .finally(() => {
        this.#writing = undefined;
      });
  }

  async #write(signal: AbortSignal | undefined): Promise<void> {
    const version = this.#version;
    const now = new Date().toISOString();
    const next: Manifest = { ...this.#manifest, updatedAt: now, sender: { ...this.#manifest.sender, heartbeatAt: now } };
    this.#etag = await withRetry(() => updateManifest(this.#store, next, this.#etag), {
      policy: this.#options.retry,
      signal,
    });
    this.#manifest = { ...this.#manifest, updatedAt: now, sender: next.sender };
    this.#writtenVersion = version;
    this.#lastWriteAt = Date.now();
  }
}
