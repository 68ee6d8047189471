import type { Sink } from '@bucketpipe/core';
import type { Health } from './health.js';
import type { TransferMetrics } from './registry.js';

/**
 * Wraps the receiver's sink and measures how long each write waits for the sink to take it (the
 * receiver writes one verified chunk per write): raw bytes and chunks written, time blocked, and
 * stalls — writes not taken within the health threshold. The pending write is what /healthz names
 * when a receive is stalled on its sink.
 */
export class MeteredSink implements Sink {
  readonly #inner: Sink;
  readonly #metrics: TransferMetrics;
  readonly #health: Health;
  #pendingSince: number | undefined;
  /** Up to when the pending write's waiting time is in the blocked-seconds counter. */
  #accountedTo = 0;
  #stallTimer: NodeJS.Timeout | undefined;

  constructor(inner: Sink, metrics: TransferMetrics, health: Health) {
    this.#inner = inner;
    this.#metrics = metrics;
    this.#health = health;
    metrics.beforeSinkCollect = () => this.#account();
  }

  get description(): string {
    return this.#inner.description;
  }

  get failure(): Promise<never> {
    return this.#inner.failure;
  }

  /** Since when (performance.now() ms) the current write has waited, or undefined. */
  get pendingSince(): number | undefined {
    return this.#pendingSince;
  }

  async write(bytes: Uint8Array): Promise<void> {
    const started = performance.now();
    this.#pendingSince = started;
    this.#accountedTo = started;
    this.#health.sinkBlocked(started);
    this.#stallTimer = setTimeout(() => this.#metrics.sinkStalls.inc(), this.#health.stallAfterMs);
    this.#stallTimer.unref();
    try {
      await this.#inner.write(bytes);
      this.#metrics.rawBytes.inc(bytes.byteLength);
      this.#metrics.chunks.inc();
      this.#health.progressed();
    } finally {
      clearTimeout(this.#stallTimer);
      this.#account();
      this.#pendingSince = undefined;
      this.#health.sinkBlocked(undefined);
    }
  }

  #account(): void {
    if (this.#pendingSince === undefined) return;
    const now = performance.now();
    this.#metrics.sinkBlockedSeconds.inc((now - this.#accountedTo) / 1000);
    this.#accountedTo = now;
  }

  finish(): Promise<void> {
    return this.#inner.finish();
  }

  abort(): Promise<void> {
    return this.#inner.abort();
  }
}
