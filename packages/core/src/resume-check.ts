import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import pLimit from 'p-limit';
import {
  CHUNK_FORMAT_VERSION,
  Codec,
  chunkKey,
  HEADER_BODY_LENGTH,
  HEADER_BODY_MAGIC,
  HEADER_FRAME_LENGTH,
  SKIPPABLE_FRAME_MAGIC,
} from './chunk.js';
import type { ChunkReader } from './chunk-reader.js';
import { IntegrityError } from './errors.js';
import { type RetryPolicy, withRetry } from './retry.js';
import type { ObjectStore } from './store.js';
import { streamIdFromBytes } from './stream-id.js';

export interface StoredPrefixCheck {
  store: ObjectStore;
  /** The source, at its first byte. */
  reader: ChunkReader;
  /** Receives each chunk as it is read; at least `chunkSize` bytes. */
  buffer: Uint8Array;
  streamId: Uint8Array;
  chunkSize: number;
  /** The stored stream's watermark: chunks 0 … chunks − 1 are checked. */
  chunks: number;
  /** Header reads in flight at most. */
  concurrency: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  /** Called in chunk order with each verified chunk's raw SHA-256. */
  onVerified: (index: number, rawSha256: Uint8Array, rawLength: number) => void;
}

export interface StoredPrefix {
  rawBytes: number;
  /** Sizes of the chunk objects, from their headers. */
  storedBytes: number;
  /** The last chunk checked is shorter than a chunk: the stored stream already holds the source's end. */
  endsShort: boolean;
}

/** What a resuming sender needs of a stored chunk: its header frame, parsed and checked (docs/FORMAT.md §2.1). */
interface StoredChunkHeader {
  streamId: Uint8Array;
  index: number;
  rawLength: number;
  payloadLength: number;
  rawSha256: Uint8Array;
}

/**
 * Proves that the source starts with the stream already stored: reads the first `chunks` chunks
 * from the source, hashes each and compares its raw SHA-256 and length with the header of the
 * stored chunk (a 128-byte ranged read; headers are fetched ahead in parallel, so the store's
 * latency does not slow the reading). Nothing is written. A difference is BP_SOURCE_CHANGED
 * naming the first chunk that differs; a missing or damaged stored chunk is an IntegrityError too.
 *
 * One buffer is enough: hashing on this thread (about 1.4 GB/s per core here, SHA-NI) is faster
 * than handing 16 MiB to a worker and back, and the chunk is done with as soon as it is hashed.
 */
export async function checkStoredPrefix(check: StoredPrefixCheck): Promise<StoredPrefix> {
  const headers = new HeaderPrefetch(check);
  let rawBytes = 0;
  let storedBytes = 0;
  let endsShort = false;
  try {
    for (let index = 0; index < check.chunks; index++) {
      const key = chunkKey(index);
      const stored = headers.get(index);
      const length = await check.reader.fill(check.buffer, check.chunkSize, check.signal);
      const rawSha256 = createHash('sha256').update(check.buffer.subarray(0, length)).digest();
      const header = await stored;
      if (length !== header.rawLength) {
        throw sourceChanged(key, `the source gives ${length} bytes for it, the stored chunk holds ${header.rawLength}`);
      }
      if (!rawSha256.equals(header.rawSha256)) throw sourceChanged(key, 'its raw SHA-256 differs from the bytes the source gives now');
      check.onVerified(index, rawSha256, length);
      rawBytes += length;
      storedBytes += HEADER_FRAME_LENGTH + header.payloadLength;
      endsShort = length < check.chunkSize;
      if (endsShort && index < check.chunks - 1) {
        throw damaged(
          key,
          'BP_CHUNK_LENGTH',
          `holds ${length} raw bytes, less than a chunk, but is not the last of the ${check.chunks} chunks the manifest counts`,
        );
      }
    }
  } finally {
    headers.stop();
  }
  return { rawBytes, storedBytes, endsShort };
}

function sourceChanged(key: string, what: string): IntegrityError {
  return new IntegrityError(
    'BP_SOURCE_CHANGED',
    `the source does not match the stored stream at chunk ${key}: ${what} (a different snapshot or command?); nothing was written and the stored stream is as it was: resume with the original source, or send to a new stream URL`,
  );
}

function damaged(key: string, code: string, what: string): IntegrityError {
  return new IntegrityError(
    code,
    `chunk ${key} ${what}: the stored stream is damaged below its watermark and cannot be resumed (bucketpipe verify shows what else is wrong); send to a new stream URL`,
  );
}

/** Reads headers of chunks 0 … chunks − 1 ahead of the caller, `concurrency` at a time, a bounded window ahead. */
class HeaderPrefetch {
  #check: StoredPrefixCheck;
  #limit: ReturnType<typeof pLimit>;
  #window: number;
  #next = 0;
  #pending = new Map<number, Promise<StoredChunkHeader>>();
  #stopped = false;

  constructor(check: StoredPrefixCheck) {
    this.#check = check;
    this.#limit = pLimit(check.concurrency);
    this.#window = Math.max(64, 16 * check.concurrency);
  }

  get(index: number): Promise<StoredChunkHeader> {
    while (this.#next < Math.min(this.#check.chunks, index + this.#window)) this.#fetch(this.#next++);
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
    const { store, retry, signal, streamId } = this.#check;
    const key = chunkKey(index);
    const header = this.#limit(async () => {
      if (this.#stopped) throw new Error('header prefetch stopped');
      const object = await withRetry(() => store.get(key, { range: { start: 0, end: HEADER_FRAME_LENGTH }, signal }), {
        policy: retry,
        signal,
      });
      if (!object) throw damaged(key, 'BP_CHUNK_MISSING', `is missing though the manifest counts ${this.#check.chunks} chunks`);
      return parseStoredHeader(object.body, key, index, streamId);
    });
    header.catch(() => {});
    this.#pending.set(index, header);
  }
}

/**
 * The header checks of readChunk (chunk.ts) that need only the 128-byte header frame: the payload
 * is not read, so its length and SHA-256 are left to receivers, which check them anyway.
 */
function parseStoredHeader(frame: Uint8Array, key: string, index: number, streamId: Uint8Array): StoredChunkHeader {
  const corrupt = (what: string) => damaged(key, 'BP_CHUNK_CORRUPT', `is corrupt: ${what}`);
  if (frame.length < HEADER_FRAME_LENGTH) throw corrupt(`only ${frame.length} bytes, shorter than a chunk header`);
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_FRAME_LENGTH);
  if (view.getUint32(0, true) !== SKIPPABLE_FRAME_MAGIC || view.getUint32(8, true) !== HEADER_BODY_MAGIC) {
    throw corrupt('it does not start with a bucketpipe chunk header');
  }
  const version = view.getUint16(12, true);
  if (version > CHUNK_FORMAT_VERSION) {
    throw damaged(
      key,
      'BP_CHUNK_VERSION',
      `has format version ${version}, newer than this bucketpipe understands (${CHUNK_FORMAT_VERSION})`,
    );
  }
  if (version !== CHUNK_FORMAT_VERSION) throw corrupt(`format version ${version} is not a bucketpipe chunk version`);
  if (view.getUint32(4, true) !== HEADER_BODY_LENGTH) throw corrupt('its header frame has the wrong size');
  if (crc32(frame.subarray(8, 124)) !== view.getUint32(124, true)) throw corrupt('header checksum mismatch');
  if (view.getUint8(14) !== Codec.zstd) throw corrupt(`unknown codec ${view.getUint8(14)}`);
  if (view.getUint8(15) !== 0) throw corrupt(`unsupported flags 0x${view.getUint8(15).toString(16)}`);
  const header: StoredChunkHeader = {
    streamId: frame.subarray(16, 32),
    index: Number(view.getBigUint64(32, true)),
    rawLength: Number(view.getBigUint64(40, true)),
    payloadLength: Number(view.getBigUint64(48, true)),
    rawSha256: frame.subarray(56, 88),
  };
  if (!Buffer.from(header.streamId).equals(streamId)) {
    throw damaged(key, 'BP_CHUNK_FOREIGN', `belongs to stream ${streamIdFromBytes(header.streamId)}, not ${streamIdFromBytes(streamId)}`);
  }
  if (header.index !== index) throw damaged(key, 'BP_CHUNK_MISPLACED', `holds chunk ${header.index}, not ${index}`);
  return header;
}
