import { hostname } from 'node:os';
import pLimit from 'p-limit';
import { chunkKey } from './chunk.js';
import { type ChunkReader, IterableChunkReader, isChunkReader } from './chunk-reader.js';
import { chunkObjectBound } from './codec.js';
import { CodecPool } from './codec-pool.js';
import { UsageError } from './errors.js';
import { assertChunkSize, MAX_LEVEL, MIN_LEVEL } from './limits.js';
import { createManifest, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest } from './manifest.js';
import { ManifestWriter } from './manifest-writer.js';
import { type RetryPolicy, withRetry } from './retry.js';
import { sharedAbortController } from './shared-abort.js';
import { SlabPool } from './slab-pool.js';
import type { ObjectStore } from './store.js';
import { StreamDigest } from './stream-digest.js';
import { newStreamId, streamIdToBytes } from './stream-id.js';
import { formatBytes } from './units.js';
import { Watermark } from './watermark.js';

export interface SendOptions {
  store: ObjectStore;
  /** The stream to send: a ChunkReader, or any async iterable of bytes such as a Node stream. */
  source: ChunkReader | AsyncIterable<Uint8Array>;
  /** Settles when whatever produces `source` has finished; rejects when it failed (non-zero exit). */
  sourceExit?: Promise<void>;
  chunkSize: number;
  level: number;
  /** Uploads in flight at most. */
  concurrency: number;
  /** Bytes of chunk memory at most (read-ahead, compression and uploads together). */
  bufferBytes: number;
  manifestIntervalMs?: number;
  heartbeatIntervalMs?: number;
  codec?: CodecPool;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onProgress?: (progress: SendProgress) => void;
}

export interface SendProgress {
  streamId: string;
  chunksRead: number;
  rawBytesRead: number;
  /** Chunks below the watermark: stored, and announced or about to be. */
  watermark: number;
  rawBytesStored: number;
  storedBytes: number;
  uploadsInFlight: number;
}

export interface SendSummary {
  streamId: string;
  chunks: number;
  rawBytes: number;
  storedBytes: number;
  /** The stream digest (StreamDigest): SHA-256 over the chunks' raw SHA-256s. */
  digest: string;
  seconds: number;
}

/**
 * The send pipeline: read → cut → compress + checksum on all cores → upload in parallel → advance
 * the manifest's watermark. Memory is a fixed set of slabs (`bufferBytes`), so a slow store stops
 * the reading, never grows the heap. On any failure every in-flight task is awaited, the manifest
 * is marked aborted (best effort) and the first error is rethrown.
 */
export async function send(options: SendOptions): Promise<SendSummary> {
  validate(options);
  const started = performance.now();
  const { store, chunkSize } = options;
  const streamId = newStreamId();
  const streamIdBytes = streamIdToBytes(streamId);
  const now = new Date().toISOString();
  const initial: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    streamId,
    createdAt: now,
    updatedAt: now,
    chunkSize,
    codec: 'zstd',
    level: options.level,
    state: 'sending',
    watermark: 0,
    rawBytes: 0,
    storedBytes: 0,
    sender: { id: `${hostname()}:${process.pid}`, host: hostname(), pid: process.pid, startedAt: now, heartbeatAt: now },
  };
  const etag = await withRetry(() => createManifest(store, initial), { policy: options.retry, signal: options.signal });

  const abort = sharedAbortController();
  let firstError: unknown;
  const fail = (error: unknown) => {
    firstError ??= error;
    abort.abort(error);
  };
  const onOuterAbort = () => fail(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = abort.signal;

  const writer = new ManifestWriter(
    store,
    { manifest: initial, etag },
    {
      intervalMs: options.manifestIntervalMs ?? 1000,
      heartbeatMs: options.heartbeatIntervalMs ?? 10_000,
      retry: options.retry,
      onError: fail,
    },
  );
  writer.start();
  const slabs = new SlabPool(chunkObjectBound(chunkSize), senderSlabs(options.bufferBytes, chunkSize));
  const codec = options.codec ?? new CodecPool();
  const uploads = pLimit(options.concurrency);
  const watermark = new Watermark();
  const inFlight = new Set<Promise<void>>();
  const reader = isChunkReader(options.source) ? options.source : new IterableChunkReader(options.source);
  const streamDigest = new StreamDigest();
  let chunksRead = 0;
  let rawBytesRead = 0;
  options.sourceExit?.catch(fail);

  const report = () =>
    options.onProgress?.({
      streamId,
      chunksRead,
      rawBytesRead,
      watermark: watermark.value,
      rawBytesStored: watermark.rawBytes,
      storedBytes: watermark.storedBytes,
      uploadsInFlight: uploads.activeCount,
    });

  const storeChunk = async (index: number, raw: Uint8Array, rawLength: number, out: Uint8Array): Promise<void> => {
    const encoded = await codec.encode({ raw, rawLength, out, streamId: streamIdBytes, index, level: options.level });
    slabs.release(encoded.raw);
    streamDigest.add(index, encoded.rawSha256);
    const object = encoded.out.subarray(0, encoded.objectLength);
    await uploads(() => withRetry(() => store.put(chunkKey(index), object, { signal }), { policy: options.retry, signal }));
    slabs.release(encoded.out);
    watermark.finish(index, rawLength, encoded.objectLength);
    writer.set({ watermark: watermark.value, rawBytes: watermark.rawBytes, storedBytes: watermark.storedBytes });
    report();
  };

  try {
    for (let index = 0; ; index++) {
      const raw = await slabs.acquire(signal);
      const rawLength = await reader.fill(raw, chunkSize, signal);
      if (rawLength === 0) {
        slabs.release(raw);
        break;
      }
      chunksRead++;
      rawBytesRead += rawLength;
      const out = await slabs.acquire(signal);
      const task = storeChunk(index, raw, rawLength, out).catch(fail);
      inFlight.add(task);
      void task.finally(() => inFlight.delete(task));
      report();
      if (rawLength < chunkSize) break;
    }
    await Promise.all(inFlight);
    if (firstError !== undefined) throw firstError;
    await options.sourceExit;
    if (firstError !== undefined) throw firstError;
    const digest = streamDigest.digest();
    await writer.finish({
      state: 'complete',
      watermark: watermark.value,
      rawBytes: watermark.rawBytes,
      storedBytes: watermark.storedBytes,
      final: { chunks: watermark.value, rawBytes: watermark.rawBytes, digest },
    });
    return {
      streamId,
      chunks: watermark.value,
      rawBytes: watermark.rawBytes,
      storedBytes: watermark.storedBytes,
      digest,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (error) {
    fail(error);
    await Promise.allSettled(inFlight);
    await reader.close().catch(() => {});
    const reason = oneLine(firstError);
    await writer
      .finish({
        state: 'aborted',
        abortReason: reason,
        watermark: watermark.value,
        rawBytes: watermark.rawBytes,
        storedBytes: watermark.storedBytes,
      })
      .catch(() => {});
    throw firstError;
  } finally {
    writer.stop();
    options.signal?.removeEventListener('abort', onOuterAbort);
    if (!options.codec) await codec.close();
  }
}

/**
 * How many slabs a memory budget buys. A slab holds a raw chunk or its chunk object; a chunk needs
 * two while it is compressed (raw in, object out) and one while it uploads.
 */
export function senderSlabs(bufferBytes: number, chunkSize: number): number {
  return Math.floor(bufferBytes / chunkObjectBound(chunkSize));
}

/** The smallest --buffer that works with `chunkSize`: two slabs. */
export function minimumBuffer(chunkSize: number): number {
  return 2 * chunkObjectBound(chunkSize);
}

function validate(options: SendOptions): void {
  assertChunkSize(options.chunkSize);
  if (!Number.isInteger(options.level) || options.level < MIN_LEVEL || options.level > MAX_LEVEL) {
    throw new RangeError(`compression level must be an integer from ${MIN_LEVEL} to ${MAX_LEVEL}, got ${options.level}`);
  }
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${options.concurrency}`);
  }
  if (senderSlabs(options.bufferBytes, options.chunkSize) < 2) {
    throw new UsageError(
      `a buffer of ${formatBytes(options.bufferBytes)} cannot hold two chunks of ${formatBytes(options.chunkSize)}: use --buffer ${Math.ceil(minimumBuffer(options.chunkSize) / 2 ** 20)}MiB or more, or a smaller --chunk-size`,
      'BP_BUFFER_TOO_SMALL',
    );
  }
}

function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0] ?? text;
}
