import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { IntegrityError } from '../errors.js';

/**
 * One chunk object = a zstd skippable frame carrying the header below, then one standard zstd
 * frame (with content checksum) of the raw bytes. `cat chunks/* | zstd -d` therefore rebuilds the
 * stream without bucketpipe. Byte layout in docs/FORMAT.md; all integers little-endian.
 *
 * The chunk format versions differ only in how the header checks the stored payload: v1 by its
 * SHA-256, v2 by its CRC-32 (the raw digest covers every byte end to end in both, docs/FORMAT.md
 * §2.1). Readers read both; writers write the latest unless asked for v1.
 */
export const ChunkVersion = { payloadSha256: 1, payloadCrc32: 2 } as const;
export type ChunkVersion = (typeof ChunkVersion)[keyof typeof ChunkVersion];
export const LATEST_CHUNK_VERSION: ChunkVersion = ChunkVersion.payloadCrc32;
export const SKIPPABLE_FRAME_MAGIC = 0x184d2a5b;
export const HEADER_BODY_MAGIC = 0x4b435042; // "BPCK" read as little-endian u32
export const HEADER_BODY_LENGTH = 120;
/** Skippable frame magic (4) + frame size (4) + header body. */
export const HEADER_FRAME_LENGTH = 8 + HEADER_BODY_LENGTH;

export const Codec = { zstd: 1 } as const;
export type CodecId = (typeof Codec)[keyof typeof Codec];

/** Header flag bits. `encrypted`: the payload is nonce ‖ AES-256-GCM(zstd frame) ‖ tag (FORMAT §2.5). */
export const ChunkFlag = { encrypted: 0x01 } as const;
const KNOWN_FLAGS = ChunkFlag.encrypted;

export interface ChunkHeader {
  version: ChunkVersion;
  codec: CodecId;
  flags: number;
  /** 16 raw bytes of the stream's UUID. */
  streamId: Uint8Array;
  index: number;
  rawLength: number;
  payloadLength: number;
  /** SHA-256 of the raw bytes; HMAC-SHA256 with the stream's digest key when the chunk is encrypted. */
  rawDigest: Uint8Array;
  /** The stored payload's check value (payloadCheckOf): 32 bytes in v1, 4 in v2. */
  payloadCheck: Uint8Array;
}

/** A header as a writer gives it: the version defaults to the latest. */
export type ChunkHeaderFields = Omit<ChunkHeader, 'version'> & { version?: ChunkVersion };

const offsets = {
  magic: 0,
  version: 4,
  codec: 6,
  flags: 7,
  streamId: 8,
  index: 24,
  rawLength: 32,
  payloadLength: 40,
  rawDigest: 48,
  payloadCheck: 80,
  crc: 116,
} as const;

const PAYLOAD_CHECK_LENGTH: Record<ChunkVersion, number> = { 1: 32, 2: 4 };

/** What a chunk of `version` says of its stored payload, as errors name it. */
export function payloadCheckName(version: ChunkVersion): string {
  return version === ChunkVersion.payloadSha256 ? 'payload SHA-256' : 'payload CRC-32';
}

/** The header's check value of a stored payload: its SHA-256 (v1) or its CRC-32, little-endian (v2). */
export function payloadCheckOf(version: ChunkVersion, payload: Uint8Array): Uint8Array {
  if (version === ChunkVersion.payloadSha256) return createHash('sha256').update(payload).digest();
  const check = new Uint8Array(4);
  new DataView(check.buffer).setUint32(0, crc32(payload), true);
  return check;
}

/** Whether `payload` is the one the header's check value was taken of. */
export function payloadIntact(header: ChunkHeader, payload: Uint8Array): boolean {
  return Buffer.from(payloadCheckOf(header.version, payload)).equals(header.payloadCheck);
}

/** Writes the header frame into `target[0, HEADER_FRAME_LENGTH)`. */
export function writeChunkHeader(target: Uint8Array, header: ChunkHeaderFields): void {
  const version = header.version ?? LATEST_CHUNK_VERSION;
  const checkLength = PAYLOAD_CHECK_LENGTH[version];
  if (header.payloadCheck.length !== checkLength) {
    throw new RangeError(`a version ${version} chunk's payload check is ${checkLength} bytes, got ${header.payloadCheck.length}`);
  }
  const view = new DataView(target.buffer, target.byteOffset, HEADER_FRAME_LENGTH);
  view.setUint32(0, SKIPPABLE_FRAME_MAGIC, true);
  view.setUint32(4, HEADER_BODY_LENGTH, true);
  const body = target.subarray(8, HEADER_FRAME_LENGTH);
  const b = new DataView(body.buffer, body.byteOffset, HEADER_BODY_LENGTH);
  b.setUint32(offsets.magic, HEADER_BODY_MAGIC, true);
  b.setUint16(offsets.version, version, true);
  b.setUint8(offsets.codec, header.codec);
  b.setUint8(offsets.flags, header.flags);
  body.set(header.streamId, offsets.streamId);
  b.setBigUint64(offsets.index, BigInt(header.index), true);
  b.setBigUint64(offsets.rawLength, BigInt(header.rawLength), true);
  b.setBigUint64(offsets.payloadLength, BigInt(header.payloadLength), true);
  body.set(header.rawDigest, offsets.rawDigest);
  // v2's 28 bytes after its CRC-32 and the reserved u32 at 112 are written as zeros.
  body.fill(0, offsets.payloadCheck, offsets.crc);
  body.set(header.payloadCheck, offsets.payloadCheck);
  b.setUint32(offsets.crc, crc32(body.subarray(0, offsets.crc)), true);
}

/** Words a header problem found by readChunkHeader: `detail` says what is wrong, without the chunk's key. */
export type ChunkHeaderProblem = (code: 'BP_CHUNK_CORRUPT' | 'BP_CHUNK_VERSION', detail: string) => Error;

/**
 * Parses and checks a chunk's header frame on its own (docs/FORMAT.md §3 steps 1–7): `frame` is
 * the first 128 bytes of the object, or more. Used on whole objects by readChunk and on 128-byte
 * ranged reads by those that need only the header (a resuming sender or receiver); each words
 * the error itself through `problem`.
 */
export function readChunkHeader(frame: Uint8Array, problem: ChunkHeaderProblem): ChunkHeader {
  const corrupt = (detail: string) => problem('BP_CHUNK_CORRUPT', detail);
  if (frame.length < HEADER_FRAME_LENGTH) throw corrupt(`only ${frame.length} bytes, shorter than a chunk header`);
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_FRAME_LENGTH);
  if (view.getUint32(0, true) !== SKIPPABLE_FRAME_MAGIC || view.getUint32(8, true) !== HEADER_BODY_MAGIC) {
    throw corrupt('it does not start with a bucketpipe chunk header');
  }
  const frameLength = view.getUint32(4, true);
  const version = view.getUint16(8 + offsets.version, true);
  if (version > LATEST_CHUNK_VERSION) {
    throw problem('BP_CHUNK_VERSION', `format version ${version}, newer than this bucketpipe understands (${LATEST_CHUNK_VERSION})`);
  }
  if (!isChunkVersion(version)) throw corrupt(`format version ${version} is not a bucketpipe chunk version`);
  if (frameLength !== HEADER_BODY_LENGTH) throw corrupt(`header frame is ${frameLength} bytes, expected ${HEADER_BODY_LENGTH}`);
  const body = frame.subarray(8, HEADER_FRAME_LENGTH);
  if (crc32(body.subarray(0, offsets.crc)) !== view.getUint32(8 + offsets.crc, true)) throw corrupt('header checksum mismatch');
  const at = (offset: number) => 8 + offset;
  const codec = view.getUint8(at(offsets.codec));
  if (codec !== Codec.zstd) throw corrupt(`unknown codec ${codec}`);
  const header: ChunkHeader = {
    version,
    codec,
    flags: view.getUint8(at(offsets.flags)),
    streamId: body.subarray(offsets.streamId, offsets.streamId + 16),
    index: safeNumber(view.getBigUint64(at(offsets.index), true)),
    rawLength: safeNumber(view.getBigUint64(at(offsets.rawLength), true)),
    payloadLength: safeNumber(view.getBigUint64(at(offsets.payloadLength), true)),
    rawDigest: body.subarray(offsets.rawDigest, offsets.rawDigest + 32),
    payloadCheck: body.subarray(offsets.payloadCheck, offsets.payloadCheck + PAYLOAD_CHECK_LENGTH[version]),
  };
  if ([header.index, header.rawLength, header.payloadLength].some((n) => n < 0)) throw corrupt('a length or index is out of range');
  if ((header.flags & ~KNOWN_FLAGS) !== 0) {
    throw problem('BP_CHUNK_VERSION', `flags 0x${header.flags.toString(16)}, features this bucketpipe does not understand`);
  }
  return header;
}

function isChunkVersion(version: number): version is ChunkVersion {
  return version === ChunkVersion.payloadSha256 || version === ChunkVersion.payloadCrc32;
}

/**
 * The header bytes an encrypted payload authenticates: the body from its magic through the raw
 * digest (object bytes 8…87), everything the writer knows before it encrypts. The payload check
 * and the CRC after them depend on the ciphertext and are checked on their own.
 */
export function authenticatedHeaderBytes(frame: Uint8Array): Uint8Array {
  return frame.subarray(8, 8 + offsets.payloadCheck);
}

/**
 * Parses and checks the header frame of a whole chunk object and returns it with the payload
 * (a view, not a copy). `key` only names the object in errors.
 */
export function readChunk(object: Uint8Array, key: string): { header: ChunkHeader; payload: Uint8Array } {
  const corrupt = (what: string) =>
    new IntegrityError('BP_CHUNK_CORRUPT', `chunk ${key} is corrupt: ${what}; nothing of it was written to the sink`);
  const header = readChunkHeader(object, (code, detail) =>
    code === 'BP_CHUNK_VERSION' ? new IntegrityError(code, `chunk ${key} has ${detail}: upgrade bucketpipe`) : corrupt(detail),
  );
  const actualPayload = object.length - HEADER_FRAME_LENGTH;
  if (actualPayload !== header.payloadLength) {
    throw corrupt(
      actualPayload < header.payloadLength
        ? `truncated: payload is ${actualPayload} bytes, header says ${header.payloadLength}`
        : `payload is ${actualPayload} bytes, header says ${header.payloadLength}`,
    );
  }
  return { header, payload: object.subarray(HEADER_FRAME_LENGTH) };
}

/** u64 fields beyond 2^53 cannot be real; -1 makes the caller reject them. */
function safeNumber(value: bigint): number {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : -1;
}

/** Key of chunk `index`: 12 zero-padded digits so that lexical order is numeric order. */
export function chunkKey(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0 || index > 999_999_999_999) throw new RangeError(`chunk index out of range: ${index}`);
  return `chunks/${String(index).padStart(12, '0')}`;
}

export const CHUNKS_PREFIX = 'chunks/';

export function parseChunkKey(key: string): number | null {
  const match = /^chunks\/(\d{12})$/.exec(key);
  return match ? Number(match[1]) : null;
}
