// Test support: writes a series the way the sender daemon does, without ZFS. Not exported.
import {
  type CodecPool,
  chunkObjectBound,
  MIN_CHUNK_SIZE,
  type ObjectStore,
  PrefixedStore,
  type RetryPolicy,
  type SendSummary,
  send,
} from '@bucketpipe/core';
import { streamPrefix } from './layout.js';
import { createSeries, readSeries, replaceSeries, SERIES_FORMAT, SERIES_VERSION, type SeriesRecord } from './series-record.js';
import type { SnapshotRef } from './snapshot-ref.js';
import { createStreamRecord, STREAM_RECORD_FORMAT, STREAM_RECORD_VERSION, type StreamRecord } from './stream-record.js';

export const TEST_CHUNK = MIN_CHUNK_SIZE;
export const testRetry: RetryPolicy = { attempts: 6, baseDelayMs: 1, maxDelayMs: 4 };

/** Snapshot `n` of the test series: @s<n>, created a minute after the one before. */
export function testSnapshot(n: number, creation = 1_700_000_000 + n * 60): SnapshotRef {
  return { name: `s${n}`, guid: String(5000 + n), creation };
}

/** A series at `store`'s root written step by step like the sender daemon: record, registration, stream. */
export class TestSeries {
  readonly store: ObjectStore;
  readonly seriesId: string;

  constructor(store: ObjectStore, seriesId = 'series-1') {
    this.store = store;
    this.seriesId = seriesId;
  }

  async start(patch: Partial<SeriesRecord> = {}): Promise<void> {
    const now = new Date().toISOString();
    const record: SeriesRecord = {
      format: SERIES_FORMAT,
      version: SERIES_VERSION,
      seriesId: this.seriesId,
      createdAt: now,
      updatedAt: now,
      dataset: 'tank/src',
      sender: { id: 'src:1', host: 'src', pid: 1, startedAt: now, heartbeatAt: now },
      streams: 0,
      ...patch,
    };
    if ((await createSeries(this.store, record)) === null) throw new Error('a series is there already');
  }

  /** Writes stream `seq`'s record (from @s<seq-1> to @s<seq>), then counts it in the series record. */
  async register(seq: number, options: { final?: boolean; to?: SnapshotRef } = {}): Promise<StreamRecord> {
    const to = options.to ?? testSnapshot(seq);
    const record: StreamRecord = {
      format: STREAM_RECORD_FORMAT,
      version: STREAM_RECORD_VERSION,
      seriesId: this.seriesId,
      seq,
      createdAt: new Date().toISOString(),
      dataset: 'tank/src',
      from: seq === 0 ? null : testSnapshot(seq - 1),
      to,
      sendFlags: [],
      final: options.final === true,
    };
    await createStreamRecord(this.store, record);
    await this.update((series) => ({
      ...series,
      streams: seq + 1,
      sourceNewest: to,
      ...(options.final ? { final: { seq, snapshot: to.name, at: new Date().toISOString() } } : {}),
    }));
    return record;
  }

  async update(change: (series: SeriesRecord) => SeriesRecord): Promise<void> {
    const found = await readSeries(this.store);
    if (!found) throw new Error('no series');
    if ((await replaceSeries(this.store, change(found.value), found.etag)) === null) throw new Error('lost a race');
  }

  /** Sends `source` as stream `seq` with the core sender, as the daemon does. */
  send(seq: number, source: AsyncIterable<Uint8Array>, codec: CodecPool, more: { manifestIntervalMs?: number } = {}): Promise<SendSummary> {
    return send({
      store: this.stream(seq),
      source,
      chunkSize: TEST_CHUNK,
      level: 1,
      concurrency: 4,
      bufferBytes: 8 * chunkObjectBound(TEST_CHUNK),
      manifestIntervalMs: more.manifestIntervalMs ?? 5,
      heartbeatIntervalMs: 1_000,
      codec,
      retry: testRetry,
    });
  }

  stream(seq: number): ObjectStore {
    return new PrefixedStore(this.store, streamPrefix(seq));
  }
}
