import { setTimeout as sleep } from 'node:timers/promises';
import { CodecPool, chunkObjectBound, type MissingChunkPolicy, receive } from '@bucketpipe/core';
import { FaultyStore, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { readCutoverRequest, requestCutover } from './cutover-request.js';
import { SERIES_KEY, STREAM_RECORD_KEY, seriesReceiverKey, streamPrefix } from './layout.js';
import {
  readSeriesReceiver,
  SERIES_RECEIVER_FORMAT,
  SERIES_RECEIVER_VERSION,
  type SeriesReceiverRecord,
  writeSeriesReceiver,
} from './series-receiver.js';
import { readSeries } from './series-record.js';
import { relaySeries, type SeriesRelayOptions } from './series-relay.js';
import { TEST_CHUNK, TestSeries, testRetry } from './series-test-kit.js';

const codec = new CodecPool(2);
afterAll(() => codec.close());
const fastMissing: MissingChunkPolicy = { timeoutMs: 300, firstDelayMs: 5, maxDelayMs: 50 };

function relayOptions(source: MemoryStore | FaultyStore, destination: MemoryStore | FaultyStore, more: Partial<SeriesRelayOptions> = {}) {
  return { source, destination, concurrency: 4, pollIntervalMs: 5, retry: testRetry, missingChunk: fastMissing, ...more };
}

/** A paced source: the relay and the receivers see each stream while it is written. */
async function* paced(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  for await (const piece of pieces(bytes, 16_384)) {
    await sleep(1);
    yield piece;
  }
}

function receiverRecord(patch: Partial<SeriesReceiverRecord>): SeriesReceiverRecord {
  return {
    format: SERIES_RECEIVER_FORMAT,
    version: SERIES_RECEIVER_VERSION,
    seriesId: 'series-1',
    receiverId: 'gcp-1',
    host: 'gcp-vm',
    dataset: 'tank/dst',
    state: 'waiting',
    applied: null,
    updatedAt: new Date().toISOString(),
    ...patch,
  };
}

/** Receives stream `seq` from the destination, the way the receiver daemon does underneath. */
function receiveStream(destination: MemoryStore, seq: number) {
  const sink = new MemorySink();
  const done = receive({
    store: new TestSeries(destination).stream(seq),
    sink,
    concurrency: 4,
    bufferBytes: 8 * (TEST_CHUNK + chunkObjectBound(TEST_CHUNK)),
    pollIntervalMs: 5,
    receiverId: 'gcp-1',
    codec,
    retry: testRetry,
    missingChunk: fastMissing,
  });
  return { sink, done };
}

const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) => a !== undefined && b !== undefined && Buffer.from(a).equals(b);

describe('relaySeries', () => {
  it('relays a live series stream after stream; a receiver at the destination follows each; receiver records are mirrored back', async () => {
    const near = new MemoryStore('memory://near');
    const far = new MemoryStore('memory://far');
    const series = new TestSeries(near);
    await series.start();
    const data = [randomBytes(5 * TEST_CHUNK + 99, 11), randomBytes(2 * TEST_CHUNK, 12), randomBytes(TEST_CHUNK / 2, 13)];
    const mirrored: string[] = [];
    const relaying = relaySeries(relayOptions(near, far, { events: { mirrored: (r) => mirrored.push(`${r.receiverId}:${r.state}`) } }));
    relaying.catch(() => {});

    for (const [seq, bytes] of data.entries()) {
      if (seq === data.length - 1) await requestCutover(near, 'series-1');
      await series.register(seq, { final: seq === data.length - 1 });
      const received = receiveStream(far, seq);
      await series.send(seq, paced(bytes), codec);
      const summary = await received.done;
      expect(same(received.sink.bytes(), bytes), `stream ${seq}`).toBe(true);
      expect(summary.rawBytes).toBe(bytes.length);
      // The destination counted the stream before its chunks arrived: the receiver found it there.
      const applied = {
        seq,
        snapshot: `s${seq}`,
        guid: String(5000 + seq),
        creation: 1_700_000_000 + seq * 60,
        at: new Date().toISOString(),
      };
      await writeSeriesReceiver(far, receiverRecord({ state: seq === data.length - 1 ? 'done' : 'waiting', applied }));
    }
    const summary = await relaying;
    expect(summary).toMatchObject({
      seriesId: 'series-1',
      streams: 3,
      streamsRelayed: 3,
      rawBytes: data.reduce((n, d) => n + d.length, 0),
    });
    // Verbatim copies: the stream records and every stream's manifest.
    for (let seq = 0; seq < 3; seq++) {
      for (const key of [STREAM_RECORD_KEY, 'manifest.json']) {
        expect(same(far.peek(streamPrefix(seq) + key), near.peek(streamPrefix(seq) + key)), `${seq} ${key}`).toBe(true);
      }
    }
    const copy = await readSeries(far);
    const source = await readSeries(near);
    expect(copy?.value).toEqual(source?.value);
    // The relay ran until the receiver behind it was done, and that record is at the source too.
    expect((await readSeriesReceiver(near, 'gcp-1'))?.state).toBe('done');
    expect(same(near.peek(seriesReceiverKey('gcp-1')), far.peek(seriesReceiverKey('gcp-1')))).toBe(true);
    expect(mirrored.at(-1)).toBe('gcp-1:done');
    // The cut-over request went along with the final stream: the receiver there times the cut-over by it.
    expect(await readCutoverRequest(far, 'series-1')).toEqual(await readCutoverRequest(near, 'series-1'));
  });

  it('counts a stream at the destination only after the one before it is relayed whole; final only with the final stream', async () => {
    const near = new MemoryStore('memory://near');
    const farMemory = new MemoryStore('memory://far');
    const far = new FaultyStore(farMemory);
    const series = new TestSeries(near);
    await series.start();
    const counted: number[] = [];
    const written: number[] = [];
    far.inject({
      op: 'put',
      key: SERIES_KEY,
      before: (_request, body) => {
        const record = JSON.parse(Buffer.from(body as Uint8Array).toString()) as { streams: number; final?: unknown };
        written.push(record.streams);
        if (record.streams > (counted.at(-1) ?? 0)) {
          // Every stream before the newly counted one is complete at the destination already.
          for (let seq = 0; seq < record.streams - 1; seq++) {
            const manifest = farMemory.peek(`${streamPrefix(seq)}manifest.json`);
            expect(manifest && JSON.parse(Buffer.from(manifest).toString()).state, `stream ${seq}`).toBe('complete');
          }
          expect(farMemory.has(streamPrefix(record.streams - 1) + STREAM_RECORD_KEY)).toBe(true);
          counted.push(record.streams);
        }
        expect(record.final !== undefined).toBe(record.streams === 3);
      },
    });
    for (let seq = 0; seq < 3; seq++) {
      await series.register(seq, { final: seq === 2 });
      await series.send(seq, pieces(randomBytes(TEST_CHUNK * 2, 20 + seq), 8192), codec);
    }
    await relaySeries(relayOptions(near, far));
    expect(counted).toEqual([1, 2, 3]);
    // The series is there, counting no stream, before the first stream is: receivers find it and wait.
    expect(written[0]).toBe(0);
  });

  it('restarted, carries on from the destination series record, copying only what is missing', async () => {
    const near = new MemoryStore('memory://near');
    const far = new MemoryStore('memory://far');
    const series = new TestSeries(near);
    await series.start();
    const data = [randomBytes(6 * TEST_CHUNK, 31), randomBytes(6 * TEST_CHUNK, 32), randomBytes(TEST_CHUNK, 33)];
    await series.register(0);
    await series.send(0, pieces(data[0] as Uint8Array, 8192), codec);
    await series.register(1);
    await series.send(1, pieces(data[1] as Uint8Array, 8192), codec);

    // The first run stops in stream 1 (interrupted), after a few of its chunks.
    const interrupt = new AbortController();
    const farFaulty = new FaultyStore(far);
    farFaulty.inject({ op: 'put', key: `${streamPrefix(1)}chunks/000000000003`, before: () => interrupt.abort(new Error('stopped')) });
    await expect(relaySeries(relayOptions(near, farFaulty, { signal: interrupt.signal }))).rejects.toThrow('stopped');
    expect((await readSeries(far))?.value.streams).toBe(2);
    expect(far.has(`${streamPrefix(0)}manifest.json`)).toBe(true);

    await series.register(2, { final: true });
    await series.send(2, pieces(data[2] as Uint8Array, 8192), codec);
    const second = await relaySeries(relayOptions(near, far));
    expect(second.streamsRelayed).toBe(2); // stream 1 resumed, stream 2
    // Stream 0 is not copied again; stream 1 from its destination manifest on (none was published:
    // the source's was complete, 6 chunks, and goes out only once all 6 are there), then stream 2.
    expect(second.chunksCopied).toBe(6 + 1);
    for (const [seq, bytes] of data.entries()) {
      const received = receiveStream(far, seq);
      await received.done;
      expect(same(received.sink.bytes(), bytes), `stream ${seq}`).toBe(true);
    }
  });

  it('refuses a destination holding another series, and writes nothing', async () => {
    const near = new MemoryStore('memory://near');
    const far = new MemoryStore('memory://far');
    await new TestSeries(near, 'series-a').start();
    await new TestSeries(far, 'series-b').start();
    const before = far.keys();
    await expect(relaySeries(relayOptions(near, far))).rejects.toMatchObject({ code: 'BP_RELAY_OTHER_SERIES' });
    expect(far.keys()).toEqual(before);
  });

  it('without write access to the source receivers/, warns once and still relays the series to its end', async () => {
    const nearMemory = new MemoryStore('memory://near');
    const near = new FaultyStore(nearMemory);
    near.inject({ op: 'put', key: /^receivers\//, fail: 'auth' });
    const far = new MemoryStore('memory://far');
    const series = new TestSeries(nearMemory);
    await series.start();
    await series.register(0, { final: true });
    await series.send(0, pieces(randomBytes(TEST_CHUNK, 41), 8192), codec);
    await writeSeriesReceiver(far, receiverRecord({ state: 'receiving', receiving: 0 })); // never done: the relay must not wait for it
    const warnings: string[] = [];
    const summary = await relaySeries(relayOptions(near, far, { events: { warning: (text) => warnings.push(text) } }));
    expect(summary.streams).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot mirror the receivers .* pruning never releases/);
    expect(nearMemory.keys('receivers/')).toEqual([]);
  });

  it('never overwrites a source receiver of the same id that is another receiver', async () => {
    const near = new MemoryStore('memory://near');
    const far = new MemoryStore('memory://far');
    const series = new TestSeries(near);
    await series.start();
    await series.register(0, { final: true });
    await series.send(0, pieces(randomBytes(TEST_CHUNK, 51), 8192), codec);
    const local = receiverRecord({ host: 'aws-dr', dataset: 'tank/dr', state: 'done' });
    await writeSeriesReceiver(near, local);
    const applied = { seq: 0, snapshot: 's0', guid: '5000', creation: 1_700_000_000, at: new Date().toISOString() };
    await writeSeriesReceiver(far, receiverRecord({ state: 'done', applied }));
    const warnings: string[] = [];
    await relaySeries(relayOptions(near, far, { events: { warning: (text) => warnings.push(text) } }));
    expect(await readSeriesReceiver(near, 'gcp-1')).toEqual(local);
    expect(warnings.join('\n')).toMatch(/receiver gcp-1 .* is not mirrored .* another --receiver-id/);
  });
});
