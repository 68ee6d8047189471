import pLimit from 'p-limit';
import type { IntegrityError } from '../errors.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';
import { ChunkFlag, type ChunkHeader, chunkKey, HEADER_FRAME_LENGTH, readChunkHeader } from './chunk.js';
import type { StreamKeys } from './encryption.js';
import { streamIdFromBytes } from './stream-id.js';

/**
 * Words a problem with chunk `key`: `code` is a §3 code (BP_CHUNK_CORRUPT, BP_CHUNK_VERSION,
 * BP_CHUNK_FOREIGN, BP_CHUNK_MISPLACED, BP_CHUNK_MISSING) and `what` a predicate ("is corrupt:
 * header checksum mismatch", "is missing though the manifest counts 12 chunks").
 */
export type StoredChunkProblem = (key: string, code: string, what: string) => IntegrityError;

export interface HeaderPrefetchOptions {
  store: ObjectStore;
  /** The stream the headers must belong to (16 bytes). */
  streamId: Uint8Array;
  /** Present when the stream is encrypted: its chunks must then be, and otherwise must not be. */
  keys?: StreamKeys;
  /** Headers of chunks 0 … chunks − 1 are read; all are below the manifest's watermark. */
  chunks: number;
  /** Reads in flight at most. */
  concurrency: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  problem: StoredChunkProblem;
}

/**
 * Reads the header frames of chunks 0 … chunks − 1 (128-byte ranged GETs, the payload is never
 * read) ahead of the caller, `concurrency` at a time and a bounded window ahead, and checks each
 * as docs/FORMAT.md §3 steps 1–7, 9 and 10 do: for those who compare stored chunks with bytes they
 * already have by their raw digest — a resuming sender (its source) or receiver (its output).
 */
export class HeaderPrefetch {
  #options: HeaderPrefetchOptions;
  #limit: ReturnType<typeof pLimit>;
  #window: number;
  #next = 0;
  #pending = new Map<number, Promise<ChunkHeader>>();
  #stopped = false;

  constructor(options: HeaderPrefetchOptions) {
    this.#options = options;
    this.#limit = pLimit(options.concurrency);
    this.#window = Math.max(64, 16 * options.concurrency);
  }

  /** The checked header of chunk `index`; call in index order. */
  get(index: number): Promise<ChunkHeader> {
    while (this.#next < Math.min(this.#options.chunks, index + this.#window)) this.#fetch(this.#next++);
    const header = this.#pending.get(index);
    if (!header) throw new Error(`bug: header of chunk ${index} requested out of order`);
    this.#pending.delete(index);
    return header;
  }

  /** Starts no more reads; those in flight finish on their own (their failures are ignored). */
  stop(): void {
    this.#stopped = true;
    this.#limit.clearQueue();
  }

  #fetch(index: number): void {
    const { store, retry, signal, streamId, problem, chunks, keys } = this.#options;
    const key = chunkKey(index);
    const header = this.#limit(async () => {
      if (this.#stopped) throw new Error('header prefetch stopped');
      const object = await withRetry(() => store.get(key, { range: { start: 0, end: HEADER_FRAME_LENGTH }, signal }), {
        policy: retry,
        signal,
      });
      if (!object) throw problem(key, 'BP_CHUNK_MISSING', `is missing though the manifest counts ${chunks} chunks`);
      return checkStoredHeader(object.body, key, index, streamId, problem, keys !== undefined);
    });
    header.catch(() => {});
    this.#pending.set(index, header);
  }
}

/** A stored chunk's header frame, checked as far as that is possible without its payload. */
export function checkStoredHeader(
  frame: Uint8Array,
  key: string,
  index: number,
  streamId: Uint8Array,
  problem: StoredChunkProblem,
  encrypted: boolean,
): ChunkHeader {
  const header = readChunkHeader(frame, (code, detail) =>
    problem(key, code, code === 'BP_CHUNK_VERSION' ? `has ${detail}` : `is corrupt: ${detail}`),
  );
  if (!Buffer.from(header.streamId).equals(streamId)) {
    throw problem(key, 'BP_CHUNK_FOREIGN', `belongs to stream ${streamIdFromBytes(header.streamId)}, not ${streamIdFromBytes(streamId)}`);
  }
  if (header.index !== index) throw problem(key, 'BP_CHUNK_MISPLACED', `holds chunk ${header.index}, not ${index}`);
  if (((header.flags & ChunkFlag.encrypted) !== 0) !== encrypted) {
    throw encrypted
      ? problem(key, 'BP_CHUNK_NOT_ENCRYPTED', 'is not encrypted, but its stream is')
      : problem(key, 'BP_CHUNK_ENCRYPTED', 'is encrypted, but its stream is not');
  }
  return header;
}
