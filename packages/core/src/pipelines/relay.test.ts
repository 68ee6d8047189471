import { FaultyStore, flipByte, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { IntegrityError, SourceFailedError, StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import { MANIFEST_KEY, type Manifest, readManifest } from '../protocol/manifest.js';
import type { ObjectStore } from '../store/store.js';
import { background, CHUNK, digestOf, fastMissing, fastRetry, manifestOf, paced, pipelineTestKit, same } from './pipeline-test-kit.js';
import { receive } from './receiver.js';
import { type RelayOptions, type RelayProgress, relay } from './relay.js';
import { send } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources,
// so that the StoreError it throws is the class the pipelines under test check with instanceof.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { sendOptions, receiveOptions } = pipelineTestKit();

function relayOptions(source: ObjectStore, destination: ObjectStore, more: Partial<RelayOptions> = {}): RelayOptions {
  return { source, destination, concurrency: 4, pollIntervalMs: 5, retry: fastRetry, missingChunk: fastMissing, ...more };
}

describe('relay', () => {
  it('follows a live stream; sender, relay and a receiver on the far side all run at once, byte for byte', async () => {
    const data = randomBytes(12 * CHUNK + 4_321, 51);
    const near = new MemoryStore('memory://near');
    const farMemory = new MemoryStore('memory://far');
    const far = new FaultyStore(farMemory);
    const sink = new MemorySink();
    const receiving = background(receive(receiveOptions(far, sink)));
    const relaying = background(relay(relayOptions(near, far)));
    const sent = await send(sendOptions(near, paced(data, 16_384, 1)));
    const relayed = await relaying;
    const received = await receiving;
    expect(relayed).toMatchObject({ streamId: sent.streamId, state: 'complete', chunks: 13, chunksCopied: 13, rawBytes: data.length });
    expect(received.digest).toBe(digestOf(data));
    expect(same(sink.bytes(), data)).toBe(true);
    // Verbatim: the far store holds the same bytes as the near one, manifest included.
    for (let i = 0; i < 13; i++)
      expect(same(farMemory.peek(chunkKey(i)) ?? new Uint8Array(), near.peek(chunkKey(i)) ?? new Uint8Array(1))).toBe(true);
    expect(same(farMemory.peek(MANIFEST_KEY) ?? new Uint8Array(), near.peek(MANIFEST_KEY) ?? new Uint8Array(1))).toBe(true);
  });

  it('never writes a manifest to the destination before every chunk it counts is there', async () => {
    const data = randomBytes(10 * CHUNK, 52);
    const near = new MemoryStore();
    await send(sendOptions(near, pieces(data, 40_000)));
    const farMemory = new MemoryStore();
    const far = new FaultyStore(farMemory);
    const violations: string[] = [];
    far.inject({
      op: 'put',
      key: MANIFEST_KEY,
      before: (_, body) => {
        const manifest = JSON.parse(Buffer.from(body ?? new Uint8Array()).toString('utf8')) as Manifest;
        for (let i = 0; i < manifest.watermark; i++) if (!farMemory.has(chunkKey(i))) violations.push(chunkKey(i));
      },
    });
    // Slow chunk copies, so that the ordering would show if it were wrong.
    far.inject({ op: 'put', key: /^chunks\//, delayMs: 3 });
    await relay(relayOptions(near, far));
    expect(violations).toEqual([]);
    expect(far.count('put', MANIFEST_KEY)).toBeGreaterThanOrEqual(1);
  });

  it('publishes progress while the source is still being written, not only at the end', async () => {
    const data = randomBytes(16 * CHUNK, 53);
    const near = new MemoryStore();
    const far = new MemoryStore();
    const progress: RelayProgress[] = [];
    const relaying = background(relay(relayOptions(near, far, { onProgress: (p) => progress.push(p) })));
    await send(sendOptions(near, paced(data, CHUNK / 4, 4)));
    await relaying;
    const published = new Set(progress.map((p) => p.publishedWatermark));
    expect(published.size, `watermarks published: ${[...published].join(',')}`).toBeGreaterThan(3);
  });

  it('resumes after being stopped midway, copying only what the destination does not have', async () => {
    const data = randomBytes(20 * CHUNK + 5, 54);
    const near = new MemoryStore();
    const far = new FaultyStore(new MemoryStore());
    const sending = background(send(sendOptions(near, paced(data, CHUNK / 2, 3))));
    const stop = new AbortController();
    const first = background(relay(relayOptions(near, far, { signal: stop.signal })));
    await vi.waitFor(async () => expect((await readManifest(far))?.manifest.watermark ?? 0).toBeGreaterThanOrEqual(6), { timeout: 10_000 });
    stop.abort(new Error('stopped by the test'));
    await expect(first).rejects.toThrow('stopped by the test');
    const publishedBefore = (await manifestOf(far)).watermark;
    await sending;
    const second = await relay(relayOptions(near, far));
    expect(second.chunks).toBe(21);
    expect(second.chunksCopied).toBe(21 - publishedBefore);
    const sink = new MemorySink();
    await receive(receiveOptions(far, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('does nothing more for a destination that already holds the complete stream', async () => {
    const data = randomBytes(3 * CHUNK, 55);
    const near = new MemoryStore();
    await send(sendOptions(near, pieces(data, 9_999)));
    const far = new FaultyStore(new MemoryStore());
    await relay(relayOptions(near, far));
    const puts = far.count('put');
    const again = await relay(relayOptions(near, far));
    expect(again).toMatchObject({ state: 'complete', chunks: 3, chunksCopied: 0 });
    expect(far.count('put')).toBe(puts);
  });

  it('refuses a destination that holds another stream', async () => {
    const near = new MemoryStore();
    const far = new MemoryStore();
    await send(sendOptions(near, pieces(randomBytes(CHUNK, 56), 1_000)));
    await send(sendOptions(far, pieces(randomBytes(CHUNK, 57), 1_000)));
    const error = await relay(relayOptions(near, far)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamConflictError);
    expect(error).toMatchObject({ code: 'BP_RELAY_OTHER_STREAM' });
  });

  it.each([
    ['a flipped byte', 'BP_CHUNK_CHECKSUM', (body: Uint8Array) => flipByte(-9)(body)],
    ['a chunk of another stream', 'BP_CHUNK_FOREIGN', undefined],
    ['a chunk stored under another index', 'BP_CHUNK_MISPLACED', 'chunk 4'],
  ])('stops at %s in the source with %s, and the destination manifest never counts it', async (_, code, corrupt) => {
    const data = randomBytes(8 * CHUNK, 58);
    const near = new MemoryStore();
    await send(sendOptions(near, pieces(data, 30_000)));
    if (typeof corrupt === 'function') {
      await near.put(chunkKey(5), corrupt(near.peek(chunkKey(5)) ?? new Uint8Array()));
    } else if (corrupt === 'chunk 4') {
      await near.put(chunkKey(5), near.peek(chunkKey(4)) ?? new Uint8Array());
    } else {
      const other = new MemoryStore();
      await send(sendOptions(other, pieces(randomBytes(8 * CHUNK, 59), 30_000)));
      await near.put(chunkKey(5), other.peek(chunkKey(5)) ?? new Uint8Array());
    }
    const far = new MemoryStore();
    const error = await relay(relayOptions(near, far)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error).toMatchObject({ code });
    expect((error as Error).message).toContain(chunkKey(5));
    expect(far.has(chunkKey(5))).toBe(false);
    expect((await readManifest(far))?.manifest.watermark ?? 0).toBeLessThanOrEqual(5);
  });

  it('reads a chunk that arrived damaged once more and goes on', async () => {
    const data = randomBytes(4 * CHUNK, 60);
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(data, 30_000)));
    const near = new FaultyStore(memory);
    near.inject({ op: 'get', key: chunkKey(2), nth: 1, corrupt: flipByte(-3) });
    const far = new MemoryStore();
    await relay(relayOptions(near, far));
    expect(near.count('get', chunkKey(2))).toBe(2);
    const sink = new MemorySink();
    await receive(receiveOptions(far, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });

  it('copies the aborted state and fails like a receiver would', async () => {
    const near = new MemoryStore();
    const failing = (async function* () {
      yield randomBytes(3 * CHUNK, 61);
      throw new Error('zfs send died');
    })();
    await send(sendOptions(near, failing)).catch(() => {});
    expect((await manifestOf(near)).state).toBe('aborted');
    const far = new MemoryStore();
    const error = await relay(relayOptions(near, far)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceFailedError);
    expect((await manifestOf(far)).state).toBe('aborted');
  });

  it('retries transient failures on both sides', async () => {
    const data = randomBytes(6 * CHUNK, 62);
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(data, 30_000)));
    const near = new FaultyStore(memory);
    const far = new FaultyStore(new MemoryStore());
    near.inject({ op: 'get', key: chunkKey(1), nth: 1, times: 2, fail: 'transient' });
    far.inject({ op: 'put', key: chunkKey(3), nth: 1, fail: 'throttled' });
    far.inject({ op: 'put', key: MANIFEST_KEY, nth: 1, failAfter: 'transient' });
    await relay(relayOptions(near, far));
    const sink = new MemorySink();
    await receive(receiveOptions(far, sink));
    expect(same(sink.bytes(), data)).toBe(true);
  });
});
