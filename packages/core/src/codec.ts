import { createHash } from 'node:crypto';
import { Codec, HEADER_FRAME_LENGTH, readChunk, writeChunkHeader } from './chunk.js';
import type { DecodeJob, DecodeResult, EncodeJob, EncodeResult } from './codec-jobs.js';
import { IntegrityError } from './errors.js';
import { streamIdFromBytes } from './stream-id.js';
import { CCtx, CParameter, compressBound, DCtx } from './zstd.js';

/** Upper bound of a chunk object's size for `rawLength` raw bytes. */
export function chunkObjectBound(rawLength: number): number {
  return HEADER_FRAME_LENGTH + compressBound(rawLength);
}

function sha256(bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest();
}

/** Compression and verification; one instance per thread (zstd contexts are reused across chunks). */
export class ChunkCodec {
  #cctx = new CCtx();
  #dctx = new DCtx();
  #level: number | undefined;

  encode(job: EncodeJob): EncodeResult {
    if (this.#level !== job.level) {
      this.#cctx.setParameter(CParameter.compressionLevel, job.level);
      this.#cctx.setParameter(CParameter.checksumFlag, 1);
      this.#cctx.setParameter(CParameter.contentSizeFlag, 1);
      this.#level = job.level;
    }
    const raw = job.raw.subarray(0, job.rawLength);
    const payloadLength = this.#cctx.compress2(job.out.subarray(HEADER_FRAME_LENGTH), raw);
    const rawSha256 = sha256(raw);
    writeChunkHeader(job.out, {
      codec: Codec.zstd,
      streamId: job.streamId,
      index: job.index,
      rawLength: job.rawLength,
      payloadLength,
      rawSha256,
      payloadSha256: sha256(job.out.subarray(HEADER_FRAME_LENGTH, HEADER_FRAME_LENGTH + payloadLength)),
    });
    return { raw: job.raw, out: job.out, objectLength: HEADER_FRAME_LENGTH + payloadLength, rawSha256 };
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
    if (job.rawLength !== null && header.rawLength !== job.rawLength) {
      throw wrong('BP_CHUNK_LENGTH', `holds ${header.rawLength} raw bytes, expected ${job.rawLength}`);
    }
    if (header.rawLength > job.raw.length) {
      throw wrong('BP_CHUNK_LENGTH', `holds ${header.rawLength} raw bytes, more than the chunk size ${job.raw.length}`);
    }
    if (!Buffer.from(sha256(payload)).equals(header.payloadSha256)) {
      throw wrong('BP_CHUNK_CHECKSUM', 'failed its payload SHA-256 check (altered or damaged in the store)');
    }
    let rawLength: number;
    try {
      rawLength = this.#dctx.decompress(job.raw.subarray(0, header.rawLength), payload);
    } catch (error) {
      throw wrong('BP_CHUNK_DECOMPRESS', `could not be decompressed (${(error as Error).message})`);
    }
    const rawSha256 = sha256(job.raw.subarray(0, rawLength));
    if (rawLength !== header.rawLength || !Buffer.from(rawSha256).equals(header.rawSha256)) {
      throw wrong('BP_CHUNK_CHECKSUM', 'failed its raw SHA-256 check after decompression');
    }
    return { object: job.object, raw: job.raw, rawLength, rawSha256 };
  }
}
