import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import { Notifier, raceAbort } from '../abort.js';
import { chunkObjectBound } from '../codec/codec.js';
import type { DecodeResult } from '../codec/codec-jobs.js';
import { CodecPool } from '../codec/codec-pool.js';
import { SlabPool } from '../codec/slab-pool.js';
import { IntegrityError, SourceFailedError, StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import type { EncryptionKey, StreamKeys } from '../protocol/encryption.js';
import { DEFAULT_BUFFER_BYTES } from '../protocol/limits.js';
import { expectedStreamBytes, type Manifest, readManifest } from '../protocol/manifest.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { streamKeysFor } from '../protocol/stream-encryption.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { sharedAbortController } from '../shared-abort.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';
import { fetchChunkObject, type MissingChunkPolicy } from './chunk-fetch.js';
import { ConsumedChunkDeleter } from './consumed-chunk-deleter.js';
import { CursorPublisher } from './cursor-publisher.js';
import { waitForManifest } from './manifest-follow.js';
import { ManifestPollClock } from './manifest-poll-clock.js';
import { ReadAhead } from './read-ahead.js';
import type { ReceiveStart } from './receive-resume.js';
import type { Sink } from './sink.js';

export interface ReceiveOptions {
  store: ObjectStore;
  sink: Sink;
  /** Downloads in flight at most. */
  concurrency: number;
  /** Bytes of chunk memory at most (downloaded objects and decoded chunks waiting for the sink). */
  bufferBytes?: number;
  pollIntervalMs: number;
  receiverId: string;
  codec?: CodecPool;
  retry?: RetryPolicy;
  /** How long a chunk the manifest counts may stay unreadable (a copy still in transit) before it counts as lost. */
  missingChunk?: MissingChunkPolicy;
  signal?: AbortSignal;
  onProgress?: (progress: ReceiveProgress) => void;
  /** Called when the receiver starts or stops waiting for something outside its control. */
  onWaiting?: (what: string | null) => void;
  /** Problems that do not stop the transfer (e.g. the position cannot be published). */
  onWarning?: (message: string) => void;
  /**
   * Where the sink already is (a file from an earlier run, checked by checkReceivedPrefix):
   * called once with the first manifest read, before anything is fetched or written. The sink
   * then holds exactly the chunks 0 … chunks − 1 and gets the rest; their raw digests seed the
   * stream digest, so the final check still covers every byte of the stream. Without it, or
   * when it returns null, the receive starts at chunk 0. `keys` are the stream's when it is
   * encrypted (its raw digests are then HMACs).
   */
  start?: (manifest: Manifest, signal: AbortSignal, keys: StreamKeys | undefined) => Promise<ReceiveStart | null>;
  /** The key of an encrypted stream; refused for a plain one (streamKeysFor). */
  encryptionKey?: EncryptionKey;
  /**
   * Delete the chunk objects the sink has taken (`receive --delete-consumed`, ConsumedChunkDeleter):
   * below the smallest position of this and the stream's other active receivers, in batches, and
   * the rest once the sink has finished. The stream can no longer be received again from the store.
   */
  deleteConsumed?: boolean | { everyChunks?: number; intervalMs?: number };
}

export interface ReceiveProgress {
  streamId: string;
  /** Chunks the sink holds, those it held at the start included. */
  chunksWritten: number;
  rawBytesWritten: number;
  /** Of rawBytesWritten, those the sink held at the start. */
  rawBytesResumed: number;
  /** The sender's watermark as last seen. */
  watermark: number;
  state: Manifest['state'];
  /** The sender's heartbeat in the manifest as last read (RFC 3339); the manifest is re-read while caught up. */
  senderHeartbeatAt: string;
  /** The stream's raw length: exact once `state` is complete, else the sender's estimate; null when unknown (expectedStreamBytes). */
  expectedRawBytes: number | null;
  downloadsInFlight: number;
}

export interface ReceiveSummary {
  streamId: string;
  chunks: number;
  rawBytes: number;
  /** The stream digest (StreamDigest): SHA-256 (keyed when encrypted) over the chunks' raw digests. */
  digest: string;
  seconds: number;
  /** The chunk the receive started at: chunks 0 … resumedFrom − 1 were in the sink already (ReceiveOptions.start); 0 otherwise. */
  resumedFrom: number;
  /** Raw bytes of those chunks. */
  rawBytesResumed: number;
  /** Chunk objects deleted (ReceiveOptions.deleteConsumed). */
  chunksDeleted: number;
}

/**
 * The receive pipeline: follow the manifest → download ahead in parallel → verify and decompress
 * on all cores → write strictly in order into the sink, whose pace (backpressure) bounds how far
 * ahead downloads run. No byte of a chunk reaches the sink before its header and its raw checksum
 * were verified (and, for an encrypted stream, its payload checksum and tag: docs/FORMAT.md §3);
 * on any failure the sink is aborted before it sees end-of-input.
 */
export async function receive(options: ReceiveOptions): Promise<ReceiveSummary> {
  const { store, sink } = options;
  const started = performance.now();
  const codec = options.codec ?? new CodecPool();
  const cursor = new CursorPublisher(store, options.receiverId, {
    intervalMs: Math.max(1000, options.pollIntervalMs),
    onWarning: options.onWarning,
  });
  const abort = sharedAbortController();
  const onOuterAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = abort.signal;
  const sinkFailure = sink.failure;
  sinkFailure.catch((error: unknown) => abort.abort(error));
  let deleter: ConsumedChunkDeleter | undefined;

  try {
    let manifest = await waitForManifest(store, { ...options, signal });
    const streamId = manifest.streamId;
    const streamIdBytes = streamIdToBytes(streamId);
    const chunkSize = manifest.chunkSize;
    const keys = streamKeysFor(manifest, options.encryptionKey, store.description);
    const start = (await options.start?.(manifest, signal, keys)) ?? null;
    if (start) assertStart(start, manifest);
    const resumedFrom = start?.chunks ?? 0;
    const rawBytesResumed = start?.rawBytes ?? 0;
    cursor.start({ streamId, position: resumedFrom, rawBytes: rawBytesResumed, state: 'receiving' });
    if (options.deleteConsumed) {
      const tuning = options.deleteConsumed === true ? {} : options.deleteConsumed;
      deleter = new ConsumedChunkDeleter(store, {
        ...tuning,
        streamId,
        receiverId: options.receiverId,
        retry: options.retry,
        signal,
        onWarning: options.onWarning,
      });
    }

    // `window` chunks at most are fetched ahead of the sink (the memory budget), and they wait
    // for it as they were stored, compressed: only the next `decodeAhead` chunks the sink takes
    // are decoded, each into a raw buffer it holds until the sink took it. A chunk ahead thus
    // costs one object buffer, not an object and a raw chunk: about twice the chunks ahead for the
    // same memory (a window of 27 instead of 15 in 512 MiB of 16 MiB chunks, with 2 codec
    // threads), where a slow chunk holds up the ones behind it. Pools hand out the most recently
    // used buffer first, so a fast sink touches few (each page first touched is a page fault),
    // and an object buffer's pages beyond the largest object it held are never touched. Of the
    // window, only as many chunks are held ahead as the downloads need to keep up (ReadAhead):
    // the decodings and two more at first, more each time the sink had to wait for a download.
    const { window, decodeAhead } = receiveWindow(options.bufferBytes ?? DEFAULT_BUFFER_BYTES, chunkSize, codec.size);
    const readAhead = new ReadAhead(decodeAhead + 2, window);
    const slabs = new SlabPool(chunkSize, decodeAhead);
    const objectSlabs = new SlabPool(chunkObjectBound(chunkSize), window);
    let ahead = 0; // chunks fetched or being fetched, not yet written
    const downloads = pLimit(options.concurrency);
    const decodings = pLimit(codec.size);
    const fetches = new Map<number, Promise<DecodeResult>>();
    const manifestChanged = new Notifier();
    const sinkAdvanced = new Notifier();
    let nextFetch = resumedFrom;
    let position = resumedFrom;
    let rawBytesWritten = rawBytesResumed;
    const streamDigest = start?.digest ?? new StreamDigest(keys);

    const report = () =>
      options.onProgress?.({
        streamId,
        chunksWritten: position,
        rawBytesWritten,
        rawBytesResumed,
        watermark: manifest.watermark,
        state: manifest.state,
        senderHeartbeatAt: manifest.sender.heartbeatAt,
        expectedRawBytes: expectedStreamBytes(manifest),
        downloadsInFlight: downloads.activeCount,
      });

    /** Reads the chunk object into a buffer of the pool when the store can; `inSlab` says whether it did. */
    const download = async (index: number) => {
      const slab = objectSlabs.tryAcquire() ?? (await objectSlabs.acquire(signal));
      return downloads(async () => {
        try {
          const object = await fetchChunkObject(store, index, {
            into: slab,
            watermark: manifest.watermark,
            retry: options.retry,
            missing: options.missingChunk,
            signal,
            // Only the chunk the sink waits for is worth telling about; others are read-ahead.
            onWaiting: (what) => {
              if (index === position) options.onWaiting?.(what);
            },
          });
          // A store that did not read into the slab (it ignored it, or the object is larger than any chunk) leaves it unused.
          const inSlab = object.buffer === slab.buffer;
          if (!inSlab) objectSlabs.release(slab);
          return { object, inSlab };
        } catch (error) {
          objectSlabs.release(slab);
          throw error;
        }
      });
    };

    const fetchChunk = async (index: number): Promise<DecodeResult> => {
      const key = chunkKey(index);
      for (let attempt = 1; ; attempt++) {
        const { object, inSlab } = await download(index);
        readAhead.downloaded(index);
        let raw: Uint8Array | undefined;
        try {
          // Holders of raw buffers are chunks in [position, position + decodeAhead): the pool of
          // decodeAhead never makes the chunk the sink waits for wait behind one it cannot take yet.
          while (index >= position + decodeAhead) await raceAbort(sinkAdvanced.wait(), signal);
          const expectedLength = isLastKnown(manifest, index) ? lastChunkLength(manifest) : null;
          const decoded = await decodings(async () => {
            raw = slabs.tryAcquire() ?? (await slabs.acquire(signal));
            return codec.decode({
              object,
              key,
              raw,
              streamId: streamIdBytes,
              index,
              rawLength: expectedLength,
              keys,
              rawDigestSuffices: true,
            });
          });
          if (inSlab) objectSlabs.release(decoded.object);
          return decoded;
        } catch (error) {
          if (signal.aborted) throw error;
          // The slabs are shared with the codec threads: a failed job leaves them with us.
          if (raw) slabs.release(raw);
          if (inSlab) objectSlabs.release(object);
          if (!(error instanceof IntegrityError) || attempt >= 2) throw error;
          // Read a damaged chunk once more: a store or network hiccup should not stop a migration.
        }
      }
    };

    const fill = () => {
      while (nextFetch < manifest.watermark) {
        if (ahead >= readAhead.limit) {
          readAhead.heldBack(manifest.watermark);
          break;
        }
        ahead++;
        readAhead.started(nextFetch);
        const fetch = fetchChunk(nextFetch);
        fetch.catch(() => {}); // surfaced in order by the writing loop
        fetches.set(nextFetch, fetch);
        nextFetch++;
      }
    };

    const refresh = async () => {
      const latest = await withRetry(() => readManifest(store), { policy: options.retry, signal });
      if (!latest)
        throw new StreamConflictError(
          'BP_MANIFEST_GONE',
          `the manifest of stream ${streamId} disappeared from ${store.description}: the stream was deleted while receiving`,
        );
      assertSameStream(manifest, latest.manifest, store);
      if (latest.manifest.watermark < manifest.watermark) {
        throw new IntegrityError(
          'BP_WATERMARK_REGRESSED',
          `the watermark of stream ${streamId} went back from ${manifest.watermark} to ${latest.manifest.watermark}: the manifest was altered`,
        );
      }
      manifest = latest.manifest;
      fill();
      manifestChanged.notify();
      report();
    };

    // Follows the manifest while the sender is still writing, once fewer than a window of the
    // chunks it counts are left to start: the next ones are known before the downloads run dry.
    // (Waiting until every counted chunk had started left a receiver that was a window behind
    // idle for up to a poll interval at each catch-up, and learning of a stream's last chunks
    // seconds after its sender was done.) Far behind, it does not poll at all. Reads are timed to
    // the sender's writes (ManifestPollClock), at most a poll interval apart.
    const pollClock = new ManifestPollClock(options.pollIntervalMs);
    pollClock.observe(Date.parse(manifest.updatedAt), undefined, Date.now());
    const poller = (async () => {
      while (manifest.state === 'sending') {
        await sleep(pollClock.delayMs(Date.now()), undefined, { signal });
        if (manifest.watermark - nextFetch < window) {
          const sentAt = Date.now();
          await refresh();
          pollClock.observe(Date.parse(manifest.updatedAt), sentAt, Date.now());
        }
      }
    })();
    poller.catch((error: unknown) => abort.abort(error));

    fill();
    for (;;) {
      while (position >= manifest.watermark) {
        if (manifest.state === 'aborted') throw abortedError(manifest, store);
        if (manifest.state === 'complete') break;
        options.onWaiting?.(`the sender (chunk ${position} is not stored yet)`);
        await raceAbort(manifestChanged.wait(), signal);
      }
      options.onWaiting?.(null);
      if (position >= manifest.watermark) break;
      const fetch = fetches.get(position);
      if (!fetch) throw new Error(`bug: chunk ${position} was never fetched`);
      if (readAhead.sinkWaitsFor(position)) fill();
      const decoded = await raceAbort(fetch, signal);
      fetches.delete(position);
      if (decoded.rawLength < chunkSize) {
        // Only the last chunk may be short: hold it until the sender has said it is the last one.
        while (manifest.state === 'sending') await raceAbort(manifestChanged.wait(), signal);
        if (manifest.state === 'aborted') throw abortedError(manifest, store);
        if (!isLastKnown(manifest, position) || decoded.rawLength !== lastChunkLength(manifest)) {
          throw new IntegrityError(
            'BP_CHUNK_LENGTH',
            `chunk ${chunkKey(position)} holds ${decoded.rawLength} bytes but is not the stream's last chunk; nothing of it was written to the sink`,
          );
        }
      }
      const bytes = decoded.raw.subarray(0, decoded.rawLength);
      await raceAbort(sink.write(bytes), signal);
      streamDigest.add(position, decoded.rawDigest);
      slabs.release(decoded.raw);
      ahead--;
      position++;
      sinkAdvanced.notify();
      rawBytesWritten += decoded.rawLength;
      cursor.set({ position, rawBytes: rawBytesWritten });
      deleter?.consumed(position);
      fill();
      report();
    }

    const final = manifest.final;
    const digest = streamDigest.digest();
    if (!final || final.chunks !== position || final.rawBytes !== rawBytesWritten || final.digest !== digest) {
      throw new IntegrityError(
        'BP_STREAM_CHECKSUM',
        `stream ${streamId} does not match its manifest (received ${position} chunks, ${rawBytesWritten} bytes, digest ${digest}; manifest says ${final?.chunks} chunks, ${final?.rawBytes} bytes, digest ${final?.digest}): the sink was stopped before end-of-input`,
      );
    }
    await raceAbort(sink.finish(), signal);
    await cursor.finish({ state: 'done' });
    await deleter?.finish(position);
    return {
      streamId,
      chunks: position,
      rawBytes: rawBytesWritten,
      digest,
      seconds: (performance.now() - started) / 1000,
      resumedFrom,
      rawBytesResumed,
      chunksDeleted: deleter?.deleted ?? 0,
    };
  } catch (caught) {
    const error = signal.aborted && signal.reason !== undefined ? signal.reason : caught;
    abort.abort(error);
    await deleter?.finish();
    await sink.abort().catch(() => {});
    await cursor.finish({ state: 'failed', error: error instanceof Error ? error.message : String(error) }).catch(() => {});
    throw error;
  } finally {
    cursor.stop();
    options.signal?.removeEventListener('abort', onOuterAbort);
    if (!options.codec) await codec.close();
  }
}

/**
 * How a receive's chunk memory (`bufferBytes`) is shared: `decodeAhead` raw chunks (the codec
 * threads' decodings, the chunk the sink is taking and one ready after it; at most half the
 * memory), and the rest in chunk objects downloaded ahead of the sink, `window` of them.
 */
export function receiveWindow(bufferBytes: number, chunkSize: number, codecThreads: number): { window: number; decodeAhead: number } {
  const objectBytes = chunkObjectBound(chunkSize);
  const decodeAhead = Math.max(2, Math.min(codecThreads + 2, Math.floor(bufferBytes / (chunkSize + objectBytes))));
  const window = Math.max(decodeAhead, Math.floor((bufferBytes - decodeAhead * chunkSize) / objectBytes));
  return { window, decodeAhead };
}

/** A start the pipeline cannot continue from is a bug of its caller, not of the stream. */
function assertStart(start: ReceiveStart, manifest: Manifest): void {
  const { chunks, rawBytes } = start;
  const whole = chunks * manifest.chunkSize;
  const endsShort = isLastKnown(manifest, chunks - 1) && rawBytes === lastChunkLength(manifest) + whole - manifest.chunkSize;
  if (!Number.isSafeInteger(chunks) || chunks < 0 || chunks > manifest.watermark || (rawBytes !== whole && !endsShort)) {
    throw new Error(
      `bug: cannot start receiving after ${chunks} chunks and ${rawBytes} bytes of a stream with watermark ${manifest.watermark}`,
    );
  }
  if (start.digest.chunks !== chunks)
    throw new Error(`bug: the stream digest to start with holds ${start.digest.chunks} chunks, not ${chunks}`);
}

function isLastKnown(manifest: Manifest, index: number): boolean {
  return manifest.state === 'complete' && manifest.final !== undefined && index === manifest.final.chunks - 1;
}

function lastChunkLength(manifest: Manifest): number {
  const final = manifest.final;
  if (!final || final.chunks === 0) return 0;
  return final.rawBytes - (final.chunks - 1) * manifest.chunkSize;
}

function assertSameStream(known: Manifest, latest: Manifest, store: ObjectStore): void {
  if (latest.streamId !== known.streamId || latest.chunkSize !== known.chunkSize) {
    throw new StreamConflictError(
      'BP_STREAM_REPLACED',
      `the manifest at ${store.description} now belongs to stream ${latest.streamId}, not ${known.streamId}: the stream was replaced while receiving; start the receiver again for the new stream`,
    );
  }
}

function abortedError(manifest: Manifest, store: ObjectStore): SourceFailedError {
  return new SourceFailedError(
    'BP_STREAM_ABORTED',
    `stream ${store.description} was aborted by its sender (${manifest.abortReason ?? 'no reason given'}); the sink was stopped before end-of-input`,
  );
}
