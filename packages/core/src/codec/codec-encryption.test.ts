import { createDecipheriv, createHash, createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { partlyCompressibleBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it } from 'vitest';
import { ExitCode, IntegrityError } from '../errors.js';
import { authenticatedHeaderBytes, ChunkFlag, HEADER_FRAME_LENGTH, payloadCheckOf, readChunk } from '../protocol/chunk.js';
import { ENCRYPTION_OVERHEAD, EncryptionKey, NONCE_LENGTH, type StreamKeys, sealPayload } from '../protocol/encryption.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { ChunkCodec, chunkObjectBound } from './codec.js';
import type { DecodeJob } from './codec-jobs.js';

const STREAM = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';
const OTHER_STREAM = '11111111-2222-4333-8444-555555555555';
const streamId = streamIdToBytes(STREAM);
const otherStreamId = streamIdToBytes(OTHER_STREAM);
const CHUNK_SIZE = 64 * 1024;
const INDEX = 3;
const KEY = 'chunks/000000000003';

const key = new EncryptionKey(Uint8Array.from({ length: 32 }, (_, i) => (i * 29 + 3) & 0xff));
const otherKey = new EncryptionKey(Uint8Array.from({ length: 32 }, (_, i) => (i * 71 + 130) & 0xff));
const keys = key.forStream(streamId);
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Offsets in the object (header body starts at 8). */
const at = {
  flags: 8 + 7,
  streamId: 8 + 8,
  index: 8 + 24,
  rawLength: 8 + 32,
  payloadLength: 8 + 40,
  rawDigest: 8 + 48,
  payloadCheck: 8 + 80,
  crc: 8 + 116,
};

const codec = new ChunkCodec();
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest();
const hmac = (k: Uint8Array, bytes: Uint8Array) => createHmac('sha256', k).update(bytes).digest();

function encode(raw: Uint8Array, opts: { keys?: StreamKeys; index?: number; level?: number; id?: Uint8Array } = {}): Uint8Array {
  const out = new Uint8Array(chunkObjectBound(raw.length));
  const result = codec.encode({
    kind: 'encode',
    raw,
    rawLength: raw.length,
    out,
    streamId: opts.id ?? streamId,
    index: opts.index ?? INDEX,
    level: opts.level ?? 1,
    keys: opts.keys,
  });
  expect(result.objectLength).toBeLessThanOrEqual(out.length);
  return out.slice(0, result.objectLength);
}

/** Decoding decrypts in place: each job gets its own copy of the object. */
function decodeJob(object: Uint8Array, overrides: Partial<DecodeJob> = {}): DecodeJob {
  return {
    kind: 'decode',
    object: object.slice(),
    key: KEY,
    raw: new Uint8Array(CHUNK_SIZE),
    streamId,
    index: INDEX,
    rawLength: null,
    keys,
    ...overrides,
  };
}

function decodeError(job: DecodeJob): IntegrityError {
  let result: unknown;
  try {
    result = codec.decode(job);
  } catch (error) {
    expect(error).toBeInstanceOf(IntegrityError);
    const integrity = error as IntegrityError;
    expect(integrity.exitCode).toBe(ExitCode.integrity);
    expect(integrity.message).toContain(job.key);
    // readChunk words a newer format as "upgrade bucketpipe" (pre-existing); every other refusal says nothing was written.
    if (integrity.code !== 'BP_CHUNK_VERSION') expect(integrity.message).toMatch(/nothing of it was written to the sink$/);
    return integrity;
  }
  throw new Error(`decode accepted the chunk: ${JSON.stringify(result && Object.keys(result))}`);
}

/** Recomputes the header CRC after a test edited the header body. */
function fixCrc(object: Uint8Array): Uint8Array {
  new DataView(object.buffer, object.byteOffset).setUint32(at.crc, crc32(object.subarray(8, at.crc)), true);
  return object;
}

/** What an attacker with write access but no key does after editing: payload check and CRC recomputed. */
function fixChecksums(object: Uint8Array): Uint8Array {
  const { header, payload } = readChunk(fixCrc(object), 'k');
  object.set(payloadCheckOf(header.version, payload), at.payloadCheck);
  return fixCrc(object);
}

function flip(object: Uint8Array, offset: number, bit = 0x01): Uint8Array {
  const copy = object.slice();
  copy[offset] = (copy[offset] as number) ^ bit;
  return copy;
}

const raw = partlyCompressibleBytes(50_000, 5);
const plainObject = encode(raw);
const encrypted = encode(raw, { keys });

describe('ChunkCodec.encode with keys', () => {
  it('sets the encrypted flag, adds exactly nonce + tag to the zstd frame, and hides the frame', () => {
    const { header, payload } = readChunk(encrypted, 'k');
    expect(header.flags).toBe(ChunkFlag.encrypted);
    expect(encrypted[at.flags]).toBe(0x01);
    const plainPayload = readChunk(plainObject, 'k').payload;
    // zstd is deterministic: the same raw at the same level gives the same frame.
    expect(header.payloadLength).toBe(plainPayload.length + 28);
    expect(payload.length).toBe(header.payloadLength);
    expect(encrypted.length).toBe(HEADER_FRAME_LENGTH + header.payloadLength);
    expect([...payload.subarray(0, 4)]).not.toEqual(ZSTD_MAGIC);
    expect([...payload.subarray(12, 16)]).not.toEqual(ZSTD_MAGIC);
    expect(Buffer.from(payload).includes(Buffer.from(plainPayload.subarray(0, 32)))).toBe(false);
    expect(Buffer.from(encrypted).includes(Buffer.from(raw.subarray(0, 32)))).toBe(false);
    expect(header.index).toBe(INDEX);
    expect(header.rawLength).toBe(raw.length);
    expect(Buffer.from(header.streamId).equals(streamId)).toBe(true);
    expect(encrypted.length).toBeLessThanOrEqual(chunkObjectBound(raw.length));
  });

  it('is nonce ‖ AES-256-GCM(cipher key, zstd frame, AAD = object bytes 8…87) ‖ tag: node:crypto decrypts it to the plain frame', () => {
    const { payload } = readChunk(encrypted, 'k');
    const decipher = createDecipheriv('aes-256-gcm', keys.cipherKey, payload.subarray(0, 12));
    decipher.setAAD(encrypted.subarray(8, 88));
    decipher.setAuthTag(payload.subarray(payload.length - 16));
    const frame = Buffer.concat([decipher.update(payload.subarray(12, payload.length - 16)), decipher.final()]);
    expect(frame.equals(readChunk(plainObject, 'k').payload)).toBe(true);
  });

  it('puts HMAC-SHA256(digest key, raw) in the header, not SHA-256, and returns it; the payload check covers the encrypted payload', () => {
    const out = new Uint8Array(chunkObjectBound(raw.length));
    const result = codec.encode({ kind: 'encode', raw, rawLength: raw.length, out, streamId, index: INDEX, level: 1, keys });
    const { header, payload } = readChunk(out.subarray(0, result.objectLength), 'k');
    const expected = hmac(keys.digestKey, raw);
    expect(Buffer.from(header.rawDigest).equals(expected)).toBe(true);
    expect(Buffer.from(result.rawDigest).equals(expected)).toBe(true);
    expect(Buffer.from(header.rawDigest).equals(sha256(raw))).toBe(false);
    expect(Buffer.from(header.rawDigest).equals(hmac(keys.cipherKey, raw))).toBe(false);
    expect(Buffer.from(header.rawDigest).equals(hmac(keys.streamDigestKey, raw))).toBe(false);
    expect(Buffer.from(header.payloadCheck).equals(payloadCheckOf(header.version, payload))).toBe(true);
    // The SHA-256 of the raw bytes appears nowhere in the object.
    expect(Buffer.from(out.subarray(0, result.objectLength)).includes(sha256(raw))).toBe(false);
  });

  it('gives different objects for the same chunk (fresh nonce) with the same raw HMAC', () => {
    const again = encode(raw, { keys });
    expect(Buffer.from(again).equals(encrypted)).toBe(false);
    expect(
      Buffer.from(again.subarray(HEADER_FRAME_LENGTH, HEADER_FRAME_LENGTH + 12)).equals(
        encrypted.subarray(HEADER_FRAME_LENGTH, HEADER_FRAME_LENGTH + 12),
      ),
    ).toBe(false);
    expect(Buffer.from(again.subarray(at.rawDigest, at.rawDigest + 32)).equals(encrypted.subarray(at.rawDigest, at.rawDigest + 32))).toBe(
      true,
    );
    expect(Buffer.from(codec.decode(decodeJob(again)).raw.subarray(0, raw.length)).equals(raw)).toBe(true);
  });

  it('encodes only raw[0, rawLength) of a larger slab', () => {
    const slab = partlyCompressibleBytes(CHUNK_SIZE, 9);
    const out = new Uint8Array(chunkObjectBound(CHUNK_SIZE));
    const result = codec.encode({ kind: 'encode', raw: slab, rawLength: 100, out, streamId, index: INDEX, level: 1, keys });
    const object = out.slice(0, result.objectLength);
    expect(readChunk(object, 'k').header.rawLength).toBe(100);
    expect(Buffer.from(result.rawDigest).equals(hmac(keys.digestKey, slab.subarray(0, 100)))).toBe(true);
    const decoded = codec.decode(decodeJob(object, { rawLength: 100 }));
    expect(Buffer.from(decoded.raw.subarray(0, decoded.rawLength)).equals(slab.subarray(0, 100))).toBe(true);
  });

  it('the plain path is unchanged: flags 0, raw SHA-256, a bare zstd frame', () => {
    const { header, payload } = readChunk(plainObject, 'k');
    expect(header.flags).toBe(0);
    expect(plainObject[at.flags]).toBe(0);
    expect(Buffer.from(header.rawDigest).equals(sha256(raw))).toBe(true);
    expect([...payload.subarray(0, 4)]).toEqual(ZSTD_MAGIC);
    expect(Buffer.from(header.payloadCheck).equals(payloadCheckOf(header.version, payload))).toBe(true);
    // Deterministic: two plain encodes are byte-identical (no nonce sneaked in).
    expect(Buffer.from(encode(raw)).equals(plainObject)).toBe(true);
    const decoded = codec.decode(decodeJob(plainObject, { keys: undefined }));
    expect(Buffer.from(decoded.rawDigest).equals(sha256(raw))).toBe(true);
  });
});

describe('ChunkCodec.decode with keys', () => {
  it('gives back the raw bytes and their HMAC, for full, short and one-byte chunks at several levels', () => {
    for (const [length, level] of [
      [CHUNK_SIZE, 1],
      [CHUNK_SIZE, 19],
      [CHUNK_SIZE, -7],
      [12_345, 3],
      [1, 1],
    ] as const) {
      const bytes = partlyCompressibleBytes(length, length);
      const object = encode(bytes, { keys, level });
      const job = decodeJob(object, { rawLength: length });
      const result = codec.decode(job);
      expect(result.rawLength).toBe(length);
      expect(Buffer.from(result.raw.subarray(0, length)).equals(bytes)).toBe(true);
      expect(Buffer.from(result.rawDigest).equals(hmac(keys.digestKey, bytes))).toBe(true);
      expect(result.object).toBe(job.object); // the buffer goes back to its owner; it was decrypted in place
    }
  });

  it('an encrypted chunk with the wrong keys (BP_CHUNK_AUTH), whichever key is wrong', () => {
    for (const wrong of [otherKey.forStream(streamId), { ...keys, cipherKey: keys.digestKey }]) {
      const error = decodeError(decodeJob(encrypted, { keys: wrong }));
      expect(error.code).toBe('BP_CHUNK_AUTH');
      expect(error.message).toMatch(/failed AES-GCM authentication/);
    }
    // Right cipher key, wrong digest key: decrypts, then the raw HMAC does not match.
    const error = decodeError(decodeJob(encrypted, { keys: { ...keys, digestKey: otherKey.forStream(streamId).digestKey } }));
    expect(error.code).toBe('BP_CHUNK_CHECKSUM');
    expect(error.message).toMatch(/raw HMAC-SHA256 check after decompression/);
  });

  it('a ciphertext, nonce or tag byte altered with the payload check and the CRC recomputed (BP_CHUNK_AUTH)', () => {
    const payloadLength = encrypted.length - HEADER_FRAME_LENGTH;
    for (const offset of [0, 11, 12, 13, payloadLength >> 1, payloadLength - 17, payloadLength - 16, payloadLength - 1]) {
      const forged = fixChecksums(flip(encrypted, HEADER_FRAME_LENGTH + offset));
      expect(() => readChunk(forged, 'k')).not.toThrow();
      const error = decodeError(decodeJob(forged));
      expect(error.code, `payload byte ${offset}`).toBe('BP_CHUNK_AUTH');
    }
  });

  it('the same altered byte without recomputing the payload check is caught first by it (BP_CHUNK_CHECKSUM), also where a receiver defers that check for plaintext', () => {
    for (const rawDigestSuffices of [false, true]) {
      const error = decodeError(decodeJob(flip(encrypted, HEADER_FRAME_LENGTH + 40), { rawDigestSuffices }));
      expect(error.code).toBe('BP_CHUNK_CHECKSUM');
      expect(error.message).toMatch(/payload CRC-32/);
    }
  });

  it('a forged raw digest or raw length inside the associated data, CRC recomputed (BP_CHUNK_AUTH)', () => {
    const digestForged = fixCrc(flip(encrypted, at.rawDigest));
    expect(decodeError(decodeJob(digestForged)).code).toBe('BP_CHUNK_AUTH');
    // A raw digest replaced wholesale by the plain SHA-256 (e.g. to confirm a guess) also fails.
    const shaForged = encrypted.slice();
    shaForged.set(sha256(raw), at.rawDigest);
    expect(decodeError(decodeJob(fixCrc(shaForged))).code).toBe('BP_CHUNK_AUTH');
    for (const rawLength of [raw.length - 1, raw.length + 1, 1]) {
      const forged = encrypted.slice();
      new DataView(forged.buffer).setBigUint64(at.rawLength, BigInt(rawLength), true);
      expect(decodeError(decodeJob(fixCrc(forged))).code, `rawLength ${rawLength}`).toBe('BP_CHUNK_AUTH');
    }
  });

  it('a chunk moved to another index with its header index rewritten to match (BP_CHUNK_AUTH)', () => {
    const forged = encrypted.slice();
    new DataView(forged.buffer).setBigUint64(at.index, 4n, true);
    const error = decodeError(decodeJob(fixCrc(forged), { index: 4, key: 'chunks/000000000004' }));
    expect(error.code).toBe('BP_CHUNK_AUTH');
    // Without the rewrite, the index check catches it first.
    expect(decodeError(decodeJob(encrypted, { index: 4, key: 'chunks/000000000004' })).code).toBe('BP_CHUNK_MISPLACED');
  });

  it('a chunk of another stream with the same key, its stream id rewritten (BP_CHUNK_AUTH)', () => {
    const foreignKeys = key.forStream(otherStreamId);
    const forged = encode(raw, { keys: foreignKeys, id: otherStreamId });
    forged.set(streamId, at.streamId);
    expect(decodeError(decodeJob(fixCrc(forged))).code).toBe('BP_CHUNK_AUTH');
    // Even the other stream's keys would not open it once its stream id (in the AAD) was changed.
    expect(decodeError(decodeJob(forged, { keys: foreignKeys })).code).toBe('BP_CHUNK_AUTH');
  });

  it('any bit of the associated data (object bytes 8…87) changed, CRC recomputed: refused, never decoded', () => {
    const codes = new Set<string>();
    for (let offset = 8; offset < 88; offset++) {
      for (const bit of [0x01, 0x80]) {
        const forged = fixCrc(flip(encrypted, offset, bit));
        codes.add(decodeError(decodeJob(forged, { key: `${KEY}@${offset}` })).code);
      }
    }
    // Each is refused by a specific check (structure, stream id, index, length) or by AES-GCM.
    for (const code of codes) {
      expect([
        'BP_CHUNK_CORRUPT',
        'BP_CHUNK_VERSION',
        'BP_CHUNK_FOREIGN',
        'BP_CHUNK_MISPLACED',
        'BP_CHUNK_LENGTH',
        'BP_CHUNK_NOT_ENCRYPTED',
        'BP_CHUNK_AUTH',
      ]).toContain(code);
    }
    expect(codes).toContain('BP_CHUNK_AUTH');
  });

  it('a shortened payload with its length, SHA-256 and CRC all made consistent (BP_CHUNK_AUTH)', () => {
    const forged = encrypted.slice(0, encrypted.length - 1);
    new DataView(forged.buffer).setBigUint64(at.payloadLength, BigInt(forged.length - HEADER_FRAME_LENGTH), true);
    expect(decodeError(decodeJob(fixChecksums(forged))).code).toBe('BP_CHUNK_AUTH');
  });

  it('a payload shorter than nonce + tag, consistent with its header (BP_CHUNK_AUTH)', () => {
    for (const length of [0, 27]) {
      const forged = new Uint8Array(HEADER_FRAME_LENGTH + length);
      forged.set(encrypted.subarray(0, HEADER_FRAME_LENGTH));
      new DataView(forged.buffer).setBigUint64(at.payloadLength, BigInt(length), true);
      expect(decodeError(decodeJob(fixChecksums(forged))).code, `${length} bytes`).toBe('BP_CHUNK_AUTH');
    }
  });

  it('the encrypted flag cleared on an encrypted chunk (BP_CHUNK_NOT_ENCRYPTED), even with its checksums recomputed', () => {
    const cleared = encrypted.slice();
    cleared[at.flags] = 0;
    const error = decodeError(decodeJob(fixCrc(cleared)));
    expect(error.code).toBe('BP_CHUNK_NOT_ENCRYPTED');
    expect(error.message).toMatch(/is not encrypted, but its stream is/);
    // Read as a plain chunk (no keys), it is not valid zstd: it is refused too.
    expect(decodeError(decodeJob(fixCrc(cleared.slice()), { keys: undefined })).code).toBe('BP_CHUNK_DECOMPRESS');
  });

  it('an unknown flag bit next to the encrypted one (BP_CHUNK_VERSION)', () => {
    const flagged = encrypted.slice();
    flagged[at.flags] = 0x03;
    expect(decodeError(decodeJob(fixCrc(flagged))).code).toBe('BP_CHUNK_VERSION');
  });

  it('an encrypted chunk read without keys (BP_CHUNK_ENCRYPTED)', () => {
    const error = decodeError(decodeJob(encrypted, { keys: undefined }));
    expect(error.code).toBe('BP_CHUNK_ENCRYPTED');
    expect(error.message).toMatch(/is encrypted, but its stream is not/);
  });

  it('a plain chunk read with keys (BP_CHUNK_NOT_ENCRYPTED): a plaintext chunk put in place of an encrypted one', () => {
    const error = decodeError(decodeJob(plainObject));
    expect(error.code).toBe('BP_CHUNK_NOT_ENCRYPTED');
    // A plain chunk with the flag set and checksums fixed is not authentic either.
    const flagged = plainObject.slice();
    flagged[at.flags] = ChunkFlag.encrypted;
    expect(decodeError(decodeJob(fixCrc(flagged))).code).toBe('BP_CHUNK_AUTH');
  });

  it('the flag against the stream comes right after the index (FORMAT §3 step 11): before the raw length and the payload check', () => {
    const damaged = (object: Uint8Array) => flip(object, object.length - 1);
    expect(decodeError(decodeJob(damaged(plainObject), { rawLength: 1 })).code).toBe('BP_CHUNK_NOT_ENCRYPTED');
    expect(decodeError(decodeJob(damaged(encrypted), { rawLength: 1, keys: undefined })).code).toBe('BP_CHUNK_ENCRYPTED');
    expect(decodeError(decodeJob(plainObject, { index: INDEX + 1, key: 'chunks/000000000004' })).code).toBe('BP_CHUNK_MISPLACED');
  });

  it('an authentic encrypted payload whose frame is not the one standard zstd frame (two frames, sealed with the key): BP_CHUNK_DECOMPRESS', () => {
    const frameOf = (bytes: Uint8Array) => encode(bytes).subarray(HEADER_FRAME_LENGTH);
    const frames = Buffer.concat([frameOf(raw.subarray(0, 20_000)), frameOf(raw.subarray(20_000))]);
    const forged = new Uint8Array(HEADER_FRAME_LENGTH + frames.length + ENCRYPTION_OVERHEAD);
    forged.set(encrypted.subarray(0, HEADER_FRAME_LENGTH));
    new DataView(forged.buffer).setBigUint64(at.payloadLength, BigInt(frames.length + ENCRYPTION_OVERHEAD), true);
    const payload = forged.subarray(HEADER_FRAME_LENGTH);
    payload.set(frames, NONCE_LENGTH);
    sealPayload(keys, authenticatedHeaderBytes(forged), payload, frames.length);
    const error = decodeError(decodeJob(fixChecksums(forged)));
    expect(error.code).toBe('BP_CHUNK_DECOMPRESS');
    expect(error.message).toContain('its zstd frame holds 20000 bytes, the header says 50000');
  });

  it('a chunk of another stream (BP_CHUNK_FOREIGN), before any decryption', () => {
    const foreign = encode(raw, { keys: key.forStream(otherStreamId), id: otherStreamId });
    for (const opts of [keys, key.forStream(otherStreamId)]) {
      const error = decodeError(decodeJob(foreign, { keys: opts }));
      expect(error.code).toBe('BP_CHUNK_FOREIGN');
      expect(error.message).toContain(`belongs to stream ${OTHER_STREAM}, not ${STREAM}`);
    }
  });

  it('names the chunk and no key material in its messages', () => {
    const messages = [
      decodeError(decodeJob(encrypted, { keys: otherKey.forStream(streamId) })).message,
      decodeError(decodeJob(encrypted, { keys: undefined })).message,
      decodeError(decodeJob(plainObject)).message,
    ];
    for (const message of messages) {
      for (const secret of [keys.cipherKey, keys.digestKey, keys.streamDigestKey]) {
        expect(message).not.toContain(Buffer.from(secret).toString('hex'));
        expect(message).not.toContain(Buffer.from(secret).toString('base64'));
      }
    }
  });

  it('writes no decrypted byte into the raw buffer when authentication fails', () => {
    const target = new Uint8Array(CHUNK_SIZE).fill(0xcc);
    decodeError(decodeJob(fixChecksums(flip(encrypted, HEADER_FRAME_LENGTH + 100)), { raw: target }));
    expect(target.every((b) => b === 0xcc)).toBe(true);
  });
});
