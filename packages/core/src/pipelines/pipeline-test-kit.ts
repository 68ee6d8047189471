// Test support shared by the pipeline, codec and manifest tests; not part of the
// package: the build excludes it (tsconfig.json).
import { setTimeout as sleep } from 'node:timers/promises';
import { type MemorySink, pieces } from '@bucketpipe/store-testkit';
import { afterAll, beforeAll } from 'vitest';
import { ChunkCodec, chunkObjectBound } from '../codec/codec.js';
import { CodecPool } from '../codec/codec-pool.js';
import { SourceFailedError } from '../errors.js';
import { MIN_CHUNK_SIZE } from '../protocol/limits.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, readManifest } from '../protocol/manifest.js';
import { streamDigestOf } from '../protocol/stream-digest.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import type { RetryPolicy } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';
import type { MissingChunkPolicy } from './chunk-fetch.js';
import type { ReceiveOptions } from './receiver.js';
import type { SendOptions } from './sender.js';

/** 64 KiB: the smallest chunk size, so that tests have many chunks in little memory. */
export const CHUNK = MIN_CHUNK_SIZE;
export const fastRetry: RetryPolicy = { attempts: 6, baseDelayMs: 1, maxDelayMs: 4 };
export const fastMissing: MissingChunkPolicy = { timeoutMs: 300, firstDelayMs: 5, maxDelayMs: 50 };
export const TEST_RECEIVER = 'test-receiver';

/**
 * One CodecPool for the test file (started before its tests, closed after them), and options for
 * the pipelines with test-sized chunks, buffers and intervals.
 */
export function pipelineTestKit() {
  let codec: CodecPool;
  beforeAll(() => {
    codec = new CodecPool(2);
  });
  afterAll(async () => {
    await codec.close();
  });
  return {
    codec: () => codec,
    sendOptions: (store: ObjectStore, source: AsyncIterable<Uint8Array>, more: Partial<SendOptions> = {}): SendOptions => ({
      store,
      source,
      chunkSize: CHUNK,
      level: 1,
      concurrency: 4,
      bufferBytes: 8 * chunkObjectBound(CHUNK),
      manifestIntervalMs: 5,
      heartbeatIntervalMs: 1_000,
      codec,
      retry: fastRetry,
      ...more,
    }),
    receiveOptions: (store: ObjectStore, sink: MemorySink, more: Partial<ReceiveOptions> = {}): ReceiveOptions => ({
      store,
      sink,
      concurrency: 4,
      bufferBytes: 8 * (CHUNK + chunkObjectBound(CHUNK)),
      pollIntervalMs: 5,
      receiverId: TEST_RECEIVER,
      codec,
      retry: fastRetry,
      missingChunk: fastMissing,
      ...more,
    }),
  };
}

/** Marks a promise that runs alongside the test as handled at once: it may settle while the test awaits something else. */
export function background<T>(promise: Promise<T>): Promise<T> {
  void promise.catch(() => {});
  return promise;
}

/** A source paced like a live producer: one piece every `pauseMs`. */
export async function* paced(bytes: Uint8Array, pieceSize: number, pauseMs: number): AsyncGenerator<Uint8Array> {
  for await (const piece of pieces(bytes, pieceSize)) {
    await sleep(pauseMs);
    yield piece;
  }
}

export const digestOf = (bytes: Uint8Array): string => streamDigestOf(bytes, CHUNK);
export const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

export async function manifestOf(store: ObjectStore): Promise<Manifest> {
  const found = await readManifest(store);
  if (!found) throw new Error('no manifest');
  return found.manifest;
}

/** A chunk object with a valid header and checksums that holds `raw` as chunk `index` of `streamId`. */
export function craftChunk(streamId: string, index: number, raw: Uint8Array): Uint8Array {
  const rawSlab = new Uint8Array(CHUNK);
  rawSlab.set(raw);
  const out = new Uint8Array(chunkObjectBound(CHUNK));
  const encoded = new ChunkCodec().encode({
    kind: 'encode',
    raw: rawSlab,
    rawLength: raw.length,
    out,
    streamId: streamIdToBytes(streamId),
    index,
    level: 1,
  });
  return out.slice(0, encoded.objectLength);
}

/** A valid manifest of a stream being sent: 2 chunks of 16 MiB so far. */
export function sendingManifest(streamId = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b'): Manifest {
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    streamId,
    createdAt: '2025-01-02T03:04:05.678Z',
    updatedAt: '2025-01-02T03:04:06.000Z',
    chunkSize: 16 * 1024 * 1024,
    codec: 'zstd',
    level: 1,
    state: 'sending',
    watermark: 2,
    rawBytes: 2 * 16 * 1024 * 1024,
    storedBytes: 1_234_567,
    sender: { id: 'src:123', host: 'src', pid: 123, startedAt: '2025-01-02T03:04:05.678Z', heartbeatAt: '2025-01-02T03:04:06.000Z' },
  };
}

/** The source failure the failing sources below end with. */
export const sourceFailure = new SourceFailedError('BP_SOURCE_FAILED', 'source command "zfs send" exited with status 1');

/** A source that gives the first `chunks` chunks of `data`, pauses so they are stored and announced, then fails with sourceFailure. */
export async function* failingAfter(data: Uint8Array, chunks: number): AsyncGenerator<Uint8Array> {
  yield* pieces(data.subarray(0, chunks * CHUNK), 10_007);
  await sleep(20);
  throw sourceFailure;
}
