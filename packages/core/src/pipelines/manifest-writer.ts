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
 * Owns the sender's manifest after creation: writes progress at most once per interval, refreshes
 * the heartbeat when idle, and serialises writes so that each one carries the ETag of the previous
 * (compare-and-swap: a concurrent writer is detected, never overwritten).
 *
 * Progress is written as soon as the interval since the last write has passed, not at the next
 * tick of a fixed clock: the same number of writes when chunks complete all the time, and a chunk
 * that completes after a quiet spell is counted at once instead of up to an interval later (every
 * receiver waits for that count before it may read the chunk).
 */
export class ManifestWriter {
  #store: ObjectStore;
  #manifest: Manifest;
  #etag: string;
  #version = 0;
  #writtenVersion = 0;
  #lastWriteAt = Date.now();
  #writing: Promise<void> | undefined;
  #timer: { handle: NodeJS.Timeout; dueAt: number } | undefined;
  #running = false;
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
    this.#running = true;
    this.#schedule();
  }

  /** Records progress; it is written once an interval has passed since the last write. */
  set(patch: Partial<Manifest>): void {
    this.#manifest = { ...this.#manifest, ...patch };
    this.#version++;
    this.#schedule();
  }

  /** Stops the timer, waits for a write in progress, then writes `patch` now. */
  async finish(patch: Partial<Manifest>): Promise<void> {
    this.stop();
    await this.#writing?.catch(() => {});
    this.set(patch);
    // Not cancellable: the final state (complete, or aborted after a failure) must still be written.
    await this.#write(undefined);
  }

  stop(): void {
    this.#running = false;
    this.#clearTimer();
  }

  /** Arms the timer for the next write that is due: progress one interval, a heartbeat its own period after the last write. */
  #schedule(): void {
    if (!this.#running || this.#writing) return;
    const pending = this.#version !== this.#writtenVersion;
    const dueAt = this.#lastWriteAt + (pending ? this.#options.intervalMs : this.#options.heartbeatMs);
    if (this.#timer && this.#timer.dueAt <= dueAt) return;
    this.#clearTimer();
    const handle = setTimeout(() => this.#tick(), Math.max(0, dueAt - Date.now()));
    handle.unref();
    this.#timer = { handle, dueAt };
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer.handle);
    this.#timer = undefined;
  }

  #tick(): void {
    this.#timer = undefined;
    if (!this.#running || this.#writing) return;
    this.#writing = this.#write(this.#options.signal).then(
      () => {
        this.#writing = undefined;
        this.#schedule();
      },
      (error: unknown) => {
        // Retried already: the sender fails now, and only finish() writes again.
        this.#writing = undefined;
        this.#running = false;
        this.#options.onError(error);
      },
    );
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
