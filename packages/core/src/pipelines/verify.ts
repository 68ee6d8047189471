import { CodecPool } from '../codec/codec-pool.js';
import { SlabPool } from '../codec/slab-pool.js';
import { ExitCode, IntegrityError } from '../errors.js';
import { CHUNKS_PREFIX, chunkKey, parseChunkKey } from '../protocol/chunk.js';
import type { EncryptionKey } from '../protocol/encryption.js';
import { MANIFEST_KEY, type Manifest, readManifest } from '../protocol/manifest.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { streamKeysFor } from '../protocol/stream-encryption.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import { type ObjectStore, StoreError } from '../store/store.js';

export interface VerifyOptions {
  store: ObjectStore;
  /** Chunks being read or decoded at most; each holds one chunk object and one raw buffer. */
  concurrency: number;
  /** The key of an encrypted stream: its chunks are decrypted and authenticated too. Required for one, refused for a plain stream. */
  encryptionKey?: EncryptionKey;
  codec?: CodecPool;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  /** Problems kept in the report; the rest are only counted (a store of wrong chunks must not fill memory). */
  maxProblems?: number;
  onProgress?: (progress: VerifyProgress) => void;
}

export interface VerifyProgress {
  chunksChecked: number;
  chunksExpected: number;
  storedBytes: number;
  /** Stored bytes of the chunks the manifest counts: what storedBytes comes to when all is well. */
  storedBytesExpected: number;
  problems: number;
}

export interface VerifyProblem {
  /** The object at fault: a chunk key, or `manifest.json` for the stream digest. */
  key: string;
  /** The same BP_* code the receiver would fail with, or BP_CHUNK_UNEXPECTED for a stray object. */
  code: string;
  message: string;
  /** For a run of missing chunks, reported as one problem: the last key of the run. */
  lastKey?: string;
}

/**
 * ok: complete and every check passed. incomplete: still `sending`, everything below the watermark
 * is good. aborted: the sender gave up, everything it stored is good. failed: at least one problem.
 */
export type VerifyVerdict = 'ok' | 'incomplete' | 'aborted' | 'failed';

export interface VerifyReport {
  stream: string;
  manifest: Manifest;
  verdict: VerifyVerdict;
  /** Chunks the manifest counts (its watermark); for a complete stream, all of them. */
  chunksExpected: number;
  /** Chunk objects below the watermark that were read and decoded, good or bad. */
  chunksChecked: number;
  /** Chunks below the watermark that are missing or failed a check. */
  chunksBad: number;
  /** Raw bytes of the chunks that passed, and stored bytes of every chunk object read. */
  rawBytes: number;
  storedBytes: number;
  /** Chunk objects at or above the watermark of a sending or aborted stream: allowed there, not checked. */
  chunksBeyondWatermark: number;
  /** Only for a complete stream whose chunks all passed; null otherwise (nothing meaningful to compare). */
  digest: { expected: string; actual: string; matches: boolean } | null;
  /** Sorted by key; at most `maxProblems` of them, `problemsOmitted` more were found. */
  problems: VerifyProblem[];
  problemsOmitted: number;
  seconds: number;
}

const DEFAULT_MAX_PROBLEMS = 10_000;

/**
 * Checks a whole stream where it is stored, without writing anything: every chunk below the
 * watermark is read and fully decoded (header, stream id, index, length, payload check, decryption,
 * decompression, raw digest) on the codec pool; the listing of `chunks/` shows gaps and strays; a complete
 * stream's digest is recomputed and compared with `final.digest`. Unlike the receiver it reports
 * every problem instead of stopping at the first, and it does not wait for missing chunks: it
 * reports what the store holds now. Only the manifest read at the start counts; a stream that is
 * still being written is verified up to the watermark it had then.
 */
export async function verifyStream(options: VerifyOptions): Promise<VerifyReport> {
  const { store } = options;
  const started = performance.now();
  const found = await withRetry(() => readManifest(store), { policy: options.retry, signal: options.signal });
  if (!found) {
    throw new StoreError('not-found', `no stream at ${store.description} (no ${MANIFEST_KEY}): check the URL`);
  }
  const manifest = found.manifest;
  const keys = streamKeysFor(manifest, options.encryptionKey, store.description);
  const codec = options.codec ?? new CodecPool();
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = abort.signal;
  const problems = new ProblemList(options.maxProblems ?? DEFAULT_MAX_PROBLEMS);
  const { watermark, chunkSize } = manifest;
  const streamId = streamIdToBytes(manifest.streamId);
  // The digest needs every chunk; once one is bad it cannot match, and is dropped so that the
  // out-of-order chunks it would otherwise hold back cannot pile up.
  let digest: StreamDigest | null = manifest.state === 'complete' ? new StreamDigest(keys) : null;
  const counts = { checked: 0, bad: 0, rawBytes: 0, storedBytes: 0, beyond: 0 };
  const slabs = new SlabPool(chunkSize, Math.max(1, options.concurrency));
  const inFlight = new Set<Promise<void>>();

  const report = () =>
    options.onProgress?.({
      chunksChecked: counts.checked,
      chunksExpected: watermark,
      storedBytes: counts.storedBytes,
      storedBytesExpected: manifest.storedBytes,
      problems: problems.count,
    });

  const chunkFailed = (problem: VerifyProblem, chunks = 1) => {
    problems.add(problem);
    counts.bad += chunks;
    digest = null;
  };

  const checkChunk = async (index: number, raw: Uint8Array): Promise<void> => {
    const key = chunkKey(index);
    for (let attempt = 1; ; attempt++) {
      const object = await withRetry(() => store.get(key, { signal }), { policy: options.retry, signal });
      if (!object) {
        slabs.release(raw);
        chunkFailed(missing(store, manifest, index, index));
        return;
      }
      // The object's buffer is transferred to the worker: take its size first.
      const storedLength = object.body.length;
      try {
        const decoded = await codec.decode({
          object: object.body,
          key,
          raw,
          streamId,
          index,
          rawLength: expectedRawLength(manifest, index),
          keys,
        });
        slabs.release(decoded.raw);
        digest?.add(index, decoded.rawDigest);
        counts.rawBytes += decoded.rawLength;
        counts.storedBytes += storedLength;
        counts.checked++;
        return;
      } catch (error) {
        // The slab is shared with the codec threads: a failed job leaves it with us, for the next read.
        const readAgain = error instanceof IntegrityError && attempt < 2;
        if (!readAgain) slabs.release(raw);
        if (!(error instanceof IntegrityError)) throw error;
        if (!readAgain) {
          counts.storedBytes += storedLength;
          counts.checked++;
          chunkFailed({ key, code: error.code, message: withoutReceiverWording(error.message) });
          return;
        }
        // Read a bad chunk once more, as the receiver does: damage in transit is not damage in the store.
      }
    }
  };

  const start = async (index: number) => {
    const slab = await slabs.acquire(signal);
    const task = checkChunk(index, slab).then(report, (error: unknown) => abort.abort(error));
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));
  };

  try {
    let next = 0; // the lowest index below the watermark not seen in the listing yet
    for await (const { key } of store.list(CHUNKS_PREFIX, { signal })) {
      const index = parseChunkKey(key);
      if (index === null) {
        problems.add(unexpected(key, `${key} is not a chunk key (12 digits) and was not written by bucketpipe`));
      } else if (index >= watermark) {
        if (manifest.state === 'complete') {
          problems.add(unexpected(key, `chunk ${key} exists, but the stream is complete with ${watermark} chunks`));
        } else {
          counts.beyond++;
        }
      } else if (index >= next) {
        if (index > next) chunkFailed(missing(store, manifest, next, index - 1), index - next);
        next = index + 1;
        await start(index);
      }
    }
    if (next < watermark) chunkFailed(missing(store, manifest, next, watermark - 1), watermark - next);
    await Promise.all(inFlight);
    signal.throwIfAborted();

    if (counts.checked === watermark && counts.bad === 0) {
      const countsProblem = manifestCountsProblem(manifest, counts.rawBytes, counts.storedBytes);
      if (countsProblem) problems.add(countsProblem);
    }
    let digestResult: VerifyReport['digest'] = null;
    const final = manifest.final;
    if (final && digest) {
      const actual = digest.digest();
      digestResult = { expected: final.digest, actual, matches: actual === final.digest };
      if (!digestResult.matches) {
        problems.add({
          key: MANIFEST_KEY,
          code: 'BP_STREAM_CHECKSUM',
          message: `every chunk is intact, but the stream digest ${actual} does not match final.digest ${final.digest} in ${MANIFEST_KEY}: the manifest or the chunk set was altered`,
        });
      }
    }
    report();
    return {
      stream: store.description,
      manifest,
      verdict:
        problems.count > 0 ? 'failed' : manifest.state === 'complete' ? 'ok' : manifest.state === 'sending' ? 'incomplete' : 'aborted',
      chunksExpected: watermark,
      chunksChecked: counts.checked,
      chunksBad: counts.bad,
      rawBytes: counts.rawBytes,
      storedBytes: counts.storedBytes,
      chunksBeyondWatermark: counts.beyond,
      digest: digestResult,
      problems: problems.sorted(),
      problemsOmitted: problems.count - problems.kept,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (caught) {
    const error = signal.aborted && signal.reason !== undefined ? signal.reason : caught;
    abort.abort(error);
    await Promise.allSettled(inFlight);
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    if (!options.codec) await codec.close();
  }
}

/**
 * Exit status of a verification: integrity problems (5) win over an aborted stream (6), because
 * they are what verify is for and they point at the store, which a resend would use again.
 */
export function verifyExitCode(verdict: VerifyVerdict): ExitCode {
  if (verdict === 'failed') return ExitCode.integrity;
  if (verdict === 'aborted') return ExitCode.sourceFailed;
  return ExitCode.ok;
}

/** Exact raw length chunk `index` must have, or null when only the chunk size bounds it. */
function expectedRawLength(manifest: Manifest, index: number): number | null {
  if (index < manifest.watermark - 1) return manifest.chunkSize;
  const final = manifest.final;
  // The last chunk below the watermark of a stream still being written (or aborted) may be short.
  return final ? final.rawBytes - (final.chunks - 1) * manifest.chunkSize : null;
}

/**
 * The manifest's `rawBytes` and `storedBytes` are the sums over the chunks below its watermark
 * (FORMAT §4.3 invariant 3); a takeover relies on them (BP_MANIFEST_COUNTS there too). Only
 * meaningful once every one of those chunks was read and passed.
 */
function manifestCountsProblem(manifest: Manifest, rawBytes: number, storedBytes: number): VerifyProblem | null {
  if (rawBytes === manifest.rawBytes && storedBytes === manifest.storedBytes) return null;
  return {
    key: MANIFEST_KEY,
    code: 'BP_MANIFEST_COUNTS',
    message: `every chunk below the watermark is intact, but they hold ${rawBytes} raw and ${storedBytes} stored bytes, where ${MANIFEST_KEY} says rawBytes ${manifest.rawBytes} and storedBytes ${manifest.storedBytes}: the manifest was altered or written by a faulty sender`,
  };
}

function missing(store: ObjectStore, manifest: Manifest, first: number, last: number): VerifyProblem {
  const below = `the manifest says every chunk below ${manifest.watermark} is stored`;
  if (first === last) {
    return {
      key: chunkKey(first),
      code: 'BP_CHUNK_MISSING',
      message: `chunk ${chunkKey(first)} is missing from ${store.description}; ${below}`,
    };
  }
  return {
    key: chunkKey(first),
    lastKey: chunkKey(last),
    code: 'BP_CHUNK_MISSING',
    message: `chunks ${chunkKey(first)} to ${chunkKey(last)} (${last - first + 1} chunks) are missing from ${store.description}; ${below}`,
  };
}

function unexpected(key: string, message: string): VerifyProblem {
  return { key, code: 'BP_CHUNK_UNEXPECTED', message: `${message}; \`cat chunks/* | zstd -d\` would not rebuild the stream` };
}

/** The codec's messages are written for the receiver; verify has no sink. */
function withoutReceiverWording(message: string): string {
  return message.replace(/; nothing of it was written to the sink$/, '');
}

class ProblemList {
  #kept: VerifyProblem[] = [];
  #count = 0;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get count(): number {
    return this.#count;
  }

  get kept(): number {
    return this.#kept.length;
  }

  add(problem: VerifyProblem): void {
    this.#count++;
    if (this.#kept.length < this.#max) this.#kept.push(problem);
  }

  /** Chunk keys sort in stream order; `manifest.json` after them. */
  sorted(): VerifyProblem[] {
    return [...this.#kept].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}
