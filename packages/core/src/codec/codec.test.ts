import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { partlyCompressibleBytes } from '@bucketpipe/store-testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, IntegrityError } from '../errors.js';
import { ChunkVersion, HEADER_FRAME_LENGTH, payloadCheckName, payloadCheckOf, readChunk } from '../protocol/chunk.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { ChunkCodec, chunkObjectBound } from './codec.js';
import type { DecodeJob } from './codec-jobs.js';
import { CCtx, CParameter, compressBound } from './zstd.js';

const ZSTD = '/usr/bin/zstd';
const STREAM = '0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b';
const OTHER_STREAM = '11111111-2222-4333-8444-555555555555';
const streamId = streamIdToBytes(STREAM);
const CHUNK_SIZE = 64 * 1024;

const codec = new ChunkCodec();

function encode(raw: Uint8Array, index = 3, level = 1, chunkVersion?: ChunkVersion): Uint8Array {
  const out = new Uint8Array(chunkObjectBound(raw.length));
  const result = codec.encode({ kind: 'encode', raw, rawLength: raw.length, out, streamId, index, level, chunkVersion });
  expect(result.out).toBe(out);
  expect(result.raw).toBe(raw);
  expect(Buffer.from(result.rawDigest).toString('hex')).toBe(createHash('sha256').update(raw).digest('hex'));
  return out.slice(0, result.objectLength);
}

function decodeJob(object: Uint8Array, overrides: Partial<DecodeJob> = {}): DecodeJob {
  return {
    kind: 'decode',
    object,
    key: 'chunks/000000000003',
    raw: new Uint8Array(CHUNK_SIZE),
    streamId,
    index: 3,
    rawLength: null,
    ...overrides,
  };
}

function decodeError(job: DecodeJob): IntegrityError {
  try {
    codec.decode(job);
  } catch (error) {
    expect(error).toBeInstanceOf(IntegrityError);
    const integrity = error as IntegrityError;
    expect(integrity.exitCode).toBe(ExitCode.integrity);
    expect(integrity.message).toContain(job.key);
    expect(integrity.message).toMatch(/nothing of it was written to the sink$/);
    return integrity;
  }
  throw new Error('decode accepted the chunk');
}

/** Recomputes the header CRC after a test edited the header body. */
function fixCrc(object: Uint8Array): Uint8Array {
  new DataView(object.buffer, object.byteOffset).setUint32(8 + 116, crc32(object.subarray(8, 8 + 116)), true);
  return object;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest();

/** The payload check of a chunk's version recomputed over its payload, as someone who edited the payload would. */
function fixPayloadCheck(object: Uint8Array): Uint8Array {
  const { header, payload } = readChunk(fixCrc(object), 'k');
  object.set(payloadCheckOf(header.version, payload), 8 + 80);
  return fixCrc(object);
}

/** The chunk with another payload, its length, payload check and CRC made consistent with it. */
function withPayload(object: Uint8Array, payload: Uint8Array): Uint8Array {
  const forged = new Uint8Array(HEADER_FRAME_LENGTH + payload.length);
  forged.set(object.subarray(0, HEADER_FRAME_LENGTH));
  forged.set(payload, HEADER_FRAME_LENGTH);
  new DataView(forged.buffer).setBigUint64(8 + 40, BigInt(payload.length), true);
  return fixPayloadCheck(forged);
}

describe('ChunkCodec', () => {
  it('encodes a header frame followed by one zstd frame with content size and checksum', () => {
    const raw = partlyCompressibleBytes(CHUNK_SIZE);
    const object = encode(raw);
    const { header, payload } = readChunk(object, 'k');
    expect(header.index).toBe(3);
    expect(header.rawLength).toBe(CHUNK_SIZE);
    expect(header.payloadLength).toBe(object.length - HEADER_FRAME_LENGTH);
    expect(Buffer.from(header.streamId).equals(streamId)).toBe(true);
    expect(Buffer.from(header.rawDigest).equals(sha256(raw))).toBe(true);
    expect(header.version).toBe(ChunkVersion.payloadCrc32);
    expect(new DataView(header.payloadCheck.buffer, header.payloadCheck.byteOffset).getUint32(0, true)).toBe(crc32(payload));
    expect([...object.subarray(8 + 84, 8 + 116)]).toEqual(Array(32).fill(0)); // the rest of the check's room, and the reserved u32
    // Standard zstd frame: magic 0xFD2FB528, then the frame header descriptor.
    expect(new DataView(payload.buffer, payload.byteOffset).getUint32(0, true)).toBe(0xfd2fb528);
    const descriptor = payload[4] ?? 0;
    expect(descriptor & 0x04).toBe(0x04); // Content_Checksum_flag
    const singleSegment = (descriptor & 0x20) !== 0;
    const fcsFlag = descriptor >> 6;
    expect(singleSegment || fcsFlag !== 0).toBe(true); // Frame_Content_Size present
    expect(object.length).toBeLessThan(raw.length); // it did compress
    expect(object.length).toBeLessThanOrEqual(chunkObjectBound(raw.length));
  });

  it('round-trips full, short and tiny chunks at several levels', () => {
    for (const [length, level] of [
      [CHUNK_SIZE, 1],
      [CHUNK_SIZE, 19],
      [CHUNK_SIZE, -7],
      [12_345, 3],
      [1, 1],
    ] as const) {
      const raw = partlyCompressibleBytes(length, length);
      const object = encode(raw, 3, level);
      const result = codec.decode(decodeJob(object));
      expect(result.rawLength).toBe(length);
      expect(Buffer.from(result.raw.subarray(0, length)).equals(raw)).toBe(true);
      expect(Buffer.from(result.rawDigest).equals(sha256(raw))).toBe(true);
      expect(result.object).toBe(object);
    }
  });

  it('writes a chunk of format v1 (payload SHA-256) when asked to, and reads it as it reads v2', () => {
    const raw = partlyCompressibleBytes(CHUNK_SIZE, 5);
    const object = encode(raw, 3, 1, ChunkVersion.payloadSha256);
    const { header, payload } = readChunk(object, 'k');
    expect(header.version).toBe(1);
    expect(Buffer.from(header.payloadCheck).equals(sha256(payload))).toBe(true);
    const v2 = encode(raw, 3, 1, ChunkVersion.payloadCrc32);
    expect(Buffer.from(v2.subarray(HEADER_FRAME_LENGTH)).equals(payload)).toBe(true); // only the header differs
    for (const chunk of [object, v2]) {
      const result = codec.decode(decodeJob(chunk));
      expect(Buffer.from(result.raw.subarray(0, result.rawLength)).equals(raw)).toBe(true);
    }
  });

  it('accepts a chunk whose length matches an exact expected length', () => {
    const raw = partlyCompressibleBytes(1000);
    const result = codec.decode(decodeJob(encode(raw), { rawLength: 1000 }));
    expect(result.rawLength).toBe(1000);
  });

  it('encodes only raw[0, rawLength) of a larger slab', () => {
    const slab = partlyCompressibleBytes(CHUNK_SIZE);
    const out = new Uint8Array(chunkObjectBound(CHUNK_SIZE));
    const result = codec.encode({ kind: 'encode', raw: slab, rawLength: 100, out, streamId, index: 0, level: 1 });
    const { header } = readChunk(out.subarray(0, result.objectLength), 'k');
    expect(header.rawLength).toBe(100);
    expect(Buffer.from(result.rawDigest).equals(sha256(slab.subarray(0, 100)))).toBe(true);
  });

  it('decompresses with the standalone zstd CLI to exactly the raw bytes', () => {
    const raw = partlyCompressibleBytes(CHUNK_SIZE, 7);
    const output = execFileSync(ZSTD, ['-d', '-c', '-q'], { input: encode(raw) });
    expect(output.length).toBe(raw.length);
    expect(output.equals(raw)).toBe(true);
  });

  it('concatenated chunk objects decompress with the zstd CLI to the concatenated stream (cat chunks/* | zstd -d)', () => {
    const parts = [partlyCompressibleBytes(CHUNK_SIZE, 1), partlyCompressibleBytes(CHUNK_SIZE, 2), partlyCompressibleBytes(777, 3)];
    const objects = parts.map((raw, index) => encode(raw, index));
    const output = execFileSync(ZSTD, ['-d', '-c', '-q'], { input: Buffer.concat(objects) });
    expect(output.equals(Buffer.concat(parts))).toBe(true);
    // zstd's own integrity test passes too (it checks the XXH64 content checksum).
    execFileSync(ZSTD, ['-t', '-q'], { input: Buffer.concat(objects) });
  });

  describe.each([ChunkVersion.payloadSha256, ChunkVersion.payloadCrc32])('decode rejects, chunk format v%i', (version) => {
    let object: Uint8Array;
    const checkName = payloadCheckName(version);
    beforeAll(() => {
      object = encode(partlyCompressibleBytes(5000), 3, 1, version);
    });

    it('a chunk of another stream (BP_CHUNK_FOREIGN)', () => {
      const error = decodeError(decodeJob(object, { streamId: streamIdToBytes(OTHER_STREAM) }));
      expect(error.code).toBe('BP_CHUNK_FOREIGN');
      expect(error.message).toContain(`belongs to stream ${STREAM}, not ${OTHER_STREAM}`);
    });

    it('a chunk stored under another index (BP_CHUNK_MISPLACED)', () => {
      const error = decodeError(decodeJob(object, { index: 4, key: 'chunks/000000000004' }));
      expect(error.code).toBe('BP_CHUNK_MISPLACED');
      expect(error.message).toContain('holds chunk 3, not 4');
    });

    it('a raw length other than the expected one (BP_CHUNK_LENGTH)', () => {
      const error = decodeError(decodeJob(object, { rawLength: 5001 }));
      expect(error.code).toBe('BP_CHUNK_LENGTH');
      expect(error.message).toContain('holds 5000 raw bytes, expected 5001');
    });

    it('a raw length larger than the chunk size (BP_CHUNK_LENGTH)', () => {
      const error = decodeError(decodeJob(object, { raw: new Uint8Array(4999) }));
      expect(error.code).toBe('BP_CHUNK_LENGTH');
      expect(error.message).toContain('holds 5000 raw bytes, more than the chunk size 4999');
    });

    it('a payload that fails its check (BP_CHUNK_CHECKSUM)', () => {
      const damaged = object.slice();
      const last = damaged.length - 1;
      damaged[last] = (damaged[last] ?? 0) ^ 0x10;
      const error = decodeError(decodeJob(damaged));
      expect(error.code).toBe('BP_CHUNK_CHECKSUM');
      expect(error.message).toContain(checkName);
    });

    it('deferred, a damaged payload is still named as such wherever the damage changes the raw bytes (its check made on the failure)', () => {
      const frameLength = object.length - HEADER_FRAME_LENGTH;
      // The frame magic, the frame header, a block in the middle, the last block's last byte.
      for (const at of [
        HEADER_FRAME_LENGTH,
        HEADER_FRAME_LENGTH + 5,
        HEADER_FRAME_LENGTH + Math.floor(frameLength / 2),
        object.length - 5,
      ]) {
        const damaged = object.slice();
        damaged[at] = (damaged[at] ?? 0) ^ 0x40;
        const error = decodeError(decodeJob(damaged, { rawDigestSuffices: true }));
        expect(error.code, `byte ${at}`).toBe('BP_CHUNK_CHECKSUM');
        expect(error.message).toContain(checkName);
      }
    });

    it("zstd's content checksum is checked unless the raw digest suffices: damage confined to it leaves the raw bytes intact", () => {
      const damaged = object.slice();
      const checksumByte = damaged.length - 2; // the frame's last 4 bytes are the low half of XXH64
      damaged[checksumByte] = (damaged[checksumByte] ?? 0) ^ 0x40;
      // verify: the stored object is damaged (zstd -d would refuse it), whatever the payload check.
      expect(decodeError(decodeJob(damaged)).code).toBe('BP_CHUNK_CHECKSUM');
      expect(decodeError(decodeJob(fixPayloadCheck(damaged))).code).toBe('BP_CHUNK_DECOMPRESS');
      // receive: every raw byte still matches the raw digest, so they are handed on.
      const decoded = codec.decode(decodeJob(fixPayloadCheck(damaged), { rawDigestSuffices: true }));
      expect(Buffer.from(decoded.raw.subarray(0, decoded.rawLength)).equals(partlyCompressibleBytes(5000))).toBe(true);
    });

    it('deferred, an intact plaintext payload is accepted on its raw SHA-256 although the payload check in the header is wrong; not deferred (verify), it is refused', () => {
      const forged = object.slice();
      forged[8 + 80] = (forged[8 + 80] ?? 0) ^ 0x01; // first byte of the payload check
      fixCrc(forged);
      expect(codec.decode(decodeJob(forged, { rawDigestSuffices: true })).rawLength).toBe(5000);
      const error = decodeError(decodeJob(forged));
      expect(error.code).toBe('BP_CHUNK_CHECKSUM');
      expect(error.message).toContain(checkName);
    });

    it('a frame that asks for a window larger than any chunk frame needs (BP_CHUNK_DECOMPRESS), before the window is allocated', () => {
      const raw = partlyCompressibleBytes(40 * 1024 * 1024, 7);
      const cctx = new CCtx();
      cctx.setParameter(CParameter.compressionLevel, 1);
      cctx.setParameter(CParameter.windowLog, 25); // 32 MiB, below the 40 MiB it holds: the frame declares it
      cctx.setParameter(CParameter.checksumFlag, 1);
      cctx.setParameter(CParameter.contentSizeFlag, 1);
      const frame = new Uint8Array(compressBound(raw.length));
      const forged = withPayload(object, frame.subarray(0, cctx.compress2(frame, raw)));
      new DataView(forged.buffer).setBigUint64(8 + 32, BigInt(raw.length), true);
      const error = decodeError(decodeJob(fixCrc(forged), { raw: new Uint8Array(raw.length) }));
      expect(error.code).toBe('BP_CHUNK_DECOMPRESS');
      expect(error.message).toMatch(/too much memory/);
    });

    it('raw bytes that fail their SHA-256 after decompression (BP_CHUNK_CHECKSUM)', () => {
      const forged = object.slice();
      forged[8 + 48] = (forged[8 + 48] ?? 0) ^ 0x01; // first byte of the raw SHA-256
      const error = decodeError(decodeJob(fixCrc(forged)));
      expect(error.code).toBe('BP_CHUNK_CHECKSUM');
      expect(error.message).toMatch(/raw SHA-256 check after decompression/);
    });

    it('a header raw length larger than what the frame holds (BP_CHUNK_DECOMPRESS: the frame states its content size)', () => {
      const forged = object.slice();
      new DataView(forged.buffer).setBigUint64(8 + 32, 5001n, true);
      const error = decodeError(decodeJob(fixCrc(forged)));
      expect(error.code).toBe('BP_CHUNK_DECOMPRESS');
      expect(error.message).toContain('its zstd frame holds 5000 bytes, the header says 5001');
    });

    it('a header raw length smaller than what the frame holds (BP_CHUNK_DECOMPRESS)', () => {
      const forged = object.slice();
      new DataView(forged.buffer).setBigUint64(8 + 32, 4999n, true);
      const error = decodeError(decodeJob(fixCrc(forged)));
      expect(error.code).toBe('BP_CHUNK_DECOMPRESS');
    });

    it('a payload that is consistent with its header but not valid zstd (BP_CHUNK_DECOMPRESS)', () => {
      const forged = object.slice();
      forged[HEADER_FRAME_LENGTH] = 0; // break the zstd frame magic
      const error = decodeError(decodeJob(fixPayloadCheck(forged)));
      expect(error.code).toBe('BP_CHUNK_DECOMPRESS');
      expect(error.message).toMatch(/does not start with a zstd frame/);
    });

    describe('a payload that decodes to the right bytes but is not exactly one standard zstd frame (FORMAT §2.2, BP_CHUNK_DECOMPRESS)', () => {
      const raw = partlyCompressibleBytes(5000);
      // bucketpipe's own frames (content size and checksum), and the zstd CLI's from a pipe (no content size).
      const frameOf = (bytes: Uint8Array) => encode(bytes, 3, 1, version).subarray(HEADER_FRAME_LENGTH);
      const zstd = (args: string[], input: Uint8Array) => new Uint8Array(execFileSync(ZSTD, [...args, '-c'], { input }));
      const skippable = Uint8Array.from([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
      const cases: Array<[what: string, payload: () => Uint8Array, message: string]> = [
        [
          'two frames',
          () => Buffer.concat([frameOf(raw.subarray(0, 2000)), frameOf(raw.subarray(2000))]),
          'its zstd frame holds 2000 bytes',
        ],
        ['a frame and a skippable frame', () => Buffer.concat([frameOf(raw), skippable]), '12 bytes follow its zstd frame'],
        ['a frame and stray bytes', () => Buffer.concat([frameOf(raw), Uint8Array.of(0)]), '1 bytes follow its zstd frame'],
        ['a skippable frame first', () => Buffer.concat([skippable, frameOf(raw)]), 'does not start with a zstd frame'],
        ['a frame without content checksum', () => zstd(['-q', '--no-check'], raw), 'has no content checksum'],
        ['a frame without content size', () => zstd(['-q', '--no-content-size'], raw), 'does not state its content size'],
      ];
      for (const [what, payload, message] of cases) {
        it(what, () => {
          const forged = withPayload(object, payload());
          // The zstd CLI reads it (stray bytes aside): only the format's own rule refuses it.
          if (what !== 'a frame and stray bytes') expect(execFileSync(ZSTD, ['-d', '-q', '-c'], { input: forged }).equals(raw)).toBe(true);
          const error = decodeError(decodeJob(forged));
          expect(error.code).toBe('BP_CHUNK_DECOMPRESS');
          expect(error.message).toContain(message);
        });
      }
    });

    it('a damaged header before any other check (BP_CHUNK_CORRUPT)', () => {
      const damaged = object.slice();
      damaged[8 + 24] = (damaged[8 + 24] ?? 0) ^ 0x01;
      expect(decodeError(decodeJob(damaged)).code).toBe('BP_CHUNK_CORRUPT');
    });
  });
});
