import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ExitCode, IntegrityError } from '../errors.js';
import {
  CHUNKS_PREFIX,
  ChunkFlag,
  type ChunkHeaderFields,
  ChunkVersion,
  Codec,
  chunkKey,
  HEADER_BODY_LENGTH,
  HEADER_BODY_MAGIC,
  HEADER_FRAME_LENGTH,
  LATEST_CHUNK_VERSION,
  parseChunkKey,
  payloadCheckName,
  payloadCheckOf,
  payloadIntact,
  readChunk,
  SKIPPABLE_FRAME_MAGIC,
  writeChunkHeader,
} from './chunk.js';

const streamId = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
const rawDigest = Uint8Array.from({ length: 32 }, (_, i) => i);
const payloadSha256 = Uint8Array.from({ length: 32 }, (_, i) => 0xff - i);
const payloadCrc32 = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);

/** A chunk object with a valid header and `payloadLength` arbitrary payload bytes; format v2 unless the overrides say v1. */
function makeObject(overrides: Partial<ChunkHeaderFields> = {}, payloadLength = 10): Uint8Array {
  const header = {
    version: ChunkVersion.payloadCrc32,
    payloadCheck: overrides.version === ChunkVersion.payloadSha256 ? payloadSha256 : payloadCrc32,
    codec: Codec.zstd,
    flags: 0,
    streamId,
    index: 42,
    rawLength: 1_000_000,
    payloadLength,
    rawDigest,
    ...overrides,
  };
  const object = new Uint8Array(HEADER_FRAME_LENGTH + payloadLength);
  writeChunkHeader(object, header);
  for (let i = 0; i < payloadLength; i++) object[HEADER_FRAME_LENGTH + i] = (i * 7) & 0xff;
  return object;
}

/** Recomputes the header CRC after a test edited the header body. */
function fixCrc(object: Uint8Array): Uint8Array {
  const view = new DataView(object.buffer, object.byteOffset, object.byteLength);
  view.setUint32(8 + 116, crc32(object.subarray(8, 8 + 116)), true);
  return object;
}

function readError(object: Uint8Array): IntegrityError {
  try {
    readChunk(object, 'chunks/000000000042');
  } catch (error) {
    expect(error).toBeInstanceOf(IntegrityError);
    return error as IntegrityError;
  }
  throw new Error('readChunk accepted the object');
}

function expectCorrupt(object: Uint8Array, message: RegExp): void {
  const error = readError(object);
  expect(error.code).toBe('BP_CHUNK_CORRUPT');
  expect(error.exitCode).toBe(ExitCode.integrity);
  expect(error.message).toContain('chunks/000000000042');
  expect(error.message).toMatch(message);
}

describe('constants', () => {
  it('are the protocol values', () => {
    expect(LATEST_CHUNK_VERSION).toBe(2);
    expect(ChunkVersion).toEqual({ payloadSha256: 1, payloadCrc32: 2 });
    expect(SKIPPABLE_FRAME_MAGIC).toBe(0x184d2a5b);
    expect(HEADER_BODY_MAGIC).toBe(0x4b435042);
    expect(Buffer.from(new Uint32Array([HEADER_BODY_MAGIC]).buffer).toString('latin1')).toBe('BPCK');
    expect(HEADER_BODY_LENGTH).toBe(120);
    expect(HEADER_FRAME_LENGTH).toBe(128);
    expect(Codec.zstd).toBe(1);
  });
});

describe('writeChunkHeader', () => {
  it('lays a v1 header out byte for byte as docs/FORMAT.md describes', () => {
    const object = makeObject({ version: 1, index: 0x0102030405, rawLength: 0x1000000, payloadLength: 0x0abcdef }, 0);
    const hex = Buffer.from(object.subarray(0, HEADER_FRAME_LENGTH)).toString('hex');
    const expected = [
      '5b2a4d18', // skippable frame magic 0x184D2A5B, LE
      '78000000', // frame size 120, LE
      '4250434b', // "BPCK"
      '0100', // version 1, u16 LE
      '01', // codec zstd
      '00', // flags
      'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', // stream id
      '0504030201000000', // index, u64 LE
      '0000000100000000', // raw length 16 MiB, u64 LE
      'efcdab0000000000', // payload length, u64 LE
      Buffer.from(rawDigest).toString('hex'),
      Buffer.from(payloadSha256).toString('hex'),
      '00000000', // reserved
    ].join('');
    expect(hex.slice(0, expected.length)).toBe(expected);
    const crc = crc32(object.subarray(8, 124));
    expect(new DataView(object.buffer).getUint32(124, true)).toBe(crc);
    expect(hex.length).toBe(2 * 128);
  });

  it('lays a v2 header out byte for byte as docs/FORMAT.md describes: the payload CRC-32, then zeros up to the header CRC', () => {
    const object = makeObject({ index: 0x0102030405, rawLength: 0x1000000, payloadLength: 0x0abcdef }, 0);
    const hex = Buffer.from(object.subarray(0, HEADER_FRAME_LENGTH)).toString('hex');
    const expected = [
      '5b2a4d18',
      '78000000',
      '4250434b',
      '0200', // version 2, u16 LE
      '01',
      '00',
      'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf',
      '0504030201000000',
      '0000000100000000',
      'efcdab0000000000',
      Buffer.from(rawDigest).toString('hex'),
      'deadbeef', // the payload CRC-32 as given (a u32 LE)
      '00'.repeat(28), // reserved
      '00000000', // reserved
    ].join('');
    expect(hex.slice(0, expected.length)).toBe(expected);
    expect(new DataView(object.buffer).getUint32(124, true)).toBe(crc32(object.subarray(8, 124)));
  });

  it('refuses a payload check of the wrong length for the version', () => {
    const target = new Uint8Array(HEADER_FRAME_LENGTH);
    const fields = { codec: Codec.zstd, flags: 0, streamId, index: 1, rawLength: 2, payloadLength: 0, rawDigest };
    expect(() => writeChunkHeader(target, { ...fields, payloadCheck: payloadSha256 })).toThrow(
      /version 2 chunk's payload check is 4 bytes, got 32/,
    );
    expect(() => writeChunkHeader(target, { ...fields, version: 1, payloadCheck: payloadCrc32 })).toThrow(
      /version 1 chunk's payload check is 32 bytes, got 4/,
    );
  });

  it('writes into a view at an offset without touching bytes around it', () => {
    const backing = new Uint8Array(HEADER_FRAME_LENGTH + 20).fill(0xee);
    const target = backing.subarray(10, 10 + HEADER_FRAME_LENGTH);
    writeChunkHeader(target, {
      codec: Codec.zstd,
      flags: 0,
      streamId,
      index: 1,
      rawLength: 2,
      payloadLength: 0,
      rawDigest,
      payloadCheck: payloadCrc32,
    });
    expect([...backing.subarray(0, 10)]).toEqual(Array(10).fill(0xee));
    expect([...backing.subarray(10 + HEADER_FRAME_LENGTH)]).toEqual(Array(10).fill(0xee));
    expect(readChunk(target, 'k').header.index).toBe(1);
  });
});

describe('readChunk', () => {
  it('round-trips every header field of both versions and returns the payload as a view', () => {
    const v1 = readChunk(makeObject({ version: 1 }), 'k').header;
    expect(v1.version).toBe(1);
    expect(Buffer.from(v1.payloadCheck).equals(payloadSha256)).toBe(true);
    const object = makeObject({ index: 123_456_789_012, rawLength: 16 * 1024 * 1024 }, 33);
    const { header, payload } = readChunk(object, 'chunks/123456789012');
    expect(header.version).toBe(2);
    expect(header.codec).toBe(Codec.zstd);
    expect(header.flags).toBe(0);
    expect(Buffer.from(header.streamId).equals(streamId)).toBe(true);
    expect(header.index).toBe(123_456_789_012);
    expect(header.rawLength).toBe(16 * 1024 * 1024);
    expect(header.payloadLength).toBe(33);
    expect(Buffer.from(header.rawDigest).equals(rawDigest)).toBe(true);
    expect(Buffer.from(header.payloadCheck).equals(payloadCrc32)).toBe(true);
    expect(payload.length).toBe(33);
    expect(payload.buffer).toBe(object.buffer);
    expect(payload.byteOffset).toBe(HEADER_FRAME_LENGTH);
  });

  it('accepts an object that is a view into a larger buffer', () => {
    const object = makeObject({}, 5);
    const backing = new Uint8Array(object.length + 9);
    backing.set(object, 4);
    const { header, payload } = readChunk(backing.subarray(4, 4 + object.length), 'k');
    expect(header.index).toBe(42);
    expect([...payload]).toEqual([...object.subarray(HEADER_FRAME_LENGTH)]);
  });

  it('accepts an empty payload when the header says so', () => {
    expect(readChunk(makeObject({}, 0), 'k').payload.length).toBe(0);
  });

  it('rejects an object shorter than the header frame', () => {
    expectCorrupt(new Uint8Array(0), /only 0 bytes, shorter than a chunk header/);
    expectCorrupt(makeObject({}, 0).subarray(0, HEADER_FRAME_LENGTH - 1), /only 127 bytes/);
  });

  it('rejects a wrong skippable frame magic, including the other skippable magics', () => {
    for (const magic of [0x184d2a50, 0x184d2a5f, 0xfd2fb528]) {
      const object = makeObject();
      new DataView(object.buffer).setUint32(0, magic, true);
      expectCorrupt(object, /does not start with a bucketpipe chunk header/);
    }
  });

  it('rejects a wrong header body magic', () => {
    const object = makeObject();
    object[8] = 0x41; // "APCK"
    expectCorrupt(fixCrc(object), /does not start with a bucketpipe chunk header/);
  });

  it('ignores the reserved bytes of a v2 header (a later version may use them for what an older reader may ignore)', () => {
    const object = makeObject();
    object.fill(0x5a, 8 + 84, 8 + 116);
    const { header } = readChunk(fixCrc(object), 'k');
    expect(Buffer.from(header.payloadCheck).equals(payloadCrc32)).toBe(true);
  });

  it('rejects a newer format version with BP_CHUNK_VERSION before looking at the CRC', () => {
    const object = makeObject();
    new DataView(object.buffer).setUint16(12, 3, true);
    const unfixed = readError(object.slice());
    expect(unfixed.code).toBe('BP_CHUNK_VERSION');
    const error = readError(fixCrc(object));
    expect(error.code).toBe('BP_CHUNK_VERSION');
    expect(error.exitCode).toBe(ExitCode.integrity);
    expect(error.message).toMatch(/format version 3, newer than this bucketpipe understands \(2\): upgrade bucketpipe/);
  });

  it('rejects format version 0 as corrupt', () => {
    const object = makeObject();
    new DataView(object.buffer).setUint16(12, 0, true);
    expectCorrupt(fixCrc(object), /format version 0 is not a bucketpipe chunk version/);
  });

  it('rejects u64 fields beyond 2^53 instead of rounding them', () => {
    const object = makeObject();
    new DataView(object.buffer).setBigUint64(8 + 24, 2n ** 60n, true);
    expectCorrupt(fixCrc(object), /a length or index is out of range/);
  });

  it('rejects a header frame whose size is not 120', () => {
    const object = makeObject();
    new DataView(object.buffer).setUint32(4, 121, true);
    expectCorrupt(object, /header frame is 121 bytes, expected 120/);
  });

  it('rejects a header whose CRC-32 does not match, for a flip in any covered byte', () => {
    for (const at of [8 + 8, 8 + 24, 8 + 32, 8 + 40, 8 + 48, 8 + 80, 8 + 112, 8 + 116]) {
      const object = makeObject();
      object[at] = (object[at] ?? 0) ^ 0x01;
      expectCorrupt(object, /header checksum mismatch/);
    }
  });

  it('rejects an unknown codec', () => {
    for (const codec of [0, 2, 255]) {
      const object = makeObject();
      object[8 + 6] = codec;
      expectCorrupt(fixCrc(object), new RegExp(`unknown codec ${codec};`));
    }
  });

  it('reads the encrypted flag, and refuses every other flag bit as a feature of a newer bucketpipe', () => {
    expect(readChunk(makeObject({ flags: ChunkFlag.encrypted }), 'k').header.flags).toBe(ChunkFlag.encrypted);
    expect(readChunk(makeObject(), 'k').header.flags).toBe(0);
    for (const flags of [0x02, 0x80, 0x81]) {
      const object = makeObject();
      object[8 + 7] = flags;
      const error = readError(fixCrc(object));
      expect(error.code).toBe('BP_CHUNK_VERSION');
      expect(error.message).toMatch(
        new RegExp(
          `chunks/000000000042 has flags 0x${flags.toString(16)}, features this bucketpipe does not understand: upgrade bucketpipe`,
        ),
      );
    }
  });

  it('rejects a truncated payload', () => {
    const object = makeObject({}, 10);
    expectCorrupt(object.subarray(0, object.length - 1), /truncated: payload is 9 bytes, header says 10/);
    expectCorrupt(object.subarray(0, HEADER_FRAME_LENGTH), /truncated: payload is 0 bytes, header says 10/);
  });

  it('rejects extra bytes after the payload', () => {
    const object = makeObject({}, 10);
    const longer = new Uint8Array(object.length + 1);
    longer.set(object);
    const error = readError(longer);
    expect(error.code).toBe('BP_CHUNK_CORRUPT');
    expect(error.message).toMatch(/payload is 11 bytes, header says 10/);
    expect(error.message).not.toMatch(/truncated/);
  });
});

describe('payload checks', () => {
  const payload = new TextEncoder().encode('123456789');

  it('are the SHA-256 in v1 and the CRC-32 (zlib, little-endian) in v2', () => {
    expect(Buffer.from(payloadCheckOf(1, payload)).toString('hex')).toBe(
      '15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225',
    );
    expect(Buffer.from(payloadCheckOf(2, payload)).toString('hex')).toBe('2639f4cb'); // 0xCBF43926, the CRC-32 check value
    expect(payloadCheckName(1)).toBe('payload SHA-256');
    expect(payloadCheckName(2)).toBe('payload CRC-32');
  });

  it('tell an intact payload from a damaged one, by the header of either version', () => {
    for (const version of [ChunkVersion.payloadSha256, ChunkVersion.payloadCrc32]) {
      const object = makeObject({ version, payloadCheck: payloadCheckOf(version, payload) }, payload.length);
      object.set(payload, HEADER_FRAME_LENGTH);
      const { header } = readChunk(object, 'k');
      expect(payloadIntact(header, payload)).toBe(true);
      expect(
        payloadIntact(
          header,
          Uint8Array.from(payload, (b, i) => (i === 4 ? b ^ 0x80 : b)),
        ),
      ).toBe(false);
    }
  });
});

describe('chunk keys', () => {
  it('are 12 zero-padded digits under chunks/', () => {
    expect(CHUNKS_PREFIX).toBe('chunks/');
    expect(chunkKey(0)).toBe('chunks/000000000000');
    expect(chunkKey(7)).toBe('chunks/000000000007');
    expect(chunkKey(999_999_999_999)).toBe('chunks/999999999999');
  });

  it('sort lexically in numeric order', () => {
    const indexes = [0, 1, 9, 10, 99, 100, 1234, 99_999, 1_000_000, 999_999_999_999];
    const keys = indexes.map(chunkKey);
    expect([...keys].sort()).toEqual(keys);
  });

  it('refuse indexes outside 0 … 10^12-1', () => {
    for (const bad of [-1, 1.5, 1_000_000_000_000, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => chunkKey(bad)).toThrow(RangeError);
    }
  });

  it('parse back, and only in the canonical form', () => {
    expect(parseChunkKey('chunks/000000000000')).toBe(0);
    expect(parseChunkKey('chunks/000000000042')).toBe(42);
    expect(parseChunkKey(chunkKey(999_999_999_999))).toBe(999_999_999_999);
    for (const bad of [
      'chunks/42',
      'chunks/0000000000420',
      'chunks/00000000004a',
      'x/chunks/000000000042',
      'chunks/000000000042.tmp',
      'manifest.json',
    ]) {
      expect(parseChunkKey(bad)).toBeNull();
    }
  });
});
