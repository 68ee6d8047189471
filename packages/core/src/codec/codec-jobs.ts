import type { ChunkVersion } from '../protocol/chunk.js';
import type { StreamKeys } from '../protocol/encryption.js';

/** Messages between the main thread and codec workers. Buffers travel by transfer, never by copy. */

export interface EncodeJob {
  kind: 'encode';
  /** Raw bytes in [0, rawLength). */
  raw: Uint8Array;
  rawLength: number;
  /** Receives the chunk object; must hold at least chunkObjectBound(rawLength) bytes. */
  out: Uint8Array;
  streamId: Uint8Array;
  index: number;
  level: number;
  /** Present for an encrypted stream. */
  keys?: StreamKeys;
  /** The chunk format version to write; the latest when absent. */
  chunkVersion?: ChunkVersion;
}

export interface EncodeResult {
  raw: Uint8Array;
  out: Uint8Array;
  objectLength: number;
  rawDigest: Uint8Array;
}

export interface DecodeJob {
  kind: 'decode';
  /** The whole chunk object as downloaded. */
  object: Uint8Array;
  key: string;
  /** Receives the raw bytes. */
  raw: Uint8Array;
  streamId: Uint8Array;
  index: number;
  /** Exact raw length the chunk must have, or null when only `raw.length` bounds it (last chunk). */
  rawLength: number | null;
  /** Present for an encrypted stream: the chunk must then be encrypted with them, and otherwise must not be encrypted. */
  keys?: StreamKeys;
  /**
   * Set by a reader whose raw digest check covers every byte it hands on (the receiver): a
   * plaintext payload's check is then made only to name a failure of the later checks, and zstd's
   * XXH64 content checksum is not computed (docs/FORMAT.md §3, steps 13 and 14). `verify` checks
   * everything the format promises about the stored object and leaves it unset.
   */
  rawDigestSuffices?: boolean;
}

export interface DecodeResult {
  object: Uint8Array;
  raw: Uint8Array;
  rawLength: number;
  rawDigest: Uint8Array;
}

export type CodecJob = EncodeJob | DecodeJob;
export type CodecResult = EncodeResult | DecodeResult;

/** A failure inside a worker, rebuilt into a typed error on the main thread. */
export interface CodecFailure {
  code: string;
  message: string;
  integrity: boolean;
}

export type WorkerReply = { id: number; result: CodecResult } | { id: number; failure: CodecFailure };
export type WorkerRequest = { id: number; job: CodecJob };
