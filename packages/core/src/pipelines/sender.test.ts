import { setTimeout as sleep } from 'node:timers/promises';
import { compressibleBytes, FaultyStore, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { chunkObjectBound } from '../codec/codec.js';
import { SourceFailedError, StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import { DEFAULT_BUFFER_BYTES } from '../protocol/limits.js';
import { MANIFEST_KEY, type Manifest, parseManifest } from '../protocol/manifest.js';
import { StoreError } from '../store/store.js';
import { background, CHUNK, digestOf, fastRetry, manifestOf, pipelineTestKit, same } from './pipeline-test-kit.js';
import { receive } from './receiver.js';
import { defaultSenderBuffer, MAX_DEFAULT_SENDER_BUFFER, send, senderSlabs } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources,
// so that the StoreError it throws is the class the pipelines under test check with instanceof.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { sendOptions, receiveOptions } = pipelineTestKit();

/** A source that yields `bytes` in pieces, one event-loop turn apart, and records whether it was stopped. */
function trackedSource(bytes: Uint8Array, pieceSize: number, pauseMs = 0) {
  const state = { pulled: 0, closed: false, finished: false };
  async function* generate(): AsyncGenerator<Uint8Array> {
    try {
      for await (const piece of pieces(bytes, pieceSize)) {
        if (pauseMs > 0) await sleep(pauseMs);
        state.pulled += piece.length;
        yield piece;
      }
      state.finished = true;
    } finally {
      state.closed = true;
    }
  }
  return { source: generate(), state };
}

/** A source that yields `bytes` and then waits until `release()` before it ends. */
function heldSource(bytes: Uint8Array) {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  async function* generate(): AsyncGenerator<Uint8Array> {
    yield* pieces(bytes, 10_007);
    await gate;
  }
  return { source: generate(), release };
}

describe('send, then receive', () => {
  const cases: Array<[string, Uint8Array, number]> = [
    ['an empty stream', new Uint8Array(0), 0],
    ['one byte', randomBytes(1, 2), 1],
    ['less than a chunk', compressibleBytes(12_345), 1],
    ['exactly one chunk', randomBytes(CHUNK, 3), 1],
    ['a multiple of the chunk size (random)', randomBytes(5 * CHUNK, 4), 5],
    ['a multiple of the chunk size (compressible)', compressibleBytes(4 * CHUNK), 4],
    ['a short last chunk (random)', randomBytes(6 * CHUNK + 4_321, 5), 7],
    ['a short last chunk (compressible)', compressibleBytes(3 * CHUNK + 1), 4],
  ];

  it.each(cases)('round-trips %s byte for byte', async (_, data, chunks) => {
    const store = new MemoryStore();
    // Pieces that never line up with chunk boundaries.
    const sent = await send(sendOptions(store, pieces(data, 10_007)));
    expect(sent.chunks).toBe(chunks);
    expect(sent.rawBytes).toBe(data.length);
    expect(sent.digest).toBe(digestOf(data));
    expect(store.keys('chunks/')).toEqual(Array.from({ length: chunks }, (_, i) => chunkKey(i)));
    const stored = store.keys('chunks/').reduce((sum, key) => sum + (store.peek(key)?.length ?? 0), 0);
    expect(sent.storedBytes).toBe(stored);

    const sink = new MemorySink();
    const received = await receive(receiveOptions(store, sink));
    expect(sink.byteLength).toBe(data.length);
    expect(same(sink.bytes(), data), 'identical bytes').toBe(true);
    expect(sink.finished).toBe(true);
    expect(sink.aborted).toBe(false);
    expect(received).toMatchObject({ streamId: sent.streamId, chunks, rawBytes: data.length, digest: digestOf(data) });
  });

  it('cuts pieces larger than a chunk, and empty pieces, the same way', async () => {
    const data = randomBytes(5 * CHUNK + 77, 6);
    async function* awkward(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(0);
      yield data.subarray(0, 3 * CHUNK + 5); // spans four chunks
      yield new Uint8Array(0);
      yield data.subarray(3 * CHUNK + 5, 3 * CHUNK + 6); // one byte
      yield data.subarray(3 * CHUNK + 6);
    }
    const store = new MemoryStore();
    const sent = await send(sendOptions(store, awkward()));
    expect(sent.chunks).toBe(6);
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });
});

describe('the manifest', () => {
  it('holds the final watermark, byte counts and checksum when the stream is complete', async () => {
    const data = compressibleBytes(7 * CHUNK + 999);
    const store = new MemoryStore();
    const sent = await send(sendOptions(store, pieces(data, 65_000), { level: 3 }));
    const manifest = await manifestOf(store);
    const storedBytes = store.keys('chunks/').reduce((sum, key) => sum + (store.peek(key)?.length ?? 0), 0);
    expect(manifest).toMatchObject({
      streamId: sent.streamId,
      chunkSize: CHUNK,
      codec: 'zstd',
      level: 3,
      state: 'complete',
      watermark: 8,
      rawBytes: data.length,
      storedBytes,
      final: { chunks: 8, rawBytes: data.length, digest: digestOf(data) },
    });
    expect(storedBytes).toBeLessThan(data.length / 10); // it was compressed
    expect(manifest.abortReason).toBeUndefined();
  });

  it('never claims a chunk that is not stored, and its watermark and counts only grow', async () => {
    const data = randomBytes(24 * CHUNK + 5, 7);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    // Uneven upload times, so that chunks finish out of order.
    store.inject({ op: 'put', key: /^chunks\/\d*[13579]$/, delayMs: 3 });
    const seen: Manifest[] = [];
    store.inject({
      op: 'put',
      key: MANIFEST_KEY,
      before: (_, body) => {
        const manifest = parseManifest(body ?? new Uint8Array(0), 'test');
        // Checked when the write is issued: every chunk it announces must already be there.
        let raw = 0;
        let stored = 0;
        for (let i = 0; i < manifest.watermark; i++) {
          const object = memory.peek(chunkKey(i));
          expect(object, `chunk ${i} is below watermark ${manifest.watermark}`).toBeDefined();
          stored += object?.length ?? 0;
          raw += Math.min(CHUNK, data.length - i * CHUNK);
        }
        expect(manifest.rawBytes).toBe(raw);
        expect(manifest.storedBytes).toBe(stored);
        const previous = seen.at(-1);
        if (previous) {
          expect(manifest.watermark).toBeGreaterThanOrEqual(previous.watermark);
          expect(Date.parse(manifest.sender.heartbeatAt)).toBeGreaterThanOrEqual(Date.parse(previous.sender.heartbeatAt));
        }
        seen.push(manifest);
      },
    });
    const { source } = trackedSource(data, 16_384, 1);
    await send(sendOptions(store, source, { manifestIntervalMs: 5 }));
    expect(seen.length, 'the manifest was written while sending, not only at the start and the end').toBeGreaterThan(3);
    expect(seen[0]?.state).toBe('sending');
    expect(seen[0]?.watermark).toBe(0);
    expect(seen.at(-1)?.state).toBe('complete');
    expect(seen.some((m) => m.state === 'sending' && m.watermark > 0 && m.watermark < 25)).toBe(true);
  });
});

describe('the size estimate (expectedRawBytes)', () => {
  it('is in every version of the manifest from its creation, and a receiver reports it until the exact length is known', async () => {
    const data = randomBytes(6 * CHUNK + 17, 8);
    const estimate = 5 * CHUNK; // an estimate, not a limit: the stream turns out longer
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const written: Manifest[] = [];
    store.inject({
      op: 'put',
      key: MANIFEST_KEY,
      before: (_, body) => void written.push(parseManifest(body ?? new Uint8Array(0), 'test')),
    });
    const held = heldSource(data);
    const sending = background(send(sendOptions(store, held.source, { expectedRawBytes: estimate })));
    const seen: Array<number | null> = [];
    const sink = new MemorySink();
    const receiving = receive(
      receiveOptions(memory, sink, {
        onProgress: (p) => seen.push(p.state === 'complete' ? -(p.expectedRawBytes ?? 0) : p.expectedRawBytes),
      }),
    );
    await vi.waitFor(() => expect(seen.length).toBeGreaterThan(0));
    held.release();
    await sending;
    await receiving;
    expect(written.length).toBeGreaterThan(1);
    expect(written.every((m) => m.expectedRawBytes === estimate)).toBe(true);
    expect(written.at(-1)).toMatchObject({ state: 'complete', expectedRawBytes: estimate, final: { rawBytes: data.length } });
    // While sending: the estimate; once complete (negated above): the exact length.
    expect(seen[0]).toBe(estimate);
    expect(seen.at(-1)).toBe(-data.length);
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('is absent from the manifest without an estimate, and receivers report null until the stream is complete', async () => {
    const data = randomBytes(2 * CHUNK + 1, 9);
    const memory = new MemoryStore();
    const held = heldSource(data);
    const sending = background(send(sendOptions(memory, held.source)));
    await vi.waitFor(async () => expect((await manifestOf(memory)).state).toBe('sending'));
    expect(await manifestOf(memory)).not.toHaveProperty('expectedRawBytes');
    const seen: Array<{ state: string; expected: number | null }> = [];
    const receiving = receive(
      receiveOptions(memory, new MemorySink(), { onProgress: (p) => seen.push({ state: p.state, expected: p.expectedRawBytes }) }),
    );
    await vi.waitFor(() => expect(seen.length).toBeGreaterThan(0));
    held.release();
    await sending;
    await receiving;
    expect(seen.filter((s) => s.state === 'sending').every((s) => s.expected === null)).toBe(true);
    expect(seen.at(-1)).toEqual({ state: 'complete', expected: data.length });
  });

  it('must be a non-negative safe integer', async () => {
    for (const expectedRawBytes of [-1, 1.5, Number.NaN, 2 ** 53]) {
      await expect(send(sendOptions(new MemoryStore(), pieces(new Uint8Array(1), 1), { expectedRawBytes }))).rejects.toThrow(RangeError);
    }
  });
});

describe('a second sender', () => {
  it('is refused with BP_STREAM_EXISTS on a complete stream, before it reads or writes anything', async () => {
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(randomBytes(2 * CHUNK, 8), 10_007)));
    const before = await memory.head(MANIFEST_KEY);
    const keys = memory.keys();
    const store = new FaultyStore(memory);
    const { source, state } = trackedSource(randomBytes(CHUNK, 9), 10_007);
    const error = await send(sendOptions(store, source)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamConflictError);
    expect(error).toMatchObject({ code: 'BP_STREAM_EXISTS' });
    expect((error as Error).message).toContain('complete');
    expect(state.pulled).toBe(0);
    expect(store.count('put')).toBe(1); // the refused create-only manifest write
    expect(memory.keys()).toEqual(keys);
    expect(await memory.head(MANIFEST_KEY)).toEqual(before);
  });

  it('is refused while the first is still sending, which then completes undisturbed', async () => {
    const store = new MemoryStore();
    const data = randomBytes(3 * CHUNK + 10, 10);
    const first = heldSource(data);
    const sending = background(send(sendOptions(store, first.source)));
    await vi.waitFor(() => expect(store.has(MANIFEST_KEY)).toBe(true));
    const error = await send(sendOptions(store, pieces(randomBytes(CHUNK, 11), 10_007))).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_STREAM_EXISTS' });
    expect((error as Error).message).toContain('already has a sender');
    first.release();
    const sent = await sending;
    expect(sent.digest).toBe(digestOf(data));
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });
});

describe('store failures', () => {
  it('retries transient and throttled put failures, and the stream still completes', async () => {
    const data = randomBytes(6 * CHUNK + 100, 12);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const faults = [
      store.inject({ op: 'put', key: MANIFEST_KEY, nth: 1, fail: 'transient' }), // the create
      store.inject({ op: 'put', key: MANIFEST_KEY, nth: 3, times: 2, fail: 'throttled' }), // updates
      store.inject({ op: 'put', key: chunkKey(0), nth: 1, times: 2, fail: 'transient' }),
      store.inject({ op: 'put', key: chunkKey(3), nth: 1, fail: 'throttled' }),
      store.inject({ op: 'put', key: chunkKey(6), nth: 1, fail: 'transient' }), // the short last chunk
      // The upload landed, but its response was lost: the retry writes the same object again.
      store.inject({ op: 'put', key: chunkKey(4), nth: 1, failAfter: 'transient' }),
    ];
    const sent = await send(sendOptions(store, pieces(data, 10_007)));
    expect(faults.map((f) => f.hits)).toEqual([1, 2, 2, 1, 1, 1]);
    expect(store.count('put', chunkKey(0))).toBe(3);
    expect(store.count('put', chunkKey(4))).toBe(2);
    expect(sent.digest).toBe(digestOf(data));
    expect((await manifestOf(memory)).state).toBe('complete');
    const sink = new MemorySink();
    await receive(receiveOptions(memory, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('a manifest write whose response was lost (it landed) is not mistaken for another sender', async () => {
    const data = randomBytes(3 * CHUNK + 100, 21);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const create = store.inject({ op: 'put', key: MANIFEST_KEY, nth: 1, failAfter: 'transient' });
    const update = store.inject({ op: 'put', key: MANIFEST_KEY, nth: 3, failAfter: 'transient' });
    const sent = await send(sendOptions(store, pieces(data, 10_007)));
    expect([create.hits, update.hits]).toEqual([1, 1]);
    expect(sent.digest).toBe(digestOf(data));
    expect((await manifestOf(memory)).state).toBe('complete');
  });

  it('gives up on a transient failure once the retry budget is spent, and marks the stream aborted', async () => {
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    store.inject({ op: 'put', key: chunkKey(1), fail: 'transient' });
    const error = await send(sendOptions(store, pieces(randomBytes(3 * CHUNK, 13), 10_007))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ kind: 'transient' });
    expect(store.count('put', chunkKey(1))).toBe(fastRetry.attempts);
    expect((await manifestOf(memory)).state).toBe('aborted');
  });

  it('aborts on a permanent put failure (auth): manifest aborted, error rethrown, source stopped', async () => {
    const data = randomBytes(24 * CHUNK, 14);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const denied = new StoreError('auth', 'access denied to chunks/000000000003 (injected)', { key: chunkKey(3) });
    store.inject({ op: 'put', key: chunkKey(3), fail: denied });
    const { source, state } = trackedSource(data, 10_007);
    const receiving = background(receive(receiveOptions(memory, new MemorySink())));
    await expect(send(sendOptions(store, source))).rejects.toBe(denied);
    expect(store.count('put', chunkKey(3)), 'auth failures are not retried').toBe(1);
    expect(state.closed, 'the source was stopped').toBe(true);
    expect(state.finished, 'the source was not read to its end').toBe(false);
    const manifest = await manifestOf(memory);
    expect(manifest.state).toBe('aborted');
    expect(manifest.abortReason).toContain('access denied');
    expect(manifest.final).toBeUndefined();
    expect(manifest.watermark).toBeLessThanOrEqual(3);
    for (let i = 0; i < manifest.watermark; i++) expect(memory.has(chunkKey(i))).toBe(true);
    // A receiver following the stream stops without finishing its sink.
    await expect(receiving).rejects.toMatchObject({ code: 'BP_STREAM_ABORTED' });
  });

  it('a manifest update refused by a concurrent writer (lost compare-and-swap) aborts with BP_MANIFEST_RACE', async () => {
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const data = randomBytes(4 * CHUNK, 15);
    const held = heldSource(data);
    const sending = background(send(sendOptions(store, held.source)));
    await vi.waitFor(async () => expect((await manifestOf(memory)).watermark).toBe(4));
    // Somebody else rewrites the manifest behind the sender's back.
    const other = await manifestOf(memory);
    await memory.put(MANIFEST_KEY, Buffer.from(JSON.stringify({ ...other, sender: { ...other.sender, id: 'intruder' } })));
    held.release();
    await expect(sending).rejects.toMatchObject({ code: 'BP_MANIFEST_RACE' });
    expect((await manifestOf(memory)).sender.id, 'the other writer’s manifest was not overwritten').toBe('intruder');
  });
});

describe('source failures', () => {
  it('aborts when sourceExit rejects after the source ended (the command failed)', async () => {
    const memory = new MemoryStore();
    const failed = new SourceFailedError('BP_SOURCE_FAILED', 'source command "zfs send" exited with status 1');
    let fail: (error: unknown) => void = () => {};
    const sourceExit = new Promise<void>((_, reject) => {
      fail = reject;
    });
    const data = randomBytes(3 * CHUNK + 5, 16);
    async function* source(): AsyncGenerator<Uint8Array> {
      yield* pieces(data, 10_007);
      fail(failed); // the process exits non-zero as its output ends
    }
    const sink = new MemorySink();
    const receiving = background(receive(receiveOptions(memory, sink)));
    await expect(send(sendOptions(memory, source(), { sourceExit }))).rejects.toBe(failed);
    const manifest = await manifestOf(memory);
    expect(manifest.state).toBe('aborted');
    expect(manifest.abortReason).toContain('exited with status 1');
    expect(manifest.final).toBeUndefined();
    await expect(receiving).rejects.toMatchObject({ code: 'BP_STREAM_ABORTED' });
    expect(sink.aborted).toBe(true);
    expect(sink.finished).toBe(false);
  });

  it('aborts promptly when sourceExit rejects while the source is still open', { timeout: 5_000 }, async () => {
    const memory = new MemoryStore();
    const failed = new SourceFailedError('BP_SOURCE_FAILED', 'source command killed by SIGKILL');
    const held = heldSource(randomBytes(2 * CHUNK + 5, 17)); // never released: the source hangs
    const sourceExit = sleep(50).then(() => {
      throw failed;
    });
    await expect(send(sendOptions(memory, held.source, { sourceExit }))).rejects.toBe(failed);
    expect((await manifestOf(memory)).state).toBe('aborted');
  });

  it('aborts when the source itself throws', async () => {
    const memory = new MemoryStore();
    const broken = new Error('read error on stdin');
    async function* source(): AsyncGenerator<Uint8Array> {
      yield randomBytes(CHUNK + 3, 18);
      throw broken;
    }
    await expect(send(sendOptions(memory, source()))).rejects.toBe(broken);
    const manifest = await manifestOf(memory);
    expect(manifest.state).toBe('aborted');
    expect(manifest.abortReason).toBe('read error on stdin');
  });

  it('stops when its signal is aborted, and marks the stream aborted', { timeout: 5_000 }, async () => {
    const memory = new MemoryStore();
    const controller = new AbortController();
    const held = heldSource(randomBytes(2 * CHUNK, 19));
    const sending = background(send(sendOptions(memory, held.source, { signal: controller.signal })));
    await vi.waitFor(() => expect(memory.has(chunkKey(1))).toBe(true));
    const reason = new Error('interrupted by SIGINT');
    controller.abort(reason);
    await expect(sending).rejects.toBe(reason);
    expect((await manifestOf(memory)).state).toBe('aborted');
  });
});

describe('memory and parallelism', () => {
  it('a slow store slows the reading: uploads stay within concurrency and read-ahead within the buffer', async () => {
    const data = randomBytes(40 * CHUNK, 20);
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    const concurrency = 3;
    const slabs = 6;
    let active = 0;
    let maxActive = 0;
    let maxAhead = 0;
    const { source, state } = trackedSource(data, 8_192);
    store.inject({
      op: 'put',
      key: /^chunks\//,
      before: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        // Raw bytes read but not yet stored.
        maxAhead = Math.max(maxAhead, state.pulled - memory.keys('chunks/').length * CHUNK);
        await sleep(4);
        active--;
      },
    });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    let sent: Awaited<ReturnType<typeof send>>;
    try {
      sent = await send(sendOptions(store, source, { concurrency, bufferBytes: slabs * chunkObjectBound(CHUNK) }));
      await sleep(1); // warnings are emitted on a later tick
    } finally {
      process.off('warning', onWarning);
    }
    expect(sent.chunks).toBe(40);
    // Waiting for memory 40 times must not leave 40 listeners on the transfer's abort signal.
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    expect(maxActive, 'uploads ran in parallel').toBe(concurrency);
    // Each chunk holds one slab while it uploads (two while it is compressed): at most `slabs`
    // chunks are between the source and the store, plus the piece being cut.
    expect(maxAhead).toBeLessThanOrEqual(slabs * CHUNK + 8_192);
  });

  it('rejects a buffer that cannot hold two chunks, before touching the store', async () => {
    const store = new FaultyStore(new MemoryStore());
    await expect(send(sendOptions(store, pieces(new Uint8Array(10), 10), { bufferBytes: CHUNK }))).rejects.toMatchObject({
      code: 'BP_BUFFER_TOO_SMALL',
    });
    expect(store.requests).toEqual([]);
  });
});

describe('the default buffer', () => {
  const MiB = 2 ** 20;
  it('stays 512 MiB where that keeps every thread and upload busy (2 cores, 16 MiB chunks)', () => {
    expect(defaultSenderBuffer(16 * MiB, 8, 2)).toBe(DEFAULT_BUFFER_BYTES);
    expect(defaultSenderBuffer(16 * MiB, 16, 2)).toBe(DEFAULT_BUFFER_BYTES);
  });

  it('grows with the threads, so that each compresses a chunk while every upload is in flight', () => {
    const machines: Array<[number, number]> = [
      [8, 16],
      [16, 16],
      [16, 24],
    ];
    for (const [concurrency, threads] of machines) {
      const slabs = senderSlabs(defaultSenderBuffer(16 * MiB, concurrency, threads), 16 * MiB);
      expect(slabs, `${concurrency} uploads, ${threads} threads`).toBeGreaterThanOrEqual(concurrency + 2 * threads + threads / 2 + 1);
    }
  });

  it('takes at most 1.5 GiB by itself, and never less than two chunks', () => {
    expect(defaultSenderBuffer(16 * MiB, 16, 256)).toBe(MAX_DEFAULT_SENDER_BUFFER);
    expect(senderSlabs(defaultSenderBuffer(1024 * MiB, 256, 256), 1024 * MiB)).toBe(2);
  });
});
