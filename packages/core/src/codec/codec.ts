import { IntegrityError } from '../errors.js';
import {
  authenticatedHeaderBytes,
  ChunkFlag,
  Codec,
  HEADER_FRAME_LENGTH,
  LATEST_CHUNK_VERSION,
  payloadCheckName,
  payloadCheckOf,
  payloadIntact,
  readChunk,
  writeChunkHeader,
} from '../protocol/chunk.js';
import {
  createRawDigest,
  type Digest,
  ENCRYPTION_OVERHEAD,
  NONCE_LENGTH,
  openPayload,
  rawDigestName,
  type StreamKeys,
  sameDigest,
  sealPayload,
} from '../protocol/encryption.js';
import { streamIdFromBytes } from '../protocol/stream-id.js';
import { payloadFrameProblem } from '../protocol/zstd-frame.js';
import type { DecodeJob, DecodeResult, EncodeJob, EncodeResult } from './codec-jobs.js';
import { CCtx, CParameter, compressBound, DCtx, DParameter, FORCE_IGNORE_CHECKSUM, ResetDirective } from './zstd.js';

/** Upper bound of a chunk object's size for `rawLength` raw bytes, encrypted or not. */
export function chunkObjectBound(rawLength: number): number {
  return HEADER_FRAME_LENGTH + ENCRYPTION_OVERHEAD + compressBound(rawLength);
}

/**
 * The largest window a chunk's frame may ask the decompressor for: 16 MiB. Streaming
 * decompression allocates the window a frame declares (zstd allows 128 MiB by default), and the
 * frames bucketpipe writes need at most 8 MiB (level 19); a larger one is refused as damaged.
 */
const MAX_WINDOW_LOG = 24;

/** Compression, encryption and verification; one instance per thread (zstd contexts are reused across chunks). */
export class ChunkCodec {
  #cctx = new CCtx();
  #dctx = new DCtx();
  #level: number | undefined;

  constructor() {
    this.#dctx.setParameter(DParameter.windowLogMax, MAX_WINDOW_LOG);
  }

  encode(job: EncodeJob): EncodeResult {
    if (this.#level !== job.level) {
      this.#cctx.setParameter(CParameter.compressionLevel, job.level);
      this.#cctx.setParameter(CParameter.checksumFlag, 1);
      this.#cctx.setParameter(CParameter.contentSizeFlag, 1);
      this.#level = job.level;
    }
    const { keys } = job;
    const raw = job.raw.subarray(0, job.rawLength);
    const payload = job.out.subarray(HEADER_FRAME_LENGTH);
    // An encrypted payload is nonce ‖ ciphertext ‖ tag: compress behind the nonce, encrypt in place.
    const frameLength = this.#cctx.compress2(payload.subarray(keys ? NONCE_LENGTH : 0), raw);
    const payloadLength = keys ? frameLength + ENCRYPTION_OVERHEAD : frameLength;
    const rawDigest = createRawDigest(keys).update(raw).digest();
    const version = job.chunkVersion ?? LATEST_CHUNK_VERSION;
    const header = {
      version,
      codec: Codec.zstd,
      flags: keys ? ChunkFlag.encrypted : 0,
      streamId: job.streamId,
      index: job.index,
      rawLength: job.rawLength,
      payloadLength,
      rawDigest,
      payloadCheck: payloadCheckOf(version, new Uint8Array(0)), // a placeholder of the version's length
    };
    if (keys) {
      // The associated data is the header as written below, up to the payload check it cannot know yet.
      writeChunkHeader(job.out, header);
      sealPayload(keys, authenticatedHeaderBytes(job.out), payload, frameLength);
    }
    writeChunkHeader(job.out, { ...header, payloadCheck: payloadCheckOf(version, payload.subarray(0, payloadLength)) });
    return { raw: job.raw, out: job.out, objectLength: HEADER_FRAME_LENGTH + payloadLength, rawDigest };
  }

  /**
   * Decompresses the one frame into `out` (exactly the raw length) and feeds every byte to `hash`
   * as it is written. zstd checks the frame's content size at its end, and its XXH64 checksum
   * unless `contentChecksum` is false; a frame that holds more than `out`, ends early or has bytes
   * after it is refused.
   */
  #decompressHashing(out: Uint8Array, frame: Uint8Array, hash: Digest, contentChecksum: boolean): number {
    this.#dctx.reset(ResetDirective.sessionOnly);
    this.#dctx.setParameter(FORCE_IGNORE_CHECKSUM, contentChecksum ? 0 : 1);
    let produced = 0;
    let consumed = 0;
    for (;;) {
      const [remaining, written, read] = this.#dctx.decompressStream(
        out.subarray(produced, Math.min(out.length, produced + DECOMPRESS_PIECE)),
        frame.subarray(consumed),
      );
      hash.update(out.subarray(produced, produced + written));
      produced += written;
      consumed += read;
      if (remaining === 0) break; // the frame is complete (and its checksum checked, when asked)
      if (written === 0 && read === 0) {
        throw new Error(produced === out.length ? 'the frame holds more than the raw length' : 'the frame ends early');
      }
    }
    if (consumed !== frame.length) throw new Error(`${frame.length - consumed} bytes after the frame`);
    return produced;
  }

  /** Checks everything the header promises before any raw byte is handed back. */
  decode(job: DecodeJob): DecodeResult {
    const { header, payload } = readChunk(job.object, job.key);
    const wrong = (code: string, what: string) =>
      new IntegrityError(code, `chunk ${job.key} ${what}; nothing of it was written to the sink`);
    if (!Buffer.from(header.streamId).equals(job.streamId)) {
      throw wrong(
        'BP_CHUNK_FOREIGN',
        `belongs to stream ${streamIdFromBytes(header.streamId)}, not ${streamIdFromBytes(job.streamId)} (copied from another stream?)`,
      );
    }
    if (header.index !== job.index) throw wrong('BP_CHUNK_MISPLACED', `holds chunk ${header.index}, not ${job.index}`);
    const encrypted = (header.flags & ChunkFlag.encrypted) !== 0;
    if (encrypted && !job.keys) throw wrong('BP_CHUNK_ENCRYPTED', 'is encrypted, but its stream is not (a chunk of another stream?)');
    if (!encrypted && job.keys) {
      throw wrong('BP_CHUNK_NOT_ENCRYPTED', 'is not encrypted, but its stream is: a plaintext chunk was put in its place');
    }
    if (job.rawLength !== null && header.rawLength !== job.rawLength) {
      throw wrong('BP_CHUNK_LENGTH', `holds ${header.rawLength} raw bytes, expected ${job.rawLength}`);
    }
    if (header.rawLength > job.raw.length) {
      throw wrong('BP_CHUNK_LENGTH', `holds ${header.rawLength} raw bytes, more than the chunk size ${job.raw.length}`);
    }
    const payloadDamaged = () =>
      payloadIntact(header, payload)
        ? undefined
        : wrong('BP_CHUNK_CHECKSUM', `failed its ${payloadCheckName(header.version)} check (altered or damaged in the store)`);
    // Deferred, a plaintext payload's check only names a failure of the checks below: the raw
    // digest covers every byte that reaches the sink, and a v1 payload's SHA-256 is about a seventh
    // of the receiver's CPU (docs/FORMAT.md §3, step 13). An encrypted payload is decrypted in place,
    // after which its check could no longer be made: it is always made first.
    const deferred = job.rawDigestSuffices === true && !job.keys;
    if (!deferred) {
      const damaged = payloadDamaged();
      if (damaged) throw damaged;
    }
    const failure = (code: string, what: string) => (deferred ? payloadDamaged() : undefined) ?? wrong(code, what);
    const frame = job.keys ? decrypt(job.keys, authenticatedHeaderBytes(job.object), payload, wrong) : payload;
    const frameProblem = payloadFrameProblem(frame, header.rawLength);
    if (frameProblem) throw failure('BP_CHUNK_DECOMPRESS', `is not the single zstd frame a chunk's payload must be: ${frameProblem}`);
    const hash = createRawDigest(job.keys);
    let rawLength: number;
    try {
      // zstd's XXH64 of the content guards the same bytes as the raw digest, more weakly: a reader
      // that trusts the raw digest skips it (about a tenth of zstd's decompression CPU).
      rawLength = this.#decompressHashing(job.raw.subarray(0, header.rawLength), frame, hash, job.rawDigestSuffices !== true);
    } catch (error) {
      throw failure('BP_CHUNK_DECOMPRESS', `could not be decompressed (${(error as Error).message})`);
    }
    const rawDigest = hash.digest();
    if (rawLength !== header.rawLength || !sameDigest(rawDigest, header.rawDigest)) {
      throw failure('BP_CHUNK_CHECKSUM', `failed its ${rawDigestName(job.keys)} check after decompression`);
    }
    return { object: job.object, raw: job.raw, rawLength, rawDigest };
  }
}

/**
 * Output of zstd's streaming decompression, hashed as it comes: small enough to be hashed while it
 * is still in the CPU's cache, where decompressing a whole chunk and then hashing it reads 16 MiB
 * back from memory (docs/PERFORMANCE.md: about 10 % less CPU for the two together).
 */
const DECOMPRESS_PIECE = 256 * 1024;

/** The zstd frame an encrypted payload holds, decrypted in place in the object once its tag checks out. */
function decrypt(
  keys: StreamKeys,
  aad: Uint8Array,
  payload: Uint8Array,
  wrong: (code: string, what: string) => IntegrityError,
): Uint8Array {
  const frame = openPayload(keys, aad, payload);
  if (!frame) {
    throw wrong(
      'BP_CHUNK_AUTH',
      'failed AES-GCM authentication: it was altered in the store (with its checksums recomputed) or encrypted with another key',
    );
  }
  return frame;
}
