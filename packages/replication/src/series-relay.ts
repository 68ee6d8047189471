import { setTimeout as sleep } from 'node:timers/promises';
import {
  BucketpipeError,
  MANIFEST_KEY,
  Notifier,
  type ObjectStore,
  PrefixedStore,
  putIfAbsent,
  type RelayOptions,
  type RelayProgress,
  type RelaySummary,
  type RetryPolicy,
  readManifest,
  relay,
  StoreError,
  StreamConflictError,
  withRetry,
} from '@bucketpipe/core';
import { decodeRecord, type Versioned } from './json-record.js';
import { CUTOVER_KEY, SERIES_KEY, SERIES_RECEIVERS_PREFIX, STREAM_RECORD_KEY, streamPrefix } from './layout.js';
import { parseSeriesReceiver, type SeriesReceiverRecord } from './series-receiver.js';
import { createSeries, readSeries, replaceSeries, type SeriesRecord } from './series-record.js';
import { parseStreamRecord, type StreamRecord } from './stream-record.js';

/**
 * The stream relay's options, for the series roots (`source`: its series.json exists); the
 * concurrency holds within the stream being relayed. Progress comes as events, per stream.
 */
export interface SeriesRelayOptions extends Omit<RelayOptions, 'onProgress' | 'onWaiting'> {
  events?: Partial<SeriesRelayEvents>;
}

export interface SeriesRelayEvents {
  /** The stream is counted by the destination's series and its relay begins (or resumes). */
  streamStart(stream: StreamRecord): void;
  streamProgress(stream: StreamRecord, progress: RelayProgress): void;
  streamDone(stream: StreamRecord, summary: RelaySummary): void;
  /** A destination receiver's record was copied to the source's receivers/. */
  mirrored(receiver: SeriesReceiverRecord): void;
  waiting(what: string | null): void;
  warning(text: string): void;
}

export interface SeriesRelaySummary {
  seriesId: string;
  /** The streams the destination holds, the final one included. */
  streams: number;
  /** Streams this run relayed (or finished relaying). */
  streamsRelayed: number;
  chunksCopied: number;
  storedBytesCopied: number;
  rawBytes: number;
  seconds: number;
}

/**
 * Relays a series, stream after stream, live: for each stream in order, its replication.json is
 * copied (create-only), the destination's series.json is made to count it (a copy of the source's
 * record with `streams` = the streams relayed so far, `final` only with the final stream), then the
 * stream itself goes through the ordinary relay — whose manifest is written only after the chunks
 * it counts — so a receiver daemon at the destination follows it as it fills. Restarted, it carries
 * on from the destination's series record. Meanwhile the destination's series receivers are
 * mirrored to the source's receivers/, so that the sender daemon's pruning and `replicate cutover`
 * see them; it ends once the final stream is relayed and every such receiver has applied it.
 */
export async function relaySeries(options: SeriesRelayOptions): Promise<SeriesRelaySummary> {
  const { source, destination } = options;
  const events = options.events ?? {};
  const started = performance.now();
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const retry = { policy: options.retry, signal };

  const first = await withRetry(() => readSeries(source, signal), retry);
  if (!first) {
    throw new StreamConflictError('BP_SERIES_MISSING', `there is no series at ${source.description} (no series.json): check the URL`);
  }
  let latest = first.value;
  const { seriesId } = latest;
  if (await withRetry(() => destination.head(MANIFEST_KEY), retry)) {
    throw new StreamConflictError(
      'BP_RELAY_OTHER_STREAM',
      `${destination.description} holds a single stream (manifest.json), not a series: relay the series ${source.description} to another URL`,
    );
  }
  const copy = await SeriesCopy.open(destination, latest, retry);
  await copy.follow(latest);
  const mirror = new ReceiverMirror(source, destination, seriesId, retry, events);
  const ticked = new Notifier();

  // Every poll: the source's series record (new streams, the sender's heartbeat, copied to the
  // destination's), and the destination's receivers (mirrored to the source).
  const background = (async () => {
    while (!signal.aborted) {
      await sleep(options.pollIntervalMs, undefined, { signal });
      const now = await withRetry(() => readSeries(source, signal), retry);
      if (!now) {
        throw new StreamConflictError(
          'BP_SERIES_GONE',
          `the series record ${source.description}/${SERIES_KEY} is gone (removed while relaying?): nothing more can be relayed`,
        );
      }
      assertSameSeries(latest, now.value, source);
      latest = now.value;
      await copy.follow(latest);
      await mirror.sync();
      ticked.notify();
    }
  })();
  const failed = background.catch((error: unknown) => {
    if (!stop.signal.aborted) stop.abort(error);
  });

  let streamsRelayed = 0;
  let chunksCopied = 0;
  let storedBytesCopied = 0;
  let rawBytes = 0;
  try {
    let seq = Math.max(0, copy.registered - 1);
    let final: StreamRecord | undefined;
    while (!final) {
      while (latest.streams <= seq) {
        events.waiting?.(`stream ${seq} of the series at ${source.description} (the sender daemon registers it when it starts it)`);
        await raceTick(ticked, signal);
      }
      events.waiting?.(null);
      const record = await copyStreamRecord(source, destination, seriesId, seq, retry);
      if (record.final) await copyCutoverRequest(source, destination, retry);
      if (copy.registered < seq + 1) await copy.register(latest, seq + 1, record);
      events.streamStart?.(record);
      const summary = await relayStream(options, record, signal);
      events.streamDone?.(record, summary);
      streamsRelayed++;
      chunksCopied += summary.chunksCopied;
      storedBytesCopied += summary.storedBytesCopied;
      rawBytes += summary.rawBytes;
      if (record.final) final = record;
      else seq++;
    }
    // The receivers behind this relay say they are done only at the destination: keep mirroring
    // until they have, so that replicate cutover at the source sees the cut-over through.
    for (;;) {
      const receivers = await mirror.sync();
      const behind = receivers.filter((r) => (r.applied?.seq ?? -1) < final.seq);
      if (mirror.denied || behind.length === 0) break;
      events.waiting?.(
        `the receivers at ${destination.description} to apply the final stream ${final.seq} (their records are mirrored to the source for replicate cutover): ${behind
          .map((r) => `${r.receiverId} (${r.state}, at stream ${r.applied?.seq ?? 'none'})`)
          .join(', ')}`,
      );
      await raceTick(ticked, signal);
    }
    events.waiting?.(null);
    return {
      seriesId,
      streams: final.seq + 1,
      streamsRelayed,
      chunksCopied,
      storedBytesCopied,
      rawBytes,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (caught) {
    throw stop.signal.aborted && stop.signal.reason !== undefined ? stop.signal.reason : caught;
  } finally {
    if (!stop.signal.aborted) stop.abort(new Error('series relay finished'));
    await failed;
  }
}

/** Waits for the next background tick; the background's failure (or the caller's abort) ends the wait. */
async function raceTick(ticked: Notifier, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void ticked.wait().then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** One stream through the core relay; an aborted stream is waited on (its sender daemon takes it over) and relayed on. */
async function relayStream(options: SeriesRelayOptions, record: StreamRecord, signal: AbortSignal): Promise<RelaySummary> {
  const prefix = streamPrefix(record.seq);
  const source = new PrefixedStore(options.source, prefix);
  const destination = new PrefixedStore(options.destination, prefix);
  for (;;) {
    try {
      return await relay({
        source,
        destination,
        concurrency: options.concurrency,
        pollIntervalMs: options.pollIntervalMs,
        retry: options.retry,
        missingChunk: options.missingChunk,
        signal,
        onWaiting: (what) => options.events?.waiting?.(what),
        onProgress: (progress) => options.events?.streamProgress?.(record, progress),
      });
    } catch (error) {
      if (!(error instanceof BucketpipeError) || error.code !== 'BP_STREAM_ABORTED' || signal.aborted) throw error;
      options.events?.warning?.(
        `stream ${record.seq} was aborted by its sender (${error.message.split('\n')[0]}); relayed on once the sender daemon takes it over`,
      );
      options.events?.waiting?.(`stream ${record.seq} to be taken over by a sender (it was aborted)`);
      for (;;) {
        await sleep(Math.max(options.pollIntervalMs, 1000), undefined, { signal });
        const found = await withRetry(() => readManifest(source), { policy: options.retry, signal });
        if (found?.manifest.state !== 'aborted') break;
      }
    }
  }
}

/**
 * Copies the operator's cut-over request (cutover.json), when there is one, before the final stream
 * is counted: a receiver daemon at the destination reports the cut-over time from it.
 */
async function copyCutoverRequest(
  source: ObjectStore,
  destination: ObjectStore,
  retry: { policy?: RetryPolicy; signal: AbortSignal },
): Promise<void> {
  const request = await withRetry(() => source.get(CUTOVER_KEY, { signal: retry.signal }), retry);
  if (!request) return;
  // Refused: a request is there already (an earlier run copied it).
  await withRetry(() => putIfAbsent(destination, CUTOVER_KEY, request.body, retry.signal), retry);
}

/** Copies streams/<seq>/replication.json verbatim, create-only; an existing copy must be the same bytes. */
async function copyStreamRecord(
  source: ObjectStore,
  destination: ObjectStore,
  seriesId: string,
  seq: number,
  retry: { policy?: RetryPolicy; signal: AbortSignal },
): Promise<StreamRecord> {
  const key = streamPrefix(seq) + STREAM_RECORD_KEY;
  const object = await withRetry(() => source.get(key, { signal: retry.signal }), retry);
  if (!object) {
    throw new StreamConflictError(
      'BP_SERIES_MALFORMED',
      `${source.description}/${key} is missing although the series counts stream ${seq}: the series was altered by hand; it cannot be relayed`,
    );
  }
  const record = decodeRecord(object.body, `${source.description}/${key}`, parseStreamRecord);
  if (record.seq !== seq || record.seriesId !== seriesId) {
    throw new StreamConflictError(
      'BP_SERIES_MALFORMED',
      `${source.description}/${key} says it is stream ${record.seq} of series ${record.seriesId}: the series was altered by hand; it cannot be relayed`,
    );
  }
  // Refused: another record is there (the same bytes, a copy an earlier run made, count as written).
  const put = await withRetry(() => putIfAbsent(destination, key, object.body, retry.signal), retry);
  if ('refused' in put) {
    throw new StreamConflictError(
      'BP_RELAY_OTHER_SERIES',
      `${destination.description}/${key} differs from the source's: the destination holds another series; relay to another URL, or delete the old series there`,
      { cause: put.refused },
    );
  }
  return record;
}

/**
 * The destination's series.json as this relay writes it: a copy of the source's record, counting
 * only the streams relayed so far. Create-only, then compare-and-swap on the last ETag: a swap that
 * loses means another relay writes the same destination.
 */
class SeriesCopy {
  readonly #store: ObjectStore;
  readonly #retry: { policy?: RetryPolicy; signal: AbortSignal };
  #current: Versioned<SeriesRecord> | null;
  #writing: Promise<unknown> = Promise.resolve();

  private constructor(store: ObjectStore, current: Versioned<SeriesRecord> | null, retry: { policy?: RetryPolicy; signal: AbortSignal }) {
    this.#store = store;
    this.#current = current;
    this.#retry = retry;
  }

  static async open(store: ObjectStore, source: SeriesRecord, retry: { policy?: RetryPolicy; signal: AbortSignal }): Promise<SeriesCopy> {
    const found = await withRetry(() => readSeries(store, retry.signal), retry);
    if (found && found.value.seriesId !== source.seriesId) {
      throw new StreamConflictError(
        'BP_RELAY_OTHER_SERIES',
        `${store.description} already holds series ${found.value.seriesId} (of ${found.value.dataset}), not ${source.seriesId} which is being relayed: use another destination URL, or delete the old series there`,
      );
    }
    if (found && found.value.streams > source.streams) {
      throw new StreamConflictError(
        'BP_SERIES_REGRESSED',
        `the copy at ${store.description} counts ${found.value.streams} streams but its source only ${source.streams}: the source series was altered`,
      );
    }
    return new SeriesCopy(store, found, retry);
  }

  /** Streams the destination counts. */
  get registered(): number {
    return this.#current?.value.streams ?? 0;
  }

  /** Counts stream `streams − 1` (the final one: the series becomes final). */
  register(source: SeriesRecord, streams: number, stream: StreamRecord): Promise<void> {
    const final = stream.final ? (source.final ?? { seq: stream.seq, snapshot: stream.to.name, at: stream.createdAt }) : undefined;
    return this.#write(() => copyOf(source, streams, final));
  }

  /**
   * Creates the copy (counting no stream yet, so that receivers at the destination find the series
   * and wait for its first stream), then keeps its other fields — the sender's heartbeat, the
   * source's newest snapshot — up to date.
   */
  follow(source: SeriesRecord): Promise<void> {
    return this.#write((current) => copyOf(source, current?.streams ?? 0, current?.final));
  }

  #write(next: (current: SeriesRecord | null) => SeriesRecord): Promise<void> {
    const write = this.#writing.then(() => this.#swap(next(this.#current?.value ?? null)));
    this.#writing = write.catch(() => {});
    return write;
  }

  async #swap(record: SeriesRecord): Promise<void> {
    if (this.#current && JSON.stringify(this.#current.value) === JSON.stringify(record)) return;
    const { signal } = this.#retry;
    const etag = await withRetry(
      () => (this.#current ? replaceSeries(this.#store, record, this.#current.etag, signal) : createSeries(this.#store, record, signal)),
      this.#retry,
    );
    if (etag === null) {
      throw new StreamConflictError(
        'BP_RELAY_RACE',
        `the series record ${this.#store.description}/${SERIES_KEY} was changed by someone else while this relay wrote it: run one relay per destination`,
      );
    }
    this.#current = { value: record, etag };
  }
}

function copyOf(source: SeriesRecord, streams: number, final: SeriesRecord['final']): SeriesRecord {
  const { final: _sourceFinal, ...rest } = source;
  return { ...rest, streams, ...(final ? { final } : {}) };
}

function assertSameSeries(known: SeriesRecord, now: SeriesRecord, store: ObjectStore): void {
  if (now.seriesId !== known.seriesId) {
    throw new StreamConflictError(
      'BP_SERIES_REPLACED',
      `the series at ${store.description} is now ${now.seriesId}, not ${known.seriesId}: it was replaced while relaying`,
    );
  }
  if (now.streams < known.streams) {
    throw new StreamConflictError(
      'BP_SERIES_REGRESSED',
      `the series at ${store.description} went back from ${known.streams} streams to ${now.streams}: the series record was altered`,
    );
  }
}

/**
 * Copies the destination's series receiver records (receivers/<id>.json) to the source's
 * receivers/, verbatim, when they change: the sender daemon prunes and `replicate cutover` waits by
 * the source's receivers. A record at the source of another receiver with the same id (another host
 * or target) is never overwritten. Without write access to the source a warning says so, once.
 */
class ReceiverMirror {
  readonly #source: ObjectStore;
  readonly #destination: ObjectStore;
  readonly #seriesId: string;
  readonly #retry: { policy?: RetryPolicy; signal: AbortSignal };
  readonly #events: Partial<SeriesRelayEvents>;
  /** The bytes last put to the source (or found there), by receiver id. */
  readonly #mirrored = new Map<string, Buffer>();
  readonly #refused = new Set<string>();
  #denied = false;
  #warned = false;

  constructor(
    source: ObjectStore,
    destination: ObjectStore,
    seriesId: string,
    retry: { policy?: RetryPolicy; signal: AbortSignal },
    events: Partial<SeriesRelayEvents>,
  ) {
    this.#source = source;
    this.#destination = destination;
    this.#seriesId = seriesId;
    this.#retry = retry;
    this.#events = events;
  }

  /** The source refused the writes (no permission): nothing is mirrored. */
  get denied(): boolean {
    return this.#denied;
  }

  /** Mirrors what changed; returns the destination's receivers of this series. */
  async sync(): Promise<SeriesReceiverRecord[]> {
    const { signal } = this.#retry;
    const found: SeriesReceiverRecord[] = [];
    const keys: string[] = [];
    await withRetry(async () => {
      keys.length = 0;
      for await (const { key } of this.#destination.list(SERIES_RECEIVERS_PREFIX, { signal })) if (key.endsWith('.json')) keys.push(key);
    }, this.#retry);
    for (const key of keys) {
      const object = await withRetry(() => this.#destination.get(key, { signal }), this.#retry);
      if (!object) continue;
      let record: SeriesReceiverRecord;
      try {
        record = decodeRecord(object.body, `${this.#destination.description}/${key}`, parseSeriesReceiver);
      } catch {
        continue; // not a receiver's record: nothing to mirror
      }
      if (record.seriesId !== this.#seriesId || `${SERIES_RECEIVERS_PREFIX}${record.receiverId}.json` !== key) continue;
      found.push(record);
      if (!this.#denied) await this.#mirror(key, record, Buffer.from(object.body));
    }
    return found;
  }

  async #mirror(key: string, record: SeriesReceiverRecord, body: Buffer): Promise<void> {
    const id = record.receiverId;
    if (this.#refused.has(id) || this.#mirrored.get(id)?.equals(body)) return;
    const { signal } = this.#retry;
    try {
      if (!this.#mirrored.has(id)) {
        // The first time this run: is the key free, or our own earlier copy?
        const there = await withRetry(() => this.#source.get(key, { signal }), this.#retry);
        if (there && !this.#isMirrorOf(there.body, record)) {
          this.#refused.add(id);
          this.#events.warning?.(
            `receiver ${id} at ${this.#destination.description} is not mirrored to ${this.#source.description}/${key}: another receiver of the same id (another host or target) is registered there; give the receiver behind the relay another --receiver-id`,
          );
          return;
        }
        if (there && Buffer.from(there.body).equals(body)) {
          this.#mirrored.set(id, body);
          return;
        }
      }
      await withRetry(() => this.#source.put(key, body, { signal }), this.#retry);
      this.#mirrored.set(id, body);
      this.#events.mirrored?.(record);
    } catch (error) {
      if (signal.aborted) throw error;
      if (error instanceof StoreError && error.kind === 'auth') this.#denied = true;
      if (this.#denied || !this.#warned) {
        this.#warned = true;
        this.#events.warning?.(
          `cannot mirror the receivers at ${this.#destination.description} to ${this.#source.description}/${SERIES_RECEIVERS_PREFIX} (${(error as Error).message.split('\n')[0]}): the sender daemon does not see them, so its pruning never releases the snapshots they still need, and replicate cutover at the source does not wait for them; give the relay write access to that prefix${this.#denied ? '' : ' (tried again at every poll)'}`,
        );
      }
    }
  }

  /** A record at the source with this receiver's id, host and target (an earlier run's copy), or of an earlier series. */
  #isMirrorOf(bytes: Uint8Array, record: SeriesReceiverRecord): boolean {
    try {
      const there = decodeRecord(bytes, 'mirror', parseSeriesReceiver);
      return there.seriesId !== record.seriesId || (there.host === record.host && there.dataset === record.dataset);
    } catch {
      return false;
    }
  }
}
