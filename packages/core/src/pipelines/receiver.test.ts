import { setTimeout as sleep } from 'node:timers/promises';
import { FaultyStore, flipByte, MemorySink, MemoryStore, pieces, randomBytes, truncate } from '@bucketpipe/store-testkit';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { chunkObjectBound } from '../codec/codec.js';
import { IntegrityError, SinkFailedError, StreamConflictError } from '../errors.js';
import { chunkKey, HEADER_FRAME_LENGTH } from '../protocol/chunk.js';
import { encodeManifest, MANIFEST_KEY, type Manifest } from '../protocol/manifest.js';
import { receiverKey } from '../protocol/receiver-cursor.js';
import { background, CHUNK, craftChunk, digestOf, manifestOf, paced, pipelineTestKit, same, TEST_RECEIVER } from './pipeline-test-kit.js';
import { receive, receiveWindow } from './receiver.js';
import { type SendSummary, send } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources,
// so that the StoreError it throws is the class the pipelines under test check with instanceof.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const CHUNK_KEYS = /^chunks\//;
const { sendOptions, receiveOptions } = pipelineTestKit();

/** A complete stream of `data` in a fresh MemoryStore. */
async function storedStream(data: Uint8Array): Promise<{ store: MemoryStore; sent: SendSummary }> {
  const store = new MemoryStore();
  const sent = await send(sendOptions(store, pieces(data, 10_007)));
  return { store, sent };
}

async function rewriteManifest(store: MemoryStore, change: (manifest: Manifest) => Manifest): Promise<void> {
  await store.put(MANIFEST_KEY, encodeManifest(change(await manifestOf(store))));
}

async function cursorOf(store: MemoryStore): Promise<Record<string, unknown>> {
  const bytes = store.peek(receiverKey(TEST_RECEIVER));
  return bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>) : {};
}

describe('a receiver following a live sender', () => {
  it('started before the sender, waits for the stream and receives it byte for byte', async () => {
    const data = randomBytes(10 * CHUNK + 3_333, 31);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const waiting: Array<string | null> = [];
    const receiving = background(receive(receiveOptions(store, sink, { onWaiting: (what) => waiting.push(what) })));
    await vi.waitFor(() => expect(store.count('get', MANIFEST_KEY)).toBeGreaterThanOrEqual(3));
    expect(sink.writes).toBe(0);
    const sent = await send(sendOptions(memory, paced(data, 16_384, 1)));
    const received = await receiving;
    expect(same(sink.bytes(), data), 'identical bytes').toBe(true);
    expect(received).toMatchObject({ streamId: sent.streamId, chunks: 11, rawBytes: data.length, digest: digestOf(data) });
    expect(sink.finished).toBe(true);
    expect(sink.aborted).toBe(false);
    expect(waiting[0]).toContain('the stream to start');
    expect(await cursorOf(memory)).toMatchObject({ streamId: sent.streamId, position: 11, rawBytes: data.length, state: 'done' });
  });

  it('receives a stream whose sender is slower than the polling, without fetching a chunk twice', async () => {
    const data = randomBytes(6 * CHUNK + 17, 32);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const sending = background(send(sendOptions(memory, paced(data, CHUNK / 2, 8))));
    const received = await receive(receiveOptions(store, sink, { pollIntervalMs: 3 }));
    await sending;
    expect(received.digest).toBe(digestOf(data));
    for (let i = 0; i < 7; i++) expect(store.count('get', chunkKey(i)), chunkKey(i)).toBe(1);
  });
});

describe('requests per chunk', () => {
  it('for a stream received after completion: one manifest read, one GET per chunk, nothing else', async () => {
    const chunks = 20;
    const data = randomBytes(chunks * CHUNK - 1, 33);
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink));
    expect(same(sink.bytes(), data)).toBe(true);
    const gets = store.count('get');
    console.info(`requests per chunk, complete stream: ${(gets / chunks).toFixed(3)} GET (${chunks} chunks, ${gets} GETs)`);
    expect(store.count('get', MANIFEST_KEY)).toBe(1);
    expect(store.count('get', CHUNK_KEYS)).toBe(chunks);
    expect(gets).toBe(chunks + 1);
    expect(store.counts.head + store.counts.list + store.counts.delete).toBe(0);
    // Its own cursor: published when it starts and when it ends, and at most once a second between.
    expect(store.count('put', receiverKey(TEST_RECEIVER))).toBeGreaterThanOrEqual(1);
    expect(store.count('put', receiverKey(TEST_RECEIVER))).toBeLessThanOrEqual(3);
    expect(store.count('put')).toBe(store.count('put', receiverKey(TEST_RECEIVER)));
  });

  it('for a stream received live: one GET per chunk, plus manifest polls bounded by the poll interval', async () => {
    const chunks = 16;
    const data = randomBytes(chunks * CHUNK, 34);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const pollIntervalMs = 10;
    const started = performance.now();
    const receiving = background(receive(receiveOptions(store, sink, { pollIntervalMs })));
    await send(sendOptions(memory, paced(data, CHUNK / 4, 2), { manifestIntervalMs: 10 }));
    await receiving;
    const elapsedMs = performance.now() - started;
    expect(same(sink.bytes(), data)).toBe(true);
    const manifestGets = store.count('get', MANIFEST_KEY);
    const chunkGets = store.count('get', CHUNK_KEYS);
    console.info(
      `requests per chunk, live stream: ${((manifestGets + chunkGets) / chunks).toFixed(3)} GET (${chunks} chunks, ${chunkGets} chunk GETs, ${manifestGets} manifest GETs in ${Math.round(elapsedMs)} ms at a ${pollIntervalMs} ms poll interval)`,
    );
    expect(chunkGets).toBe(chunks);
    expect(manifestGets, 'it followed the stream').toBeGreaterThanOrEqual(2);
    // At most one read when it starts and one per poll interval after (it sleeps between polls).
    expect(manifestGets).toBeLessThanOrEqual(2 + Math.ceil(elapsedMs / pollIntervalMs));
    expect(store.counts.head + store.counts.list + store.counts.delete).toBe(0);
  });
});

describe('backpressure', () => {
  it('behind a live sender, reads the manifest again before it has started every chunk the last one counted, and not while far behind', async () => {
    const chunks = 40;
    const counted = 22;
    const data = randomBytes(chunks * CHUNK, 36);
    const { store: memory } = await storedStream(data);
    const complete = await manifestOf(memory);
    await rewriteManifest(memory, (manifest) => {
      const { final: _final, ...live } = manifest;
      return { ...live, state: 'sending', watermark: counted, rawBytes: counted * CHUNK };
    });
    const store = new FaultyStore(memory);
    store.inject({ op: 'get', key: CHUNK_KEYS, delayMs: 100 });
    const chunkGetsAtManifestReads: number[] = [];
    store.inject({
      op: 'get',
      key: MANIFEST_KEY,
      before: async () => {
        chunkGetsAtManifestReads.push(store.count('get', CHUNK_KEYS));
        // The sender completes the stream as soon as the receiver has looked again.
        if (chunkGetsAtManifestReads.length === 2) await memory.put(MANIFEST_KEY, encodeManifest(complete));
      },
    });
    const window = 4;
    const bufferBytes = window * (CHUNK + chunkObjectBound(CHUNK));
    await receive(receiveOptions(store, new MemorySink(), { bufferBytes, pollIntervalMs: 5 }));
    const [first, second] = chunkGetsAtManifestReads;
    expect(first, 'the first read comes before any chunk').toBe(0);
    // Not while far behind: downloads finish in waves of 4 here (100 ms each), so it looks again
    // within a wave of having fewer than a window of counted chunks left to start.
    expect(second).toBeGreaterThanOrEqual(counted - 2 * window);
    // But before the last counted chunk was started: the next ones are known before the window runs dry.
    expect(second).toBeLessThan(counted);
  });

  it('a blocked sink stops the downloads once the buffer is full', async () => {
    const chunks = 40;
    const data = randomBytes(chunks * CHUNK, 35);
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    sink.hold();
    const window = 4; // chunks of memory the receiver may hold
    const receiving = background(receive(receiveOptions(store, sink, { bufferBytes: window * (CHUNK + chunkObjectBound(CHUNK)) })));
    await vi.waitFor(() => expect(store.count('get', CHUNK_KEYS)).toBe(window));
    // Give it every chance to run further ahead.
    await sleep(150);
    expect(store.count('get', CHUNK_KEYS), 'chunk GETs while the sink is blocked').toBe(window);
    expect(sink.writes).toBe(0);
    sink.release();
    await receiving;
    expect(store.count('get', CHUNK_KEYS)).toBe(chunks);
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('reads every chunk object into one of a few reused buffers, never a fresh one per chunk', async () => {
    const chunks = 30;
    const data = randomBytes(chunks * CHUNK, 37);
    const { store: memory } = await storedStream(data);
    const window = 3;
    let withoutBuffer = 0;
    const buffers = new Set<ArrayBufferLike>();
    const get = memory.get.bind(memory);
    memory.get = async (key, options) => {
      if (CHUNK_KEYS.test(key)) {
        if (options?.into) buffers.add(options.into.buffer);
        else withoutBuffer++;
      }
      return get(key, options);
    };
    const sink = new MemorySink();
    await receive(receiveOptions(memory, sink, { bufferBytes: window * (CHUNK + chunkObjectBound(CHUNK)) }));
    expect(same(sink.bytes(), data)).toBe(true);
    expect(withoutBuffer).toBe(0);
    // The slabs are shared with the codec workers, so a buffer keeps its identity through decoding.
    expect(buffers.size).toBeGreaterThan(0);
    expect(buffers.size).toBeLessThanOrEqual(window);
  });

  it('holds the chunks waiting for a slow sink as stored, compressed: raw buffers only for the next few it takes', async () => {
    const chunks = 40;
    const data = randomBytes(chunks * CHUNK, 38);
    const { store: memory } = await storedStream(data);
    const bufferBytes = 16 * (CHUNK + chunkObjectBound(CHUNK));
    const { window, decodeAhead } = receiveWindow(bufferBytes, CHUNK, 2);
    expect(decodeAhead).toBe(2 + 2);
    // The pools commit a buffer by growing a shared WebAssembly memory by its size in 64 KiB pages.
    const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: { prototype: { grow(pages: number): number } } } }).WebAssembly;
    const grows = vi.spyOn(Memory.prototype, 'grow');
    try {
      const sink = new MemorySink();
      const write = sink.write.bind(sink);
      sink.write = async (bytes) => {
        await sleep(3);
        await write(bytes);
      };
      await receive(receiveOptions(memory, sink, { concurrency: 4, bufferBytes }));
      expect(same(sink.bytes(), data)).toBe(true);
      const pages = (size: number) => Math.ceil(size / 65_536);
      expect(pages(CHUNK)).not.toBe(pages(chunkObjectBound(CHUNK)));
      const count = (size: number) => grows.mock.calls.filter(([grown]) => grown === pages(size)).length;
      // The store outruns the sink, yet never has to wait for a download: objects for the
      // decodings and two more are held ahead, not the window's (the receiver once filled it,
      // and decoded every object at once, committing a raw buffer for each).
      expect(window).toBeGreaterThan(2 * (decodeAhead + 2));
      expect(count(chunkObjectBound(CHUNK))).toBeGreaterThan(decodeAhead);
      expect(count(chunkObjectBound(CHUNK))).toBeLessThanOrEqual(decodeAhead + 2);
      expect(count(CHUNK)).toBeGreaterThan(0);
      expect(count(CHUNK)).toBeLessThanOrEqual(decodeAhead);
    } finally {
      grows.mockRestore();
    }
  });

  it('a store slower than the sink gets more downloads ahead, up to the window', async () => {
    const chunks = 48;
    const data = randomBytes(chunks * CHUNK, 39);
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const bufferBytes = 16 * (CHUNK + chunkObjectBound(CHUNK));
    const { window, decodeAhead } = receiveWindow(bufferBytes, CHUNK, 2);
    let maxAhead = 0;
    store.inject({
      op: 'get',
      key: CHUNK_KEYS,
      delayMs: 25,
      before: () => {
        maxAhead = Math.max(maxAhead, store.count('get', CHUNK_KEYS) - sink.writes);
      },
    });
    await receive(receiveOptions(store, sink, { concurrency: 64, bufferBytes }));
    expect(same(sink.bytes(), data)).toBe(true);
    // The sink waited for downloads the read-ahead had held back: it grew past its start.
    expect(maxAhead).toBeGreaterThan(decodeAhead + 2);
    expect(maxAhead).toBeLessThanOrEqual(window);
  });

  it('shares its buffer between raw chunks for the codec threads and the sink, and objects ahead', () => {
    const MiB = 1024 * 1024;
    // The defaults: 512 MiB, 16 MiB chunks, 2 codec threads.
    expect(receiveWindow(512 * MiB, 16 * MiB, 2)).toEqual({ window: 27, decodeAhead: 4 });
    expect(receiveWindow(512 * MiB, 16 * MiB, 16)).toEqual({ window: 16, decodeAhead: 15 });
    expect(receiveWindow(64 * MiB, 16 * MiB, 2)).toEqual({ window: 2, decodeAhead: 2 });
    for (const bufferBytes of [2 * CHUNK, 7 * CHUNK, 64 * CHUNK, 1000 * CHUNK]) {
      for (const threads of [1, 2, 8, 64]) {
        const { window, decodeAhead } = receiveWindow(bufferBytes, CHUNK, threads);
        expect(decodeAhead).toBeGreaterThanOrEqual(2);
        expect(window).toBeGreaterThanOrEqual(decodeAhead);
        if (bufferBytes >= 4 * chunkObjectBound(CHUNK)) {
          expect(decodeAhead * CHUNK + window * chunkObjectBound(CHUNK)).toBeLessThanOrEqual(bufferBytes);
        }
      }
    }
  });

  it('a slow sink keeps the downloads within the buffer all along', async () => {
    const chunks = 24;
    const data = randomBytes(chunks * CHUNK, 36);
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const window = 3;
    let maxAhead = 0;
    // Chunks downloaded but not yet written, each time one more is requested.
    store.inject({
      op: 'get',
      key: CHUNK_KEYS,
      before: () => {
        maxAhead = Math.max(maxAhead, store.count('get', CHUNK_KEYS) - sink.writes);
      },
    });
    const original = sink.write.bind(sink);
    sink.write = async (bytes) => {
      await sleep(3);
      await original(bytes);
    };
    await receive(receiveOptions(store, sink, { bufferBytes: window * (CHUNK + chunkObjectBound(CHUNK)) }));
    expect(same(sink.bytes(), data)).toBe(true);
    // The chunk being written holds its slab until the write returns: window chunks at most.
    expect(maxAhead).toBeLessThanOrEqual(window);
  });
});

describe('a damaged stream', () => {
  const chunks = 7;
  const bad = 3;
  const data = randomBytes(6 * CHUNK + 5_000, 37);
  let other: MemoryStore;

  beforeAll(async () => {
    other = (await storedStream(randomBytes(6 * CHUNK + 5_000, 38))).store;
  });

  const damages: Array<[string, string, (store: MemoryStore, streamId: string, index: number) => Promise<void>]> = [
    [
      'a flipped byte in its payload',
      'BP_CHUNK_CHECKSUM',
      async (store, _, index) => {
        const key = chunkKey(index);
        await store.put(key, flipByte(-7)(store.peek(key) ?? new Uint8Array(0)));
      },
    ],
    [
      'a flipped byte in its header',
      'BP_CHUNK_CORRUPT',
      async (store, _, index) => {
        const key = chunkKey(index);
        await store.put(key, flipByte(8 + 33)(store.peek(key) ?? new Uint8Array(0)));
      },
    ],
    [
      'a truncated object',
      'BP_CHUNK_CORRUPT',
      async (store, _, index) => {
        const key = chunkKey(index);
        await store.put(key, truncate(-100)(store.peek(key) ?? new Uint8Array(0)));
      },
    ],
    [
      'only part of its header',
      'BP_CHUNK_CORRUPT',
      async (store, _, index) => {
        const key = chunkKey(index);
        await store.put(key, truncate(HEADER_FRAME_LENGTH - 1)(store.peek(key) ?? new Uint8Array(0)));
      },
    ],
    [
      'the same chunk of another stream',
      'BP_CHUNK_FOREIGN',
      async (store, _, index) => {
        await store.put(chunkKey(index), other.peek(chunkKey(index)) ?? new Uint8Array(0));
      },
    ],
    [
      'another chunk of the same stream',
      'BP_CHUNK_MISPLACED',
      async (store, _, index) => {
        await store.put(chunkKey(index), store.peek(chunkKey(index - 1)) ?? new Uint8Array(0));
      },
    ],
    [
      'a valid chunk of the wrong (short) length',
      'BP_CHUNK_LENGTH',
      async (store, streamId, index) => {
        await store.put(chunkKey(index), craftChunk(streamId, index, data.subarray(index * CHUNK, index * CHUNK + 100)));
      },
    ],
    [
      'no chunk at all (bytes of something else)',
      'BP_CHUNK_CORRUPT',
      async (store, _, index) => {
        await store.put(chunkKey(index), randomBytes(5_000, 39));
      },
    ],
    [
      'nothing: the chunk is missing below the watermark',
      'BP_CHUNK_MISSING',
      async (store, _, index) => {
        await store.delete([chunkKey(index)]);
      },
    ],
  ];

  for (const at of [bad, chunks - 1]) {
    const where = at === chunks - 1 ? 'the last chunk' : `chunk ${at}`;

    it.each(damages)(`${where} with %s fails with %s, and no byte of it reaches the sink`, async (_, code, damage) => {
      const { store, sent } = await storedStream(data);
      await damage(store, sent.streamId, at);
      const sink = new MemorySink();
      const error = await receive(receiveOptions(store, sink)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IntegrityError);
      expect(error).toMatchObject({ code });
      // Everything before the bad chunk, nothing of it or after it.
      expect(sink.byteLength).toBe(at * CHUNK);
      expect(same(sink.bytes(), data.subarray(0, at * CHUNK)), 'the chunks before it, intact').toBe(true);
      expect(sink.aborted, 'sink aborted').toBe(true);
      expect(sink.finished, 'sink never finished').toBe(false);
      expect(await cursorOf(store)).toMatchObject({ state: 'failed' });
    });
  }

  it('reads a chunk that arrived damaged once more, and goes on when the second read is good', async () => {
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const fault = store.inject({ op: 'get', key: chunkKey(bad), nth: 1, corrupt: flipByte(-7) });
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink));
    expect(fault.hits).toBe(1);
    expect(store.count('get', chunkKey(bad))).toBe(2);
    expect(same(sink.bytes(), data)).toBe(true);
    expect(sink.finished).toBe(true);
  });

  it('waits for a chunk that is briefly missing (eventual consistency) and goes on', async () => {
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    store.inject({ op: 'get', key: chunkKey(bad), nth: 1, absent: true });
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink));
    expect(store.count('get', chunkKey(bad))).toBe(2);
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('waits, with capped backoff, for chunks a transfer service has not delivered yet, and says which one', async () => {
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    store.inject({ op: 'get', key: chunkKey(bad), nth: 1, times: 6, absent: true });
    const sink = new MemorySink();
    const waiting: Array<string | null> = [];
    await receive(receiveOptions(store, sink, { onWaiting: (what) => waiting.push(what) }));
    expect(store.count('get', chunkKey(bad))).toBe(7);
    expect(same(sink.bytes(), data)).toBe(true);
    expect(waiting).toContain(`chunk ${chunkKey(bad)} (counted by the manifest, not readable at ${memory.description} yet)`);
    expect(waiting.at(-1)).toBeNull();
  });

  it('retries transient GET failures of the manifest and chunks', async () => {
    const { store: memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    store.inject({ op: 'get', key: MANIFEST_KEY, nth: 1, times: 2, fail: 'transient' });
    store.inject({ op: 'get', key: chunkKey(2), nth: 1, fail: 'throttled' });
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('a stream that does not match the manifest’s checksum is written but never finished', async () => {
    const { store } = await storedStream(data);
    await rewriteManifest(store, (m) => ({ ...m, final: { chunks, rawBytes: data.length, digest: '0'.repeat(64) } }));
    const sink = new MemorySink();
    await expect(receive(receiveOptions(store, sink))).rejects.toMatchObject({ code: 'BP_STREAM_CHECKSUM' });
    expect(sink.byteLength).toBe(data.length);
    expect(sink.aborted).toBe(true);
    expect(sink.finished).toBe(false);
  });

  it('a stream its sender aborted is never finished', async () => {
    const { store } = await storedStream(data);
    await rewriteManifest(store, (m) => ({ ...m, state: 'aborted', abortReason: 'zfs send failed', final: undefined, watermark: 3 }));
    const sink = new MemorySink();
    const error = await receive(receiveOptions(store, sink)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_STREAM_ABORTED' });
    expect((error as Error).message).toContain('zfs send failed');
    expect(sink.byteLength).toBeLessThanOrEqual(3 * CHUNK);
    expect(sink.aborted).toBe(true);
    expect(sink.finished).toBe(false);
  });
});

describe('a bad manifest', () => {
  const cases: Array<[string, string, (manifest: Manifest) => Uint8Array]> = [
    ['not JSON', 'BP_MANIFEST_MALFORMED', () => Buffer.from('{"format": "bucketpipe.manifest", ')],
    ['a JSON array', 'BP_MANIFEST_MALFORMED', () => Buffer.from('[]')],
    ['another format', 'BP_MANIFEST_MALFORMED', (m) => encodeManifest({ ...m, format: 'something.else' as Manifest['format'] })],
    ['a negative watermark', 'BP_MANIFEST_MALFORMED', (m) => encodeManifest({ ...m, watermark: -1 })],
    ['complete without a final summary', 'BP_MANIFEST_MALFORMED', (m) => encodeManifest({ ...m, final: undefined })],
    ['a stream id that is not a UUID', 'BP_MANIFEST_MALFORMED', (m) => encodeManifest({ ...m, streamId: 'stream-1' })],
    ['a newer format version', 'BP_MANIFEST_VERSION', (m) => encodeManifest({ ...m, version: 2 as Manifest['version'] })],
  ];

  it.each(cases)('%s fails with %s before anything reaches the sink', async (_, code, make) => {
    const { store } = await storedStream(randomBytes(2 * CHUNK + 1, 40));
    await store.put(MANIFEST_KEY, make(await manifestOf(store)));
    const counted = new FaultyStore(store);
    const sink = new MemorySink();
    const error = await receive(receiveOptions(counted, sink)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamConflictError);
    expect(error).toMatchObject({ code });
    expect(sink.writes).toBe(0);
    expect(sink.aborted).toBe(true);
    expect(sink.finished).toBe(false);
    expect(counted.count('get', CHUNK_KEYS), 'no chunk was even downloaded').toBe(0);
  });

  it('a manifest replaced by another stream while receiving fails with BP_STREAM_REPLACED', async () => {
    const memory = new MemoryStore();
    const sink = new MemorySink();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    async function* source(): AsyncGenerator<Uint8Array> {
      yield randomBytes(2 * CHUNK, 41);
      await gate;
    }
    const sending = background(send(sendOptions(memory, source())));
    const receiving = background(receive(receiveOptions(memory, sink)));
    await vi.waitFor(() => expect(sink.writes).toBe(2));
    const other = (await storedStream(randomBytes(CHUNK, 42))).store;
    await memory.put(MANIFEST_KEY, other.peek(MANIFEST_KEY) ?? new Uint8Array(0));
    await expect(receiving).rejects.toMatchObject({ code: 'BP_STREAM_REPLACED' });
    expect(sink.aborted).toBe(true);
    release();
    await expect(sending).rejects.toMatchObject({ code: 'BP_MANIFEST_RACE' });
  });
});

describe('the sink', () => {
  it('failing on its own stops the receiver, which aborts it', async () => {
    const data = randomBytes(8 * CHUNK, 43);
    const { store } = await storedStream(data);
    const sink = new MemorySink();
    const failed = new SinkFailedError('BP_SINK_FAILED', 'sink command "zfs recv" exited with status 1 before the stream ended');
    sink.hold();
    const receiving = background(receive(receiveOptions(store, sink)));
    await sleep(20);
    sink.fail(failed);
    await expect(receiving).rejects.toBe(failed);
    expect(sink.aborted).toBe(true);
    expect(sink.finished).toBe(false);
  });

  it('is finished only after every byte was written and checked', async () => {
    const data = randomBytes(3 * CHUNK + 9, 44);
    const { store } = await storedStream(data);
    const sink = new MemorySink();
    let bytesWhenFinished = -1;
    const finish = sink.finish.bind(sink);
    sink.finish = async () => {
      bytesWhenFinished = sink.byteLength;
      await finish();
    };
    await receive(receiveOptions(store, sink));
    expect(bytesWhenFinished).toBe(data.length);
  });
});
