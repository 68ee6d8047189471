import { FaultyStore, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { CHUNKS_PREFIX, chunkKey } from '../protocol/chunk.js';
import { MANIFEST_KEY } from '../protocol/manifest.js';
import { type ReceiverCursor, receiverKey } from '../protocol/receiver-cursor.js';
import { ConsumedChunkDeleter } from './consumed-chunk-deleter.js';
import { CHUNK, fastRetry, pipelineTestKit, same } from './pipeline-test-kit.js';
import { receive } from './receiver.js';
import { send } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const STREAM = '30fa4a20-e91f-4b6d-94bd-5f89ea97db44';
const { sendOptions, receiveOptions } = pipelineTestKit();

async function storeWithChunks(count: number): Promise<MemoryStore> {
  const store = new MemoryStore();
  for (let i = 0; i < count; i++) await store.put(chunkKey(i), new Uint8Array([i]));
  await store.put(MANIFEST_KEY, new Uint8Array([1]));
  return store;
}

async function storedChunks(store: MemoryStore): Promise<number[]> {
  const indexes: number[] = [];
  for await (const item of store.list(CHUNKS_PREFIX)) indexes.push(Number(item.key.slice(CHUNKS_PREFIX.length)));
  return indexes;
}

async function putCursor(store: MemoryStore, receiverId: string, patch: Partial<ReceiverCursor>): Promise<void> {
  const cursor: ReceiverCursor = {
    format: 'bucketpipe.receiver',
    version: 1,
    receiverId,
    streamId: STREAM,
    host: 'h',
    pid: 1,
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    position: 0,
    rawBytes: 0,
    state: 'receiving',
    ...patch,
  };
  await store.put(receiverKey(receiverId), Buffer.from(JSON.stringify(cursor)));
}

const deleterOn = (store: MemoryStore | FaultyStore, more: Partial<ConstructorParameters<typeof ConsumedChunkDeleter>[1]> = {}) =>
  new ConsumedChunkDeleter(store, { streamId: STREAM, receiverId: 'me', everyChunks: 4, intervalMs: 60_000, retry: fastRetry, ...more });

describe('ConsumedChunkDeleter', () => {
  it('deletes the chunks below the position in batches, once enough are consumed, never the manifest', async () => {
    const store = await storeWithChunks(10);
    const deleter = deleterOn(store);
    deleter.consumed(3); // fewer than everyChunks: not yet
    await deleter.finish();
    expect(await storedChunks(store)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    deleter.consumed(5);
    await deleter.finish();
    expect(await storedChunks(store)).toEqual([5, 6, 7, 8, 9]);
    await deleter.finish(10);
    expect(await storedChunks(store)).toEqual([]);
    expect(store.peek(MANIFEST_KEY)).toBeDefined();
    expect(deleter.deleted).toBe(10);
  });

  it('runs a pass after the interval even when few chunks are pending', async () => {
    const store = await storeWithChunks(4);
    let now = 0;
    const deleter = deleterOn(store, { now: () => now });
    deleter.consumed(1);
    await deleter.finish();
    expect(await storedChunks(store)).toEqual([0, 1, 2, 3]);
    now = 60_000;
    deleter.consumed(2);
    await deleter.finish();
    expect(await storedChunks(store)).toEqual([2, 3]);
  });

  it("keeps what another active receiver of the stream still needs; ignores finished ones, other streams' and its own cursor", async () => {
    const store = await storeWithChunks(12);
    await putCursor(store, 'slow', { position: 3, state: 'receiving' });
    await putCursor(store, 'early', { position: 1, state: 'done' });
    await putCursor(store, 'broken', { position: 0, state: 'failed' });
    await putCursor(store, 'old', { position: 0, streamId: 'another-stream' });
    await putCursor(store, 'me', { position: 0 }); // its own cursor as last published: behind what it is told
    const deleter = deleterOn(store);
    await deleter.finish(12);
    expect(await storedChunks(store)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11]);
    await putCursor(store, 'waiting', { position: 6, state: 'waiting' });
    await putCursor(store, 'slow', { position: 9, state: 'receiving' });
    await deleter.finish(12);
    expect(await storedChunks(store)).toEqual([6, 7, 8, 9, 10, 11]);
  });

  it('starts from the first chunk still stored, without a delete request per chunk already gone', async () => {
    const memory = await storeWithChunks(3000);
    await memory.delete(Array.from({ length: 2990 }, (_, i) => chunkKey(i)));
    const store = new FaultyStore(memory);
    const deleter = deleterOn(store);
    await deleter.finish(2995);
    expect(await storedChunks(memory)).toEqual([2995, 2996, 2997, 2998, 2999]);
    expect(store.count('delete')).toBe(5);
  });

  it('warns and tries again at the next pass when deleting fails; stops after an auth failure', async () => {
    const memory = await storeWithChunks(8);
    const store = new FaultyStore(memory);
    const warnings: string[] = [];
    const deleter = deleterOn(store, { onWarning: (m) => warnings.push(m) });
    const failing = store.inject({ op: 'delete', fail: 'fatal' });
    await deleter.finish(4);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/deleting consumed chunks from .* failed .*trying again later/);
    expect(await storedChunks(memory)).toHaveLength(8);
    failing.remove();
    await deleter.finish(4);
    expect(await storedChunks(memory)).toEqual([4, 5, 6, 7]);
    store.inject({ op: 'delete', fail: 'auth' });
    await deleter.finish(6);
    expect(warnings[1]).toMatch(/cannot delete consumed chunks .*: keeping them/);
    await deleter.finish(8);
    expect(warnings).toHaveLength(2);
    expect(await storedChunks(memory)).toEqual([4, 5, 6, 7]);
  });
});

describe('receive with deleteConsumed', () => {
  it('deletes every chunk the sink took while receiving and the rest at the end; the manifest stays', async () => {
    const data = randomBytes(40 * CHUNK + 123, 77);
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(data, 10_007)));
    const store = new FaultyStore(memory);
    let highestDeletedWhileReceiving = -1;
    const deletedBeforeTaken: number[] = [];
    const sink = new MemorySink();
    store.inject({
      op: 'delete',
      before: ({ key }) => {
        const index = Number(key.slice(CHUNKS_PREFIX.length));
        if (index >= sink.writes) deletedBeforeTaken.push(index); // never a chunk the sink has not taken
        if (!sink.finished) highestDeletedWhileReceiving = Math.max(highestDeletedWhileReceiving, index);
      },
    });
    const received = await receive(receiveOptions(store, sink, { deleteConsumed: { everyChunks: 8, intervalMs: 60_000 } }));
    expect(same(sink.bytes(), data)).toBe(true);
    expect(received.chunksDeleted).toBe(41);
    expect(deletedBeforeTaken).toEqual([]);
    expect(highestDeletedWhileReceiving).toBeGreaterThanOrEqual(7); // batches went while the sink was still receiving
    expect(await storedChunks(memory)).toEqual([]);
    expect(memory.peek(MANIFEST_KEY)).toBeDefined();
  });

  it('deletes nothing without the option', async () => {
    const data = randomBytes(5 * CHUNK, 78);
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(data, 10_007)));
    const received = await receive(receiveOptions(memory, new MemorySink()));
    expect(received.chunksDeleted).toBe(0);
    expect(await storedChunks(memory)).toHaveLength(5);
  });
});
