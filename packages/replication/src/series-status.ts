import {
  type Manifest,
  mapLimit,
  type ObjectStore,
  PrefixedStore,
  type ReceiverCursor,
  type RetryPolicy,
  readManifest,
  receiverKey,
  SENDER_STALE_AFTER_MS,
  type StreamState,
  withRetry,
} from '@bucketpipe/core';
import { streamPrefix } from './layout.js';
import { listSeriesReceivers, type SeriesReceiverRecord } from './series-receiver.js';
import { readSeries, type SeriesRecord } from './series-record.js';
import { readStreamRecord, type StreamRecord } from './stream-record.js';

/** A stream the series counts whose manifest is not there yet (the sender registered it and is about to start). */
export type SeriesStreamState = StreamState | 'not started';

export interface SeriesStreamStatus {
  seq: number;
  /** null only when the series counts the stream but its replication.json is missing (altered by hand). */
  record: StreamRecord | null;
  state: SeriesStreamState;
  manifest: Manifest | null;
}

export interface SeriesReceiverStatus {
  record: SeriesReceiverRecord;
  /** Seconds from the creation of the newest snapshot the target holds to `now`; null before the first. */
  lagSeconds: number | null;
  /** With state `receiving`: that stream's own cursor for this receiver (its position in the stream), when published. */
  cursor: ReceiverCursor | null;
  /** The manifest of the stream being received, for its watermark. */
  receivingManifest: Manifest | null;
}

export interface SeriesTotals {
  streams: number;
  rawBytes: number;
  storedBytes: number;
  chunks: number;
  byState: Record<SeriesStreamState, number>;
}

export interface SeriesStatus {
  series: SeriesRecord;
  /** `live` (heartbeat younger than 60 s), `stale` (older: the daemon died or hangs), `finished` (final stream complete). */
  sender: { state: 'live' | 'stale' | 'finished'; heartbeatAgeMs: number };
  totals: SeriesTotals;
  /** The streams asked for (the newest `show` of them), in order. */
  streams: SeriesStreamStatus[];
  receivers: SeriesReceiverStatus[];
  /** The final stream is complete and every registered receiver applied it: nothing will change any more. */
  finished: boolean;
}

export interface SeriesStatusOptions {
  /** How many of the newest streams to return in full (records and manifests); all are counted in the totals. */
  show: number | 'all';
  /** Manifests and records read in parallel at most (default 16). */
  concurrency?: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
}

/**
 * Reads where a series stands, for `inspect`: the series record, every stream's manifest (for the
 * totals), the records of the streams shown, and every series receiver. A complete stream's manifest
 * and any stream record never change, so one reader used for successive refreshes (`--watch`)
 * reads them once: a refresh of a series of 10,000 streams then costs a few requests, not 10,000.
 */
export class SeriesStatusReader {
  readonly #store: ObjectStore;
  readonly #complete = new Map<number, Manifest>();
  readonly #records = new Map<number, StreamRecord>();

  constructor(store: ObjectStore) {
    this.#store = store;
  }

  /** null when there is no series at the store's root. */
  async read(options: SeriesStatusOptions, now = Date.now()): Promise<SeriesStatus | null> {
    const retry = { policy: options.retry, signal: options.signal };
    const found = await withRetry(() => readSeries(this.#store, options.signal), retry);
    if (!found) return null;
    const series = found.value;
    const count = series.streams;
    const concurrency = options.concurrency ?? 16;
    const manifests = await mapLimit(range(0, count), concurrency, (seq) => this.#manifest(seq, options));
    const firstShown = options.show === 'all' ? 0 : Math.max(0, count - options.show);
    const shownSeqs = range(firstShown, count);
    const records = await mapLimit(shownSeqs, concurrency, (seq) => this.#record(seq, options));
    const streams = shownSeqs.map((seq, i) => {
      const manifest = manifests[seq] ?? null;
      return { seq, record: records[i] ?? null, state: manifest?.state ?? ('not started' as const), manifest };
    });
    const totals: SeriesTotals = {
      streams: count,
      rawBytes: 0,
      storedBytes: 0,
      chunks: 0,
      byState: { sending: 0, complete: 0, aborted: 0, 'not started': 0 },
    };
    for (const m of manifests) {
      totals.byState[m?.state ?? 'not started']++;
      totals.rawBytes += m?.rawBytes ?? 0;
      totals.storedBytes += m?.storedBytes ?? 0;
      totals.chunks += m?.watermark ?? 0;
    }
    const receiverRecords = await withRetry(() => listSeriesReceivers(this.#store, series.seriesId, options.signal), retry);
    const receivers = await mapLimit(receiverRecords, concurrency, (record) => this.#receiver(record, manifests, now, options));
    const finalComplete = series.final !== undefined && manifests[series.final.seq]?.state === 'complete';
    const heartbeatAgeMs = Math.max(0, now - Date.parse(series.sender.heartbeatAt));
    const sender = {
      state: finalComplete ? ('finished' as const) : heartbeatAgeMs < SENDER_STALE_AFTER_MS ? ('live' as const) : ('stale' as const),
      heartbeatAgeMs,
    };
    const finished =
      finalComplete && receivers.every((r) => r.record.state === 'done' && (r.record.applied?.seq ?? -1) >= (series.final?.seq ?? 0));
    return { series, sender, totals, streams, receivers, finished };
  }

  async #manifest(seq: number, options: SeriesStatusOptions): Promise<Manifest | null> {
    const known = this.#complete.get(seq);
    if (known) return known;
    const store = new PrefixedStore(this.#store, streamPrefix(seq));
    const found = await withRetry(() => readManifest(store), { policy: options.retry, signal: options.signal });
    if (found?.manifest.state === 'complete') this.#complete.set(seq, found.manifest);
    return found?.manifest ?? null;
  }

  async #record(seq: number, options: SeriesStatusOptions): Promise<StreamRecord | null> {
    const known = this.#records.get(seq);
    if (known) return known;
    const record = await withRetry(() => readStreamRecord(this.#store, seq, options.signal), {
      policy: options.retry,
      signal: options.signal,
    });
    if (record) this.#records.set(seq, record);
    return record;
  }

  async #receiver(
    record: SeriesReceiverRecord,
    manifests: readonly (Manifest | null)[],
    now: number,
    options: SeriesStatusOptions,
  ): Promise<SeriesReceiverStatus> {
    const lagSeconds = record.applied ? Math.max(0, Math.round(now / 1000 - record.applied.creation)) : null;
    const seq = record.state === 'receiving' ? record.receiving : undefined;
    if (seq === undefined || seq >= manifests.length) return { record, lagSeconds, cursor: null, receivingManifest: null };
    const receivingManifest = manifests[seq] ?? null;
    const key = streamPrefix(seq) + receiverKey(record.receiverId);
    const object = await withRetry(() => this.#store.get(key, { signal: options.signal }), {
      policy: options.retry,
      signal: options.signal,
    });
    let cursor: ReceiverCursor | null = null;
    try {
      const value = object ? (JSON.parse(Buffer.from(object.body).toString('utf8')) as Record<string, unknown>) : null;
      if (value?.format === 'bucketpipe.receiver' && (value.streamId === null || value.streamId === receivingManifest?.streamId)) {
        cursor = value as unknown as ReceiverCursor;
      }
    } catch {
      // A damaged cursor only affects what inspect shows.
    }
    return { record, lagSeconds, cursor, receivingManifest };
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}
