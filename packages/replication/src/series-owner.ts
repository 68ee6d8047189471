import { hostname } from 'node:os';
import {
  isProcessGone,
  newStreamId,
  type ObjectStore,
  type RetryPolicy,
  StreamConflictError,
  senderInfo,
  withRetry,
} from '@bucketpipe/core';
import type { Versioned } from './json-record.js';
import { createSeries, readSeries, replaceSeries, SERIES_FORMAT, SERIES_VERSION, type SeriesRecord } from './series-record.js';

export interface SeriesClaim {
  store: ObjectStore;
  /** The source dataset; a series of another dataset is refused. */
  dataset: string;
  /** How old the heartbeat of another host's sender must be before it counts as gone. */
  staleAfterMs: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
}

/**
 * Makes this process the series' sender: creates the series, or takes it over from a sender that
 * is gone — on this host, a process that no longer runs (a systemd restart goes on at once); on
 * another, a heartbeat older than `staleAfterMs`. A live sender is never taken over.
 */
export async function claimSeries(claim: SeriesClaim): Promise<SeriesOwner> {
  const { store } = claim;
  const retry = { policy: claim.retry, signal: claim.signal };
  for (;;) {
    const found = await withRetry(() => readSeries(store, claim.signal), retry);
    const now = new Date().toISOString();
    if (found === null) {
      const record: SeriesRecord = {
        format: SERIES_FORMAT,
        version: SERIES_VERSION,
        seriesId: newStreamId(),
        createdAt: now,
        updatedAt: now,
        dataset: claim.dataset,
        sender: senderInfo(now),
        streams: 0,
      };
      const etag = await withRetry(() => createSeries(store, record, claim.signal), retry);
      if (etag !== null) return new SeriesOwner(store, { value: record, etag }, claim.retry);
      continue; // another sender created it first: judge that one
    }
    const series = found.value;
    if (series.dataset !== claim.dataset) {
      throw new StreamConflictError(
        'BP_SERIES_DATASET',
        `the series at ${store.description} replicates ${series.dataset}, not ${claim.dataset}: give its own dataset, or a new series URL for ${claim.dataset}`,
      );
    }
    const { sender } = series;
    const ageMs = Math.max(0, Date.now() - Date.parse(sender.heartbeatAt));
    // On this host the process itself tells (ProcessIdentity); elsewhere only the heartbeat's age can.
    const gone = ageMs >= claim.staleAfterMs || (sender.host === hostname() && isProcessGone(sender.pid, sender.process));
    if (!gone) {
      throw new StreamConflictError(
        'BP_SERIES_SENDER_LIVE',
        `the series at ${store.description} has a live sender daemon (${sender.id}, heartbeat ${Math.round(ageMs / 1000)}s ago): only one may run; stop it first, or wait until its heartbeat is older than ${Math.round(claim.staleAfterMs / 1000)}s`,
      );
    }
    const claimed: SeriesRecord = { ...series, updatedAt: now, sender: senderInfo(now) };
    const etag = await withRetry(() => replaceSeries(store, claimed, found.etag, claim.signal), retry);
    if (etag !== null) return new SeriesOwner(store, { value: claimed, etag }, claim.retry);
  }
}

/**
 * The series record as this sender owns it: every change is a compare-and-swap on the last ETag,
 * and a heartbeat keeps it fresh while no stream is being written. A swap that loses to another
 * writer means another sender daemon took the series over: BP_SERIES_RACE, nothing overwritten.
 */
export class SeriesOwner {
  readonly #store: ObjectStore;
  readonly #retry: RetryPolicy | undefined;
  #current: Versioned<SeriesRecord>;
  #writing: Promise<unknown> = Promise.resolve();

  constructor(store: ObjectStore, current: Versioned<SeriesRecord>, retry?: RetryPolicy) {
    this.#store = store;
    this.#current = current;
    this.#retry = retry;
  }

  get record(): SeriesRecord {
    return this.#current.value;
  }

  /** Writes `change(record)` with a fresh heartbeat; changes are applied one at a time, in call order. */
  update(change: (record: SeriesRecord) => SeriesRecord = (r) => r, signal?: AbortSignal): Promise<SeriesRecord> {
    const next = this.#writing.then(() => this.#swap(change, signal));
    this.#writing = next.catch(() => {});
    return next;
  }

  async #swap(change: (record: SeriesRecord) => SeriesRecord, signal?: AbortSignal): Promise<SeriesRecord> {
    const now = new Date().toISOString();
    const changed = change(this.#current.value);
    const record: SeriesRecord = { ...changed, updatedAt: now, sender: { ...changed.sender, heartbeatAt: now } };
    const etag = await withRetry(() => replaceSeries(this.#store, record, this.#current.etag, signal), { policy: this.#retry, signal });
    if (etag === null) {
      const now = await readSeries(this.#store).catch(() => null);
      const by = now ? ` (its sender is now ${now.value.sender.id})` : '';
      throw new StreamConflictError(
        'BP_SERIES_RACE',
        `the series record ${this.#store.description}/series.json was changed by another process${by}: another sender daemon took the series over; this one stops`,
      );
    }
    this.#current = { value: record, etag };
    return record;
  }
}
