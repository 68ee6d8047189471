import { IntegrityError, StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import { HeaderPrefetch } from '../protocol/chunk-headers.js';
import { createRawDigest, rawDigestName, type StreamKeys, sameDigest } from '../protocol/encryption.js';
import type { Manifest } from '../protocol/manifest.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import type { RetryPolicy } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';
import { formatBytes } from '../units.js';

/** What a receiver's sink already holds when it starts: the first `chunks` chunks of the stream, verified. */
export interface ReceiveStart {
  chunks: number;
  /** Raw bytes of those chunks. */
  rawBytes: number;
  /** The stream digest with exactly chunks 0 … chunks − 1 added (their raw digests). */
  digest: StreamDigest;
}

/** An output that already holds bytes from an earlier run: a file. */
export interface ResumableOutput {
  /** Names it in messages: "received.zfs". */
  readonly description: string;
  /** Bytes it holds now. */
  readonly length: number;
  /** Reads up to `buffer.length` bytes at `position`; fewer only at its end. */
  read(buffer: Uint8Array, position: number): Promise<number>;
}

export interface ReceivedPrefixCheck {
  store: ObjectStore;
  /** The manifest as the receiver first read it. */
  manifest: Manifest;
  /** The stream's keys when it is encrypted (streamKeysFor). */
  keys?: StreamKeys;
  output: ResumableOutput;
  /** Header reads in flight at most. */
  concurrency: number;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  /** Called after each verified chunk. */
  onProgress?: (verified: { chunks: number; of: number; rawBytes: number }) => void;
}

export interface ReceivedPrefix extends ReceiveStart {
  /** Bytes at the output's end that are not whole chunks below the watermark (a write cut short): the caller cuts them off. */
  discardBytes: number;
}

/** Bytes of the output read and hashed at a time; a chunk may be up to 1 GiB. */
const PIECE = 4 * 1024 * 1024;

/**
 * Decides where a receiver whose output already holds `output.length` bytes continues, and proves
 * that those bytes are this stream's before anything is written (docs/FORMAT.md §7.1).
 *
 * The output is cut into chunks as the sender cut the stream. Its whole chunks that the manifest's
 * watermark covers are kept if each one's raw digest (hashed from the output) and length equal
 * those in the stored chunk's header (a 128-byte ranged GET; headers are read ahead in parallel):
 * the SHA-256s are then also the stream digest's first entries. What follows them — a chunk cut
 * short by a crash mid-write, or chunks beyond the watermark of a copy that lags behind the one
 * written from — is to be cut off and received again (`discardBytes`). An output longer than a
 * complete stream, or one whose chunk differs, is refused (BP_OUTPUT_MISMATCH), naming the chunk;
 * nothing is changed, neither here nor by the caller.
 */
export async function checkReceivedPrefix(check: ReceivedPrefixCheck): Promise<ReceivedPrefix> {
  const { manifest, output } = check;
  const { chunkSize } = manifest;
  const length = output.length;
  const digest = new StreamDigest(check.keys);
  if (length === 0) return { chunks: 0, rawBytes: 0, digest, discardBytes: 0 };

  let chunks = Math.floor(length / chunkSize);
  const final = manifest.state === 'complete' ? manifest.final : undefined;
  if (final) {
    if (length > final.rawBytes) {
      throw mismatch(
        check,
        `it holds ${formatBytes(length)} (${length} bytes), more than the whole stream (${final.rawBytes} bytes)`,
        'it holds another stream, or more was written to it',
      );
    }
    if (length === final.rawBytes) chunks = final.chunks;
  }
  chunks = Math.min(chunks, manifest.watermark);

  const streamId = streamIdToBytes(manifest.streamId);
  const headers = new HeaderPrefetch({ ...check, streamId, chunks, problem: damaged });
  const buffers = [new Uint8Array(Math.min(PIECE, chunkSize)), new Uint8Array(Math.min(PIECE, chunkSize))];
  let rawBytes = 0;
  try {
    for (let index = 0; index < chunks; index++) {
      const stored = headers.get(index);
      const offset = index * chunkSize;
      const size = Math.min(chunkSize, length - offset);
      const hash = createRawDigest(check.keys);
      // Reads the next piece while this one is hashed: the disk and SHA-256 overlap.
      let reading = readFully(output, buffers[0] as Uint8Array, offset, Math.min(PIECE, size));
      for (let done = 0, turn = 0; done < size; turn ^= 1) {
        const piece = await reading;
        done += piece.length;
        if (done < size) reading = readFully(output, buffers[turn ^ 1] as Uint8Array, offset + done, Math.min(PIECE, size - done));
        hash.update(piece);
      }
      const rawDigest = hash.digest();
      const header = await stored;
      if (header.rawLength !== size) {
        throw mismatch(
          check,
          `its chunk ${index} (bytes ${offset}…${offset + size - 1}) is ${size} bytes, the stream's chunk ${chunkKey(index)} holds ${header.rawLength}`,
          prefixHint(index, offset),
        );
      }
      if (!sameDigest(rawDigest, header.rawDigest)) {
        throw mismatch(
          check,
          `its chunk ${index} (bytes ${offset}…${offset + size - 1}) differs from the stream's chunk ${chunkKey(index)} (${rawDigestName(check.keys)})`,
          prefixHint(index, offset),
        );
      }
      digest.add(index, rawDigest);
      rawBytes += size;
      check.onProgress?.({ chunks: index + 1, of: chunks, rawBytes });
    }
  } finally {
    headers.stop();
  }
  return { chunks, rawBytes, digest, discardBytes: length - rawBytes };
}

async function readFully(output: ResumableOutput, buffer: Uint8Array, position: number, length: number): Promise<Uint8Array> {
  let filled = 0;
  while (filled < length) {
    const read = await output.read(buffer.subarray(filled, length), position + filled);
    if (read === 0) {
      throw new StreamConflictError(
        'BP_OUTPUT_MISMATCH',
        `${output.description} became shorter while it was being verified (another process writes it?): nothing was written to it; run one receiver per output`,
      );
    }
    filled += read;
  }
  return buffer.subarray(0, length);
}

function prefixHint(index: number, offset: number): string {
  return index === 0
    ? 'it holds another stream, or was modified'
    : `it was modified, or not completely written before a crash (its first ${index} chunks do match: \`truncate -s ${offset}\` keeps them)`;
}

function mismatch(check: ReceivedPrefixCheck, what: string, why: string): StreamConflictError {
  return new StreamConflictError(
    'BP_OUTPUT_MISMATCH',
    `${check.output.description} does not hold the start of stream ${check.manifest.streamId}: ${what}; ${why}. Nothing was written to it: remove it, or receive into another file`,
  );
}

function damaged(key: string, code: string, what: string): IntegrityError {
  return new IntegrityError(
    code,
    `chunk ${key} ${what}, so the output cannot be checked against it: the stored stream is damaged below its watermark (bucketpipe verify shows what else is wrong); nothing was written to the output`,
  );
}
