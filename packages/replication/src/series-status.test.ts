import { CodecPool, type ObjectStore, receiverKey } from '@bucketpipe/core';
import { MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeRecord } from './json-record.js';
import { streamPrefix } from './layout.js';
import { SERIES_RECEIVER_FORMAT, SERIES_RECEIVER_VERSION, type SeriesReceiverRecord, writeSeriesReceiver } from './series-receiver.js';
import { SeriesStatusReader } from './series-status.js';
import { TEST_CHUNK, TestSeries, testSnapshot } from './series-test-kit.js';

const codec = new CodecPool(2);
afterAll(() => codec.close());

function receiver(patch: Partial<SeriesReceiverRecord>): SeriesReceiverRecord {
  return {
    format: SERIES_RECEIVER_FORMAT,
    version: SERIES_RECEIVER_VERSION,
    seriesId: 'series-1',
    receiverId: 'dr-1',
    host: 'dst',
    dataset: 'tank/dst',
    state: 'waiting',
    applied: null,
    updatedAt: new Date().toISOString(),
    ...patch,
  };
}

/** Counts the GETs in flight at once. */
class InFlight implements ObjectStore {
  readonly description: string;
  now = 0;
  max = 0;
  gets = 0;
  constructor(readonly inner: ObjectStore) {
    this.description = inner.description;
  }
  async get(key: string, options?: Parameters<ObjectStore['get']>[1]) {
    this.gets++;
    this.now++;
    this.max = Math.max(this.max, this.now);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      return await this.inner.get(key, options);
    } finally {
      this.now--;
    }
  }
  put: ObjectStore['put'] = (...args) => this.inner.put(...args);
  head: ObjectStore['head'] = (key) => this.inner.head(key);
  list: ObjectStore['list'] = (...args) => this.inner.list(...args);
  delete: ObjectStore['delete'] = (keys) => this.inner.delete(keys);
  close = async () => {};
}

describe('SeriesStatusReader', () => {
  it('shows each stream (from → to, sizes, state; "not started" before its manifest), totals, the sender and each receiver with its lag', async () => {
    const store = new MemoryStore('memory://series');
    const series = new TestSeries(store);
    await series.start();
    const data = [randomBytes(3 * TEST_CHUNK + 10, 1), randomBytes(TEST_CHUNK, 2)];
    for (const [seq, bytes] of data.entries()) {
      await series.register(seq);
      await series.send(seq, pieces(bytes, 4096), codec);
    }
    await series.register(2); // registered, its sender has not written a manifest yet
    const now = Date.now();
    const applied = { seq: 1, snapshot: 's1', guid: '5001', creation: Math.round(now / 1000) - 90, at: new Date(now).toISOString() };
    await writeSeriesReceiver(store, receiver({ state: 'receiving', receiving: 2, applied }));
    await writeSeriesReceiver(store, receiver({ receiverId: 'other-series', seriesId: 'series-0' }));

    const status = await new SeriesStatusReader(store).read({ show: 20 }, now);
    expect(status?.streams.map((s) => [s.seq, s.record?.from?.name ?? null, s.record?.to.name, s.state])).toEqual([
      [0, null, 's0', 'complete'],
      [1, 's0', 's1', 'complete'],
      [2, 's1', 's2', 'not started'],
    ]);
    expect(status?.streams[0]?.manifest?.rawBytes).toBe(data[0]?.length);
    expect(status?.totals).toMatchObject({
      streams: 3,
      rawBytes: 4 * TEST_CHUNK + 10,
      chunks: 5,
      byState: { complete: 2, sending: 0, aborted: 0, 'not started': 1 },
    });
    expect(status?.sender.state).toBe('live');
    // The receiver of another series at the same URL is left out; the lag is now − applied.creation.
    expect(status?.receivers.map((r) => [r.record.receiverId, r.lagSeconds])).toEqual([['dr-1', 90]]);
    expect(status?.finished).toBe(false);
  });

  it('shows only the newest N streams but totals all of them; a refresh reads only what may have changed', async () => {
    const memory = new MemoryStore('memory://long');
    const series = new TestSeries(memory);
    await series.start();
    const streams = 300;
    for (let seq = 0; seq < streams; seq++) {
      await series.register(seq);
      // A stored manifest without chunks is enough for the totals: copy one small stream's manifest.
      if (seq === 0) await series.send(0, pieces(randomBytes(100, 3), 100), codec);
      else await memory.put(`${streamPrefix(seq)}manifest.json`, memory.peek(`${streamPrefix(0)}manifest.json`) as Uint8Array);
    }
    const store = new InFlight(memory);
    const reader = new SeriesStatusReader(store);
    const status = await reader.read({ show: 20, concurrency: 16 });
    expect(status?.streams.map((s) => s.seq)).toEqual(Array.from({ length: 20 }, (_, i) => streams - 20 + i));
    expect(status?.totals).toMatchObject({ streams, rawBytes: streams * 100, byState: { complete: streams } });
    expect(store.max).toBeLessThanOrEqual(16);
    expect(store.max).toBeGreaterThan(1);
    // series.json + 300 manifests + 20 records + the receivers listing's reads (none).
    expect(store.gets).toBe(1 + streams + 20);

    store.gets = 0;
    await reader.read({ show: 20 });
    expect(store.gets).toBe(1); // complete manifests and records are not read again

    const all = await reader.read({ show: 'all' });
    expect(all?.streams).toHaveLength(streams);
  });

  it('follows a receiver inside the stream it is applying, and is finished once the final stream is complete and every receiver applied it', async () => {
    const store = new MemoryStore('memory://final');
    const series = new TestSeries(store);
    await series.start();
    await series.register(0);
    await series.send(0, pieces(randomBytes(2 * TEST_CHUNK, 4), 4096), codec);
    await series.register(1, { final: true, to: testSnapshot(1) });
    await series.send(1, pieces(randomBytes(TEST_CHUNK, 5), 4096), codec);
    await writeSeriesReceiver(store, receiver({ state: 'receiving', receiving: 1 }));
    const manifest = JSON.parse(Buffer.from(store.peek(`${streamPrefix(1)}manifest.json`) as Uint8Array).toString()) as {
      streamId: string;
    };
    const cursor = {
      format: 'bucketpipe.receiver',
      version: 1,
      receiverId: 'dr-1',
      streamId: manifest.streamId,
      position: 1,
      rawBytes: 65536,
    };
    await store.put(streamPrefix(1) + receiverKey('dr-1'), encodeRecord({ ...cursor, state: 'receiving' }));

    const reader = new SeriesStatusReader(store);
    const during = await reader.read({ show: 20 });
    expect(during?.receivers[0]?.cursor?.position).toBe(1);
    expect(during?.receivers[0]?.receivingManifest?.watermark).toBe(1);
    expect(during?.sender.state).toBe('finished');
    expect(during?.finished).toBe(false);

    const applied = { seq: 1, snapshot: 's1', guid: '5001', creation: 1_700_000_060, at: new Date().toISOString() };
    await writeSeriesReceiver(store, receiver({ state: 'done', applied }));
    expect((await reader.read({ show: 20 }))?.finished).toBe(true);
  });

  it('says the sender is stale when its heartbeat is over 60 s old, and null when there is no series', async () => {
    const store = new MemoryStore('memory://stale');
    expect(await new SeriesStatusReader(store).read({ show: 20 })).toBeNull();
    const old = new Date(Date.now() - 61_000).toISOString();
    await new TestSeries(store).start({ sender: { id: 'src:1', host: 'src', pid: 1, startedAt: old, heartbeatAt: old } });
    const status = await new SeriesStatusReader(store).read({ show: 20 });
    expect(status?.sender.state).toBe('stale');
    expect(status?.finished).toBe(false);
  });
});
