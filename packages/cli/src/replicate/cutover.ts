import { type ObjectStore, PrefixedStore, type RetryPolicy, readManifest, StreamConflictError, withRetry } from '@bucketpipe/core';
import {
  type CutoverRequest,
  listSeriesReceivers,
  readSeries,
  requestCutover,
  type SeriesReceiverRecord,
  type SeriesRecord,
  streamPrefix,
} from '@bucketpipe/replication';
import { pause } from './pause.js';

export interface CutoverOptions {
  store: ObjectStore;
  /** Return once the request is filed. */
  noWait: boolean;
  pollMs: number;
  retry?: RetryPolicy;
  signal: AbortSignal;
  events: {
    requested(request: CutoverRequest, series: SeriesRecord): void;
    final(final: NonNullable<SeriesRecord['final']>, seconds: number): void;
    waiting(what: string | null): void;
  };
}

export interface CutoverSummary {
  seriesId: string;
  requestedAt: string;
  final?: NonNullable<SeriesRecord['final']>;
  /** Seconds from this command's start to each receiver holding the final snapshot, as seen here. */
  receivers: { receiverId: string; dataset: string; seconds: number }[];
  /** Seconds from this command's start to the last receiver holding the final snapshot (or the final stream stored, with none registered). */
  seconds: number;
}

/**
 * `replicate cutover`: asks the sender daemon, through the bucket, to take the final snapshot now,
 * then follows the series until every registered receiver holds it. Times are this machine's:
 * from the command's start to the moment it saw each receiver's record say so (within `pollMs`).
 */
export async function runCutover(options: CutoverOptions): Promise<CutoverSummary> {
  const { store, signal } = options;
  const retry = { policy: options.retry, signal };
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const found = await withRetry(() => readSeries(store, signal), retry);
  if (!found) {
    throw new StreamConflictError(
      'BP_SERIES_MISSING',
      `there is no series at ${store.description} (no series.json): check the URL; a series is started by bucketpipe replicate send`,
    );
  }
  const { seriesId } = found.value;
  const request = await withRetry(() => requestCutover(store, seriesId, signal), retry);
  options.events.requested(request, found.value);
  const summary: CutoverSummary = { seriesId, requestedAt: request.requestedAt, receivers: [], seconds: 0 };
  if (options.noWait) return summary;

  let series = found.value;
  while (!series.final) {
    options.events.waiting(
      `the sender daemon to take the final snapshot (it looks for the request every second while it waits; after the stream it is sending now)`,
    );
    await pause(options.pollMs, signal);
    const now = await withRetry(() => readSeries(store, signal), retry);
    if (!now)
      throw new StreamConflictError(
        'BP_SERIES_GONE',
        `the series record ${store.description}/series.json is gone: the cut-over cannot be followed`,
      );
    series = now.value;
  }
  const final = series.final;
  options.events.final(final, elapsed());
  summary.final = final;

  const done = new Map<string, { receiverId: string; dataset: string; seconds: number }>();
  for (;;) {
    const receivers = await withRetry(() => listSeriesReceivers(store, seriesId, signal), retry);
    for (const r of receivers) {
      if (!done.has(r.receiverId) && (r.applied?.seq ?? -1) >= final.seq)
        done.set(r.receiverId, { receiverId: r.receiverId, dataset: r.dataset, seconds: elapsed() });
    }
    const failed = receivers.filter((r) => r.state === 'failed' && !done.has(r.receiverId));
    if (failed.length > 0) throw receiverFailed(failed[0] as SeriesReceiverRecord);
    if (receivers.length > 0 && done.size === receivers.length) break;
    if (receivers.length === 0 && (await finalStreamStored(store, final.seq, retry))) break;
    const behind = receivers.filter((r) => !done.has(r.receiverId)).map((r) => `${r.receiverId} (at stream ${r.applied?.seq ?? 'none'})`);
    options.events.waiting(
      receivers.length === 0
        ? 'the final stream to be stored (no receiver is registered)'
        : `receivers to apply stream ${final.seq}: ${behind.join(', ')}`,
    );
    await pause(options.pollMs, signal);
  }
  options.events.waiting(null);
  summary.receivers = [...done.values()];
  summary.seconds = elapsed();
  return summary;
}

async function finalStreamStored(store: ObjectStore, seq: number, retry: { policy?: RetryPolicy; signal: AbortSignal }): Promise<boolean> {
  const found = await withRetry(() => readManifest(new PrefixedStore(store, streamPrefix(seq))), retry);
  return found?.manifest.state === 'complete';
}

function receiverFailed(r: SeriesReceiverRecord): Error {
  return new StreamConflictError(
    'BP_RECEIVER_FAILED',
    `receiver ${r.receiverId} (${r.dataset} on ${r.host}) failed before it applied the final stream: ${r.error ?? 'no reason given'}; fix it and restart it, it will apply the rest`,
  );
}
