import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import { Notifier, raceAbort } from '../abort.js';
import { IntegrityError, SourceFailedError, StreamConflictError } from '../errors.js';
import { ChunkFlag, chunkKey, payloadCheckName, payloadIntact, readChunk } from '../protocol/chunk.js';
import { MANIFEST_KEY, type Manifest, parseManifest } from '../protocol/manifest.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { sharedAbortController } from '../shared-abort.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import { isPreconditionFailure, type ObjectStore } from '../store/store.js';
import { fetchChunkObject, type MissingChunkPolicy } from './chunk-fetch.js';
import { waitForStream } from './manifest-follow.js';
import { Watermark } from './watermark.js';

export interface RelayOptions {
  source: ObjectStore;
  destination: ObjectStore;
  /** Chunk copies in flight at most; each holds one chunk object in memory. */
  concurrency: number;
  pollIntervalMs: number;
  retry?: RetryPolicy;
  missingChunk?: MissingChunkPolicy;
  signal?: AbortSignal;
  onProgress?: (progress: RelayProgress) => void;
  onWaiting?: (what: string | null) => void;
}

export interface RelayProgress {
  streamId: string;
  /** Chunks copied by this run (not counting those a previous run had already published). */
  chunksCopied: number;
  storedBytesCopied: number;
  /** The source manifest's watermark, as last seen. */
  sourceWatermark: number;
  /** The watermark of the manifest last written to the destination. */
  publishedWatermark: number;
  state: Manifest['state'];
}

export interface RelaySummary {
  streamId: string;
  state: Manifest['state'];
  /** Chunks in the stream, and how many of them this run copied (the rest a previous run did). */
  chunks: number;
  chunksCopied: number;
  storedBytesCopied: number;
  rawBytes: number;
  seconds: number;
}

/**
 * Follows a stream in one store and copies its objects verbatim to another as they appear: every
 * chunk is checked (header, stream id, index, payload check) on the way, and a manifest is
 * written to the destination only once every chunk it counts is there. The destination's own
 * manifest says how far an earlier run got, so a restarted relay carries on from there.
 */
export async function relay(options: RelayOptions): Promise<RelaySummary> {
  const { source, destination } = options;
  const started = performance.now();
  const abort = sharedAbortController();
  const onOuterAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = abort.signal;
  const readSource = () => withRetry(() => readManifestCopy(source, signal), { policy: options.retry, signal });
  try {
    let latest = await waitForStream(source, () => readManifestCopy(source, signal), {
      pollIntervalMs: options.pollIntervalMs,
      retry: options.retry,
      signal,
      onWaiting: options.onWaiting,
    });
    const streamId = latest.manifest.streamId;
    const streamIdBytes = streamIdToBytes(streamId);
    const existing = await withRetry(() => readManifestCopy(destination, signal), { policy: options.retry, signal });
    if (existing) assertRelayOf(existing.manifest, latest.manifest, destination);
    let destinationEtag = existing?.etag;
    let published = existing;
    const resumeFrom = published?.manifest.watermark ?? 0;
    // Source manifests seen but not yet published, oldest first: each goes out once the chunks it counts are copied.
    let pending: ManifestCopy[] = [latest];

    const copies = pLimit(options.concurrency);
    const copied = new Watermark(); // counts from resumeFrom
    const progressed = new Notifier();
    let scheduled = resumeFrom;
    let chunksCopied = 0;
    let storedBytesCopied = 0;

    const report = () =>
      options.onProgress?.({
        streamId,
        chunksCopied,
        storedBytesCopied,
        sourceWatermark: latest.manifest.watermark,
        publishedWatermark: published?.manifest.watermark ?? 0,
        state: latest.manifest.state,
      });

    const copyVerified = async (index: number): Promise<Uint8Array> => {
      for (let attempt = 1; ; attempt++) {
        const object = await fetchChunkObject(source, index, {
          watermark: latest.manifest.watermark,
          retry: options.retry,
          missing: options.missingChunk,
          signal,
          // Only the lowest chunk not yet copied holds the destination's manifest back.
          onWaiting: (what) => {
            if (index === resumeFrom + copied.value) options.onWaiting?.(what);
          },
        });
        try {
          verifyChunkObject(object, chunkKey(index), index, streamIdBytes, latest.manifest.encryption !== undefined);
          return object;
        } catch (error) {
          // Read a damaged chunk once more: the store or the network may have hiccupped.
          if (!(error instanceof IntegrityError) || attempt >= 2) throw error;
        }
      }
    };

    const copyChunk = async (index: number) => {
      const object = await copyVerified(index);
      await withRetry(() => destination.put(chunkKey(index), object, { signal }), { policy: options.retry, signal });
      chunksCopied++;
      storedBytesCopied += object.length;
    };

    const schedule = () => {
      while (scheduled < latest.manifest.watermark) {
        const index = scheduled++;
        copies(() => copyChunk(index)).then(
          () => {
            copied.finish(index - resumeFrom, 0, 0);
            progressed.notify();
          },
          (error: unknown) => abort.abort(error),
        );
      }
    };

    const publish = async (next: ManifestCopy) => {
      try {
        const put = await withRetry(
          () =>
            destination.put(
              MANIFEST_KEY,
              next.body,
              destinationEtag === undefined ? { ifNoneMatch: true, signal } : { ifMatch: destinationEtag, signal },
            ),
          { policy: options.retry, signal },
        );
        destinationEtag = put.etag;
      } catch (error) {
        if (!isPreconditionFailure(error)) throw error;
        // A lost reply to our own write looks like a refused condition: check before calling it a race.
        const current = await readManifestCopy(destination, signal).catch(() => null);
        if (!current || !sameBytes(current.body, next.body)) {
          throw new StreamConflictError(
            'BP_RELAY_RACE',
            `the manifest at ${destination.description}/${MANIFEST_KEY} was changed by someone else while this relay wrote it: run one relay per destination`,
            { cause: error },
          );
        }
        destinationEtag = current.etag;
      }
      published = next;
      report();
    };

    let pollDue: Promise<'poll'> | undefined;
    for (;;) {
      schedule();
      const done = resumeFrom + copied.value;
      const readyAt = pending.findLastIndex((copy) => copy.manifest.watermark <= done);
      const ready = pending[readyAt];
      if (ready) {
        pending = pending.slice(readyAt + 1);
        if (!published || !sameBytes(published.body, ready.body)) await publish(ready);
      }
      if (latest.manifest.state !== 'sending' && published && sameBytes(published.body, latest.body)) break;
      // Wake up when a copy completes (to publish sooner) or when it is time to look at the source
      // again; one poll timer at a time, however many copies complete in between.
      if (!pollDue) {
        pollDue = sleep(options.pollIntervalMs, undefined, { signal }).then(() => 'poll' as const);
        pollDue.catch(() => {});
      }
      const reason = await raceAbort(Promise.race([pollDue, progressed.wait().then(() => 'copied' as const)]), signal);
      if (reason === 'poll') pollDue = undefined;
      if (reason === 'poll' && latest.manifest.state === 'sending') {
        const next = await readSource();
        if (!next) {
          throw new StreamConflictError(
            'BP_MANIFEST_GONE',
            `the manifest of stream ${streamId} disappeared from ${source.description}: the stream was deleted while relaying`,
          );
        }
        assertSameSource(latest.manifest, next.manifest, source);
        if (!sameBytes(next.body, latest.body)) {
          latest = next;
          pending.push(next);
        }
      }
      report();
    }
    const final = latest.manifest;
    if (final.state === 'aborted') {
      throw new SourceFailedError(
        'BP_STREAM_ABORTED',
        `stream ${source.description} was aborted by its sender (${final.abortReason ?? 'no reason given'}); the copy at ${destination.description} is marked aborted too`,
      );
    }
    return {
      streamId,
      state: final.state,
      chunks: final.watermark,
      chunksCopied,
      storedBytesCopied,
      rawBytes: final.rawBytes,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (caught) {
    throw signal.aborted && signal.reason !== undefined ? signal.reason : caught;
  } finally {
    abort.abort(new Error('relay finished'));
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** A manifest with the exact bytes it was stored as: the relay copies those, not a re-encoding. */
interface ManifestCopy {
  manifest: Manifest;
  body: Uint8Array;
  etag: string;
}

async function readManifestCopy(store: ObjectStore, signal: AbortSignal): Promise<ManifestCopy | null> {
  const object = await store.get(MANIFEST_KEY, { signal });
  if (!object) return null;
  return { manifest: parseManifest(object.body, `${store.description}/${MANIFEST_KEY}`), body: object.body, etag: object.etag };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Structure, stream id, index, encryption flag and payload check: what can be checked without decompressing (or a key). */
function verifyChunkObject(object: Uint8Array, key: string, index: number, streamId: Uint8Array, encrypted: boolean): void {
  const { header, payload } = readChunk(object, key);
  if (!Buffer.from(header.streamId).equals(streamId)) {
    throw new IntegrityError('BP_CHUNK_FOREIGN', `chunk ${key} belongs to another stream; it was not copied`);
  }
  if (header.index !== index) {
    throw new IntegrityError('BP_CHUNK_MISPLACED', `chunk ${key} holds chunk ${header.index} (misplaced); it was not copied`);
  }
  if (((header.flags & ChunkFlag.encrypted) !== 0) !== encrypted) {
    const is = encrypted ? 'is not encrypted, but its stream is' : 'is encrypted, but its stream is not';
    throw new IntegrityError(encrypted ? 'BP_CHUNK_NOT_ENCRYPTED' : 'BP_CHUNK_ENCRYPTED', `chunk ${key} ${is}; it was not copied`);
  }
  if (!payloadIntact(header, payload)) {
    throw new IntegrityError(
      'BP_CHUNK_CHECKSUM',
      `chunk ${key} failed its ${payloadCheckName(header.version)} check (altered or damaged in the store); it was not copied`,
    );
  }
}

function assertRelayOf(destination: Manifest, source: Manifest, store: ObjectStore): void {
  if (destination.streamId !== source.streamId) {
    throw new StreamConflictError(
      'BP_RELAY_OTHER_STREAM',
      `${store.description} already holds stream ${destination.streamId}, not ${source.streamId} which is being relayed: use another destination URL, or delete the old stream there`,
    );
  }
  if (destination.watermark > source.watermark) {
    throw new IntegrityError(
      'BP_WATERMARK_REGRESSED',
      `the copy at ${store.description} counts ${destination.watermark} chunks but its source only ${source.watermark}: the source manifest was altered`,
    );
  }
}

function assertSameSource(known: Manifest, latest: Manifest, store: ObjectStore): void {
  if (latest.streamId !== known.streamId) {
    throw new StreamConflictError(
      'BP_STREAM_REPLACED',
      `the manifest at ${store.description} now belongs to stream ${latest.streamId}, not ${known.streamId}: the stream was replaced while relaying`,
    );
  }
  if (latest.watermark < known.watermark) {
    throw new IntegrityError(
      'BP_WATERMARK_REGRESSED',
      `the watermark of stream ${known.streamId} at ${store.description} went back from ${known.watermark} to ${latest.watermark}: the manifest was altered`,
    );
  }
}
