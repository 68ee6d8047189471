import pLimit from 'p-limit';
import { raceAbort } from '../abort.js';
import { chunkObjectBound } from '../codec/codec.js';
import type { EncodeResult } from '../codec/codec-jobs.js';
import { CodecPool } from '../codec/codec-pool.js';
import { SlabPool } from '../codec/slab-pool.js';
import { IntegrityError, UsageError } from '../errors.js';
import { type ChunkVersion, chunkKey } from '../protocol/chunk.js';
import type { EncryptionKey, StreamKeys } from '../protocol/encryption.js';
import { assertChunkSize, DEFAULT_BUFFER_BYTES, MAX_LEVEL, MIN_LEVEL } from '../protocol/limits.js';
import {
  createManifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type SenderInfo,
  type StreamState,
  type VersionedManifest,
} from '../protocol/manifest.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { encryptionForNewStream, streamKeysFor } from '../protocol/stream-encryption.js';
import { newStreamId, streamIdToBytes } from '../protocol/stream-id.js';
import { sharedAbortController } from '../shared-abort.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';
import { formatBytes } from '../units.js';
import { type ChunkReader, IterableChunkReader, isChunkReader } from './chunk-reader.js';
import { confirmCompleteStream } from './complete-check.js';
import { LagGate, type LagLimit } from './lag-gate.js';
import { ManifestWriter } from './manifest-writer.js';
import { checkStoredPrefix } from './resume-check.js';
import { chunksStoredFrom, storedChunkMatches } from './stored-beyond.js';
import { claimStream, DEFAULT_STALE_AFTER_MS, findTakeoverTarget, senderInfo } from './takeover.js';
import { Watermark } from './watermark.js';

export interface SendOptions {
  store: ObjectStore;
  /** The stream to send: a ChunkReader, or any async iterable of bytes such as a Node stream. */
  source: ChunkReader | AsyncIterable<Uint8Array>;
  /** Settles when whatever produces `source` has finished; rejects when it failed (non-zero exit). */
  sourceExit?: Promise<void>;
  chunkSize: number;
  level: number;
  /**
   * The chunk format version to write (docs/FORMAT.md §8): the latest by default, 1 for readers
   * that predate version 2. Each chunk says its own version, so a takeover may write another one.
   */
  chunkVersion?: ChunkVersion;
  /** Uploads in flight at most. */
  concurrency: number;
  /** Bytes of chunk memory at most (read-ahead, compression and uploads together). */
  bufferBytes: number;
  manifestIntervalMs?: number;
  heartbeatIntervalMs?: number;
  /**
   * Continue the stream already at the root when its sender is gone (aborted, or a `sending`
   * heartbeat older than `staleAfterMs`): the source is read from its start again and checked
   * against the stored chunks, and only the rest is uploaded. Without a stream there, starts one.
   */
  takeover?: boolean;
  /** With `takeover`: how old a `sending` stream's heartbeat must be (default DEFAULT_STALE_AFTER_MS). */
  staleAfterMs?: number;
  /**
   * Lag-aware backpressure (`--max-lag`): no chunk is read from the source while it would be
   * `lag.maxLag` or more chunks beyond the slowest active receiver's published position (LagGate).
   */
  lag?: LagLimit;
  /** Encrypt every chunk (docs/SECURITY.md); a stream being taken over must have been started with the same key. */
  encryptionKey?: EncryptionKey;
  /**
   * An estimate of the source's length (`--size`, `zfs send -nP`), published in the manifest as
   * `expectedRawBytes` for receivers' percent and ETA. Not a limit: the source may end before or after it.
   */
  expectedRawBytes?: number;
  codec?: CodecPool;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  onProgress?: (progress: SendProgress) => void;
}

export interface SendProgress {
  streamId: string;
  /** `verifying`: a takeover re-reads the chunks the stream already holds and checks them; then `sending`. */
  phase: 'verifying' | 'sending';
  /** Chunks stored by an earlier sender, verified rather than uploaded; 0 for a new stream. */
  resumedFrom: number;
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
  /** The stream digest (StreamDigest): SHA-256 (keyed when encrypted) over the chunks' raw digests. */
  digest: string;
  seconds: number;
  /** Chunks 0 … resumedFrom − 1 were stored already and verified against the source; 0 for a new stream. */
  resumedFrom: number;
  /** Chunks this sender uploaded. */
  chunksUploaded: number;
  /** Chunks at or beyond the taken-over watermark that the dead sender had stored and that matched the source: kept, not uploaded. */
  chunksReused?: number;
  /** Time spent verifying the stored chunks. */
  verifySeconds: number;
  /** The sender whose stream this one took over, with its state and heartbeat age then. */
  tookOver?: { sender: SenderInfo; state: StreamState; heartbeatAgeMs: number };
}

/**
 * The send pipeline: read → cut → compress + checksum on all cores → upload in parallel → advance
 * the manifest's watermark. Memory is a fixed set of slabs (`bufferBytes`), so a slow store stops
 * the reading, never grows the heap. On any failure every in-flight task is awaited, the manifest
 * is marked aborted (best effort) and the first error is rethrown. With `takeover`, the stored
 * prefix of the stream is first verified against the source (checkStoredPrefix) and claimed
 * (claimStream); a failure before the claim writes nothing.
 */
export async function send(options: SendOptions): Promise<SendSummary> {
  validate(options);
  const started = performance.now();
  const { store, chunkSize } = options;
  const target = options.takeover
    ? await findTakeoverTarget({
        store,
        chunkSize,
        level: options.level,
        staleAfterMs: options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS,
        retry: options.retry,
        signal: options.signal,
      })
    : null;
  if (target?.manifest.state === 'complete') return confirmCompleteStream(options, target, started);
  const created = target ? undefined : await createStream(options);
  let owned = created?.stream;
  const streamId = target?.manifest.streamId ?? (owned as VersionedManifest).manifest.streamId;
  const streamIdBytes = streamIdToBytes(streamId);
  const keys = target ? streamKeysFor(target.manifest, options.encryptionKey, store.description) : created?.keys;
  const resumedFrom = target?.manifest.watermark ?? 0;
  // Raw and stored bytes below resumedFrom; chunks from there on are counted by `watermark`.
  const below = { rawBytes: target?.manifest.rawBytes ?? 0, storedBytes: target?.manifest.storedBytes ?? 0 };

  const abort = sharedAbortController();
  let firstError: unknown;
  const fail = (error: unknown) => {
    firstError ??= error;
    abort.abort(error);
  };
  const onOuterAbort = () => fail(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = abort.signal;

  let writer: ManifestWriter | undefined;
  const slabs = new SlabPool(chunkObjectBound(chunkSize), senderSlabs(options.bufferBytes, chunkSize));
  const codec = options.codec ?? new CodecPool();
  const uploads = pLimit(options.concurrency);
  const watermark = new Watermark(); // of chunks from resumedFrom on
  const inFlight = new Set<Promise<void>>();
  const reader = isChunkReader(options.source) ? options.source : new IterableChunkReader(options.source);
  const streamDigest = new StreamDigest(keys);
  let phase: SendProgress['phase'] = target ? 'verifying' : 'sending';
  let chunksRead = 0;
  let rawBytesRead = 0;
  options.sourceExit?.catch(fail);

  const position = () => ({
    watermark: resumedFrom + watermark.value,
    rawBytes: below.rawBytes + watermark.rawBytes,
    storedBytes: below.storedBytes + watermark.storedBytes,
  });
  const report = () => {
    const at = position();
    options.onProgress?.({
      streamId,
      phase,
      resumedFrom,
      chunksRead,
      rawBytesRead,
      watermark: at.watermark,
      rawBytesStored: at.rawBytes,
      storedBytes: at.storedBytes,
      uploadsInFlight: uploads.activeCount,
    });
  };

  // A takeover's chunks that the dead sender stored beyond its watermark: reused when they match.
  let storedBeyond = new Map<number, number>();
  let chunksReused = 0;
  // Chunks read but not compressed yet. Reading stops at readAhead of them, before --buffer is
  // full: a source faster than the codec threads otherwise fills every slab with raw chunks, and
  // first touches of 512 MiB of slabs cost page faults and collections (docs/PERFORMANCE.md).
  // A slow store still fills the buffer, with compressed chunks waiting for their upload.
  const encoding = new Set<Promise<void>>();
  const readAhead = 2 * codec.size;
  const storeChunk = async (index: number, rawLength: number, compressed: Promise<EncodeResult>): Promise<void> => {
    const encoded = await compressed;
    slabs.release(encoded.raw);
    streamDigest.add(index, encoded.rawDigest);
    const size = storedBeyond.get(index);
    const stored =
      size !== undefined &&
      (await storedChunkMatches(
        store,
        { index, size, rawLength, rawDigest: encoded.rawDigest },
        { streamId: streamIdBytes, encrypted: keys !== undefined },
        { retry: options.retry, signal },
      ));
    if (stored) chunksReused++;
    else {
      const object = encoded.out.subarray(0, encoded.objectLength);
      await uploads(() => withRetry(() => store.put(chunkKey(index), object, { signal }), { policy: options.retry, signal }));
    }
    slabs.release(encoded.out);
    watermark.finish(index - resumedFrom, rawLength, stored ? (size as number) : encoded.objectLength);
    writer?.set(position());
    report();
  };

  let verifySeconds = 0;
  try {
    let sourceEnded = false;
    if (target) {
      const verifyStarted = performance.now();
      const buffer = await slabs.acquire(signal);
      const prefix = await checkStoredPrefix({
        store,
        reader,
        buffer,
        streamId: streamIdBytes,
        keys,
        chunkSize,
        chunks: resumedFrom,
        concurrency: options.concurrency,
        retry: options.retry,
        signal,
        onVerified: (index, rawDigest, rawLength) => {
          streamDigest.add(index, rawDigest);
          chunksRead++;
          rawBytesRead += rawLength;
          report();
        },
      }).finally(() => slabs.release(buffer));
      if (prefix.rawBytes !== below.rawBytes || prefix.storedBytes !== below.storedBytes) {
        throw new IntegrityError(
          'BP_MANIFEST_COUNTS',
          `the manifest of ${store.description} counts ${below.rawBytes} raw and ${below.storedBytes} stored bytes below chunk ${resumedFrom}, its chunks hold ${prefix.rawBytes} and ${prefix.storedBytes}: the manifest was altered; the stream cannot be resumed`,
        );
      }
      sourceEnded = prefix.endsShort;
      verifySeconds = (performance.now() - verifyStarted) / 1000;
      owned = await claimStream(store, target, { retry: options.retry, signal, expectedRawBytes: options.expectedRawBytes });
      storedBeyond = await chunksStoredFrom(store, resumedFrom, { retry: options.retry, signal });
      phase = 'sending';
    }
    writer = new ManifestWriter(store, owned as VersionedManifest, {
      intervalMs: options.manifestIntervalMs ?? 1000,
      heartbeatMs: options.heartbeatIntervalMs ?? 10_000,
      retry: options.retry,
      onError: fail,
    });
    writer.start();
    const lagGate = options.lag ? new LagGate(store, streamId, options.lag, options.retry) : undefined;
    for (let index = resumedFrom; !sourceEnded; index++) {
      await lagGate?.admit(index, signal); // before reading: chunks held back stay in the source, not in memory
      while (encoding.size >= readAhead) await raceAbort(Promise.race(encoding), signal);
      const raw = await slabs.acquire(signal);
      const rawLength = await reader.fill(raw, chunkSize, signal);
      if (rawLength === 0) {
        slabs.release(raw);
        break;
      }
      chunksRead++;
      rawBytesRead += rawLength;
      const out = await slabs.acquire(signal);
      const encoded = codec.encode({
        raw,
        rawLength,
        out,
        streamId: streamIdBytes,
        index,
        level: options.level,
        keys,
        chunkVersion: options.chunkVersion,
      });
      const task = storeChunk(index, rawLength, encoded).catch(fail);
      const compressed = encoded.then(
        () => {},
        () => {},
      );
      encoding.add(compressed);
      void compressed.then(() => encoding.delete(compressed));
      inFlight.add(task);
      void task.finally(() => inFlight.delete(task));
      report();
      sourceEnded = rawLength < chunkSize;
    }
    await Promise.all(inFlight);
    if (firstError !== undefined) throw firstError;
    await options.sourceExit;
    if (firstError !== undefined) throw firstError;
    const digest = streamDigest.digest();
    const at = position();
    await writer.finish({ state: 'complete', ...at, final: { chunks: at.watermark, rawBytes: at.rawBytes, digest } });
    return {
      streamId,
      chunks: at.watermark,
      rawBytes: at.rawBytes,
      storedBytes: at.storedBytes,
      digest,
      seconds: (performance.now() - started) / 1000,
      resumedFrom,
      chunksUploaded: at.watermark - resumedFrom - chunksReused,
      chunksReused,
      verifySeconds,
      tookOver: target
        ? { sender: target.manifest.sender, state: target.manifest.state, heartbeatAgeMs: target.heartbeatAgeMs }
        : undefined,
    };
  } catch (error) {
    fail(error);
    await Promise.allSettled(inFlight);
    await reader.close().catch(() => {});
    // Only a sender that owns the manifest marks it: a takeover that failed before its claim leaves the stream as it found it.
    await writer?.finish({ state: 'aborted', abortReason: oneLine(firstError), ...position() }).catch(() => {});
    throw firstError;
  } finally {
    writer?.stop();
    options.signal?.removeEventListener('abort', onOuterAbort);
    if (!options.codec) await codec.close();
  }
}

/** Creates a new stream's manifest (create-only): BP_STREAM_EXISTS when the root holds one. */
async function createStream(options: SendOptions): Promise<{ stream: VersionedManifest; keys?: StreamKeys }> {
  const now = new Date().toISOString();
  const streamId = newStreamId();
  const { keys, record } = encryptionForNewStream(options.encryptionKey, streamId);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    streamId,
    createdAt: now,
    updatedAt: now,
    chunkSize: options.chunkSize,
    codec: 'zstd',
    level: options.level,
    state: 'sending',
    watermark: 0,
    rawBytes: 0,
    storedBytes: 0,
    ...(options.expectedRawBytes === undefined ? {} : { expectedRawBytes: options.expectedRawBytes }),
    sender: senderInfo(now),
    ...(record && { encryption: record }),
  };
  const etag = await withRetry(() => createManifest(options.store, manifest), { policy: options.retry, signal: options.signal });
  return { stream: { manifest, etag }, keys };
}

/**
 * How many slabs a memory budget buys. A slab holds a raw chunk or its chunk object; a chunk needs
 * two while it is compressed (raw in, object out) and one while it uploads.
 */
export function senderSlabs(bufferBytes: number, chunkSize: number): number {
  return Math.floor(bufferBytes / chunkObjectBound(chunkSize));
}

/** The most memory the default --buffer takes by itself, whatever the number of cores (1.5 GiB). */
export const MAX_DEFAULT_SENDER_BUFFER = 1536 * 1024 * 1024;

/**
 * The default --buffer: 512 MiB, or more on a machine with many codec threads, where 512 MiB of
 * 16 MiB slabs cannot keep them all busy (16 threads compressing hold 32 slabs). Enough for every
 * upload in flight, every thread compressing a chunk and one more chunk read for every other
 * thread, up to MAX_DEFAULT_SENDER_BUFFER: beyond that, memory is the operator's call.
 */
export function defaultSenderBuffer(chunkSize: number, concurrency: number, threads: number): number {
  const slabs = concurrency + 2 * threads + Math.ceil(threads / 2) + 1;
  const wanted = Math.max(DEFAULT_BUFFER_BYTES, slabs * chunkObjectBound(chunkSize));
  return Math.max(Math.min(wanted, MAX_DEFAULT_SENDER_BUFFER), minimumBuffer(chunkSize));
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
  const expected = options.expectedRawBytes;
  if (expected !== undefined && !(Number.isSafeInteger(expected) && expected >= 0)) {
    throw new RangeError(`expectedRawBytes must be a non-negative safe integer, got ${expected}`);
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
