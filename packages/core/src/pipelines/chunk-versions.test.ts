import { FaultyStore, flipByte, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { IntegrityError } from '../errors.js';
import { ChunkVersion, chunkKey, readChunk } from '../protocol/chunk.js';
import { EncryptionKey } from '../protocol/encryption.js';
import type { ObjectStore } from '../store/store.js';
import {
  CHUNK,
  digestOf,
  failingAfter,
  fastMissing,
  fastRetry,
  manifestOf,
  pipelineTestKit,
  same,
  sourceFailure,
} from './pipeline-test-kit.js';
import { receive } from './receiver.js';
import { relay } from './relay.js';
import { send } from './sender.js';
import { verifyStream } from './verify.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources,
// so that the StoreError it throws is the class the pipelines under test check with instanceof.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { codec, sendOptions, receiveOptions } = pipelineTestKit();

function versionsOf(store: MemoryStore, chunks: number): number[] {
  return Array.from({ length: chunks }, (_, i) => readChunk(store.peek(chunkKey(i)) ?? new Uint8Array(), chunkKey(i)).header.version);
}

async function receivedBytes(store: ObjectStore): Promise<Uint8Array> {
  const sink = new MemorySink();
  await receive(receiveOptions(store, sink));
  return sink.bytes();
}

describe('chunk format versions (FORMAT §8)', () => {
  it('a v1 stream (payload SHA-256) is received, verified and relayed as a v2 one is', async () => {
    const data = randomBytes(5 * CHUNK + 999, 71);
    for (const chunkVersion of [ChunkVersion.payloadSha256, ChunkVersion.payloadCrc32]) {
      const store = new MemoryStore();
      const sent = await send(sendOptions(store, pieces(data, 10_007), { chunkVersion }));
      expect(versionsOf(store, 6)).toEqual(Array(6).fill(chunkVersion));
      expect(same(await receivedBytes(store), data)).toBe(true);
      const report = await verifyStream({ store, concurrency: 2, codec: codec() });
      expect(report).toMatchObject({ verdict: 'ok', chunksChecked: 6, problems: [] });
      const far = new MemoryStore();
      await relay({ source: store, destination: far, concurrency: 2, pollIntervalMs: 5, retry: fastRetry, missingChunk: fastMissing });
      expect(versionsOf(far, 6)).toEqual(Array(6).fill(chunkVersion)); // copied verbatim
      expect(same(await receivedBytes(far), data)).toBe(true);
      expect(sent.digest).toBe(digestOf(data)); // the stream digest does not depend on the version
    }
  });

  it('v2 is the default, and the version changes the header only: as many bytes stored', async () => {
    const data = randomBytes(3 * CHUNK, 72);
    const [v1, v2] = [new MemoryStore(), new MemoryStore()];
    await send(sendOptions(v1, pieces(data, 10_007), { chunkVersion: ChunkVersion.payloadSha256 }));
    await send(sendOptions(v2, pieces(data, 10_007)));
    expect(versionsOf(v2, 3)).toEqual([2, 2, 2]);
    expect((await manifestOf(v2)).storedBytes).toBe((await manifestOf(v1)).storedBytes);
  });

  it('a v1 stream taken over by a v2 sender holds both versions and reads through', async () => {
    const data = randomBytes(6 * CHUNK + 7, 73);
    const store = new MemoryStore();
    await expect(send(sendOptions(store, failingAfter(data, 3), { chunkVersion: ChunkVersion.payloadSha256 }))).rejects.toBe(sourceFailure);
    const stored = (await manifestOf(store)).watermark;
    await send(sendOptions(store, pieces(data, 10_007), { takeover: true }));
    const versions = versionsOf(store, 7);
    expect(versions.slice(0, stored)).toEqual(Array(stored).fill(1));
    expect(versions.slice(stored)).toEqual(Array(7 - stored).fill(2));
    expect(same(await receivedBytes(store), data)).toBe(true);
    expect(await verifyStream({ store, concurrency: 2, codec: codec() })).toMatchObject({ verdict: 'ok', chunksChecked: 7 });
  });

  it('an encrypted v1 stream reads with its key; damage is named by the chunk version check', async () => {
    const data = randomBytes(2 * CHUNK + 5, 74);
    const encryptionKey = new EncryptionKey(Uint8Array.from({ length: 32 }, (_, i) => i + 9));
    const store = new MemoryStore();
    await send(sendOptions(store, pieces(data, 10_007), { chunkVersion: ChunkVersion.payloadSha256, encryptionKey }));
    const sink = new MemorySink();
    await receive(receiveOptions(store, sink, { encryptionKey }));
    expect(same(sink.bytes(), data)).toBe(true);

    const damaged = new FaultyStore(store);
    damaged.inject({ op: 'get', key: chunkKey(1), corrupt: flipByte(-20) });
    const error = await receive(receiveOptions(damaged, new MemorySink(), { encryptionKey })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).message).toMatch(/chunk chunks\/000000000001 failed its payload SHA-256 check/);
  });
});
