import { createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { FaultyStore, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { ChunkFlag, chunkKey, HEADER_FRAME_LENGTH, payloadCheckOf, readChunk } from '../protocol/chunk.js';
import { EncryptionKey, type StreamKeys } from '../protocol/encryption.js';
import { encodeManifest, MANIFEST_KEY, type Manifest } from '../protocol/manifest.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { streamKeysFor } from '../protocol/stream-encryption.js';
import { streamIdToBytes } from '../protocol/stream-id.js';
import {
  CHUNK,
  craftChunk,
  digestOf,
  failingAfter,
  fastRetry,
  manifestOf,
  pipelineTestKit,
  same,
  sourceFailure,
} from './pipeline-test-kit.js';
import { checkReceivedPrefix, type ResumableOutput } from './receive-resume.js';
import { receive } from './receiver.js';
import { relay } from './relay.js';
import { send } from './sender.js';
import { verifyStream } from './verify.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { codec, sendOptions, receiveOptions } = pipelineTestKit();

const keyBytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 17 + 5) & 0xff);
const key = new EncryptionKey(keyBytes);
const wrongKey = new EncryptionKey(Uint8Array.from({ length: 32 }, (_, i) => (i * 41 + 99) & 0xff));

const chunkPuts = (store: FaultyStore) => store.requests.filter((r) => r.op === 'put' && r.key.startsWith('chunks/')).map((r) => r.key);
const puts = (store: FaultyStore) => store.requests.filter((r) => r.op === 'put' || r.op === 'delete').map((r) => `${r.op} ${r.key}`);

async function encryptedStream(data: Uint8Array): Promise<{ memory: MemoryStore; manifest: Manifest; keys: StreamKeys; digest: string }> {
  const memory = new MemoryStore();
  const sent = await send(sendOptions(memory, pieces(data, 10_007), { encryptionKey: key }));
  const manifest = await manifestOf(memory);
  return { memory, manifest, keys: key.forStream(streamIdToBytes(manifest.streamId)), digest: sent.digest };
}

/** The stream digest of `data` as an encrypted stream with `keys` has it, computed here with node:crypto. */
function keyedDigestOf(data: Uint8Array, keys: StreamKeys): string {
  const hash = createHmac('sha256', keys.streamDigestKey);
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    hash.update(
      createHmac('sha256', keys.digestKey)
        .update(data.subarray(offset, offset + CHUNK))
        .digest(),
    );
  }
  return hash.digest('hex');
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; exitCode?: number }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; exitCode?: number };
  }
  throw new Error('expected a rejection');
}

/** An attacker's edit of a stored chunk: a ciphertext byte flipped, payload check and header CRC recomputed. */
function forgeCiphertext(object: Uint8Array): Uint8Array {
  const forged = Uint8Array.from(object);
  const at = HEADER_FRAME_LENGTH + 12 + 10;
  forged[at] = (forged[at] as number) ^ 0x01;
  forged.set(payloadCheckOf(readChunk(object, 'k').header.version, forged.subarray(HEADER_FRAME_LENGTH)), 8 + 80);
  new DataView(forged.buffer).setUint32(8 + 116, crc32(forged.subarray(8, 8 + 116)), true);
  return forged;
}

function memoryOutput(bytes: Uint8Array): ResumableOutput {
  return {
    description: 'out.bin',
    length: bytes.length,
    read: async (buffer: Uint8Array, position: number) => {
      const piece = bytes.subarray(position, position + buffer.length);
      buffer.set(piece);
      return piece.length;
    },
  };
}

describe('an encrypted stream through send and receive', () => {
  it('is stored encrypted, and a receive with the key gives identical bytes and the same keyed digest', async () => {
    const data = randomBytes(7 * CHUNK + 4321, 301);
    const { memory, manifest, keys, digest } = await encryptedStream(data);
    expect(manifest.encryption).toEqual({ algorithm: 'aes-256-gcm', kdf: 'hkdf-sha256', keyCheck: keys.keyCheck });
    expect(manifest).toMatchObject({ state: 'complete', watermark: 8, rawBytes: data.length });
    expect(JSON.stringify(manifest)).not.toContain(Buffer.from(keyBytes).toString('hex'));
    const objects = memory.keys('chunks/');
    expect(objects).toHaveLength(8);
    let stored = 0;
    for (const [index, objectKey] of objects.entries()) {
      const object = memory.peek(objectKey) as Uint8Array;
      stored += object.length;
      const { header, payload } = readChunk(object, objectKey);
      expect(header.flags, objectKey).toBe(ChunkFlag.encrypted);
      expect([...payload.subarray(0, 4)]).not.toEqual([0x28, 0xb5, 0x2f, 0xfd]);
      const raw = data.subarray(index * CHUNK, (index + 1) * CHUNK);
      expect(Buffer.from(header.rawDigest).equals(createHmac('sha256', keys.digestKey).update(raw).digest())).toBe(true);
      // Random data does not compress: its plaintext would show up verbatim in a plain chunk.
      expect(Buffer.from(object).includes(Buffer.from(raw.subarray(100, 164)))).toBe(false);
    }
    expect(manifest.storedBytes).toBe(stored);

    expect(digest).toBe(keyedDigestOf(data, keys));
    expect(digest).not.toBe(digestOf(data));
    expect(manifest.final?.digest).toBe(digest);
    const sink = new MemorySink();
    const received = await receive(receiveOptions(memory, sink, { encryptionKey: key }));
    expect(same(sink.bytes(), data), 'identical bytes').toBe(true);
    expect(sink.finished).toBe(true);
    expect(received).toMatchObject({ chunks: 8, rawBytes: data.length, digest });
  });

  it('an empty encrypted stream round-trips', async () => {
    const { memory, digest } = await encryptedStream(new Uint8Array(0));
    const sink = new MemorySink();
    const received = await receive(receiveOptions(memory, sink, { encryptionKey: key }));
    expect(sink.byteLength).toBe(0);
    expect(received.digest).toBe(digest);
  });

  for (const [what, encryptionKey, code, exitCode] of [
    ['without a key: BP_KEY_MISSING', undefined, 'BP_KEY_MISSING', 2],
    ['with a wrong key: BP_KEY_WRONG', wrongKey, 'BP_KEY_WRONG', 2],
  ] as const) {
    it(`a receive ${what}, before reading a chunk or writing a byte to the sink or the store`, async () => {
      const { memory } = await encryptedStream(randomBytes(3 * CHUNK + 1, 302));
      const store = new FaultyStore(memory);
      const sink = new MemorySink();
      const error = await rejection(receive(receiveOptions(store, sink, { encryptionKey })));
      expect(error).toMatchObject({ code, exitCode });
      expect(sink.writes).toBe(0);
      expect(sink.byteLength).toBe(0);
      expect(sink.finished).toBe(false);
      expect(store.count('get', /^chunks\//)).toBe(0);
      expect(puts(store)).toEqual([]);
    });
  }

  it('a receive of a plain stream with a key: BP_NOT_ENCRYPTED, nothing written', async () => {
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(randomBytes(2 * CHUNK, 303), 10_007)));
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const error = await rejection(receive(receiveOptions(store, sink, { encryptionKey: key })));
    expect(error).toMatchObject({ code: 'BP_NOT_ENCRYPTED', exitCode: 4 });
    expect(sink.writes).toBe(0);
    expect(puts(store)).toEqual([]);
  });

  it('a chunk altered in the store with its checksums recomputed: BP_CHUNK_AUTH, and the sink holds only the chunks before it', async () => {
    const data = randomBytes(6 * CHUNK, 304);
    const { memory } = await encryptedStream(data);
    await memory.put(chunkKey(2), forgeCiphertext(memory.peek(chunkKey(2)) as Uint8Array));
    const sink = new MemorySink();
    const error = await rejection(receive(receiveOptions(memory, sink, { encryptionKey: key })));
    expect(error).toMatchObject({ code: 'BP_CHUNK_AUTH', exitCode: 5 });
    expect(same(sink.bytes(), data.subarray(0, 2 * CHUNK)), 'chunks 0 and 1 only').toBe(true);
    expect(sink.finished).toBe(false);
  });

  it('a plaintext chunk put in place of an encrypted one: BP_CHUNK_NOT_ENCRYPTED, nothing of it written', async () => {
    const data = randomBytes(5 * CHUNK, 305);
    const { memory, manifest } = await encryptedStream(data);
    // Valid in every other respect: same stream id, same index, correct checksums; even the original bytes.
    await memory.put(chunkKey(1), craftChunk(manifest.streamId, 1, data.subarray(CHUNK, 2 * CHUNK)));
    const sink = new MemorySink();
    const error = await rejection(receive(receiveOptions(memory, sink, { encryptionKey: key })));
    expect(error).toMatchObject({ code: 'BP_CHUNK_NOT_ENCRYPTED', exitCode: 5 });
    expect(same(sink.bytes(), data.subarray(0, CHUNK))).toBe(true);
  });

  it('a whole stream replaced by a plaintext copy (manifest without encryption): refused by a receiver that has the key', async () => {
    const data = randomBytes(2 * CHUNK, 306);
    const { memory } = await encryptedStream(data);
    const manifest = await manifestOf(memory);
    const { encryption: _dropped, ...plain } = manifest;
    for (let i = 0; i < 2; i++) await memory.put(chunkKey(i), craftChunk(manifest.streamId, i, data.subarray(i * CHUNK, (i + 1) * CHUNK)));
    await memory.put(MANIFEST_KEY, encodeManifest({ ...plain, final: { chunks: 2, rawBytes: data.length, digest: digestOf(data) } }));
    const sink = new MemorySink();
    expect(await rejection(receive(receiveOptions(memory, sink, { encryptionKey: key })))).toMatchObject({ code: 'BP_NOT_ENCRYPTED' });
    expect(sink.writes).toBe(0);
  });

  it('a manifest whose final digest was replaced (the attacker cannot compute the keyed one): BP_STREAM_CHECKSUM, sink not finished', async () => {
    const data = randomBytes(3 * CHUNK + 10, 307);
    const { memory, manifest } = await encryptedStream(data);
    await memory.put(
      MANIFEST_KEY,
      encodeManifest({ ...manifest, final: { ...(manifest.final as NonNullable<Manifest['final']>), digest: digestOf(data) } }),
    );
    const sink = new MemorySink();
    expect(await rejection(receive(receiveOptions(memory, sink, { encryptionKey: key })))).toMatchObject({
      code: 'BP_STREAM_CHECKSUM',
      exitCode: 5,
    });
    expect(sink.finished).toBe(false);
  });

  it('a stream cut short in its manifest (watermark and final of 2 chunks, old digest): BP_STREAM_CHECKSUM', async () => {
    const data = randomBytes(4 * CHUNK, 308);
    const { memory, manifest } = await encryptedStream(data);
    const final = manifest.final as NonNullable<Manifest['final']>;
    await memory.put(
      MANIFEST_KEY,
      encodeManifest({ ...manifest, watermark: 2, rawBytes: 2 * CHUNK, final: { ...final, chunks: 2, rawBytes: 2 * CHUNK } }),
    );
    const sink = new MemorySink();
    expect(await rejection(receive(receiveOptions(memory, sink, { encryptionKey: key })))).toMatchObject({ code: 'BP_STREAM_CHECKSUM' });
    expect(sink.finished).toBe(false);
  });

  it('verifyStream checks an encrypted stream with the key, finds a forged chunk, and refuses without the key', async () => {
    const data = randomBytes(4 * CHUNK + 5, 309);
    const { memory, digest } = await encryptedStream(data);
    const verify = (encryptionKey?: EncryptionKey) =>
      verifyStream({ store: memory, concurrency: 3, codec: codec(), retry: fastRetry, encryptionKey });
    const report = await verify(key);
    expect(report).toMatchObject({ verdict: 'ok', chunksChecked: 5, chunksBad: 0, rawBytes: data.length });
    expect(report.digest).toEqual({ expected: digest, actual: digest, matches: true });
    expect(await rejection(verify())).toMatchObject({ code: 'BP_KEY_MISSING' });
    expect(await rejection(verify(wrongKey))).toMatchObject({ code: 'BP_KEY_WRONG' });
    await memory.put(chunkKey(3), forgeCiphertext(memory.peek(chunkKey(3)) as Uint8Array));
    const bad = await verify(key);
    expect(bad).toMatchObject({ verdict: 'failed', chunksBad: 1 });
    expect(JSON.stringify(bad.problems)).toContain('BP_CHUNK_AUTH');
  });

  it('a relay copies an encrypted stream without the key; a receiver on the far side reads it with the key', async () => {
    const data = randomBytes(3 * CHUNK + 77, 310);
    const { memory: near, digest } = await encryptedStream(data);
    const far = new MemoryStore('memory://far');
    await relay({ source: near, destination: far, concurrency: 4, pollIntervalMs: 5, retry: fastRetry });
    expect((await manifestOf(far)).encryption).toEqual((await manifestOf(near)).encryption);
    const sink = new MemorySink();
    const received = await receive(receiveOptions(far, sink, { encryptionKey: key }));
    expect(same(sink.bytes(), data)).toBe(true);
    expect(received.digest).toBe(digest);
  });
});

describe('checkReceivedPrefix on an encrypted stream', () => {
  it('with the keys: keeps a matching prefix (raw HMACs), and the receive that continues after it checks out', async () => {
    const data = randomBytes(8 * CHUNK + 99, 311);
    const { memory, manifest, digest } = await encryptedStream(data);
    const keys = streamKeysFor(manifest, key, 'test') as StreamKeys;
    const output = memoryOutput(data.subarray(0, 5 * CHUNK + 1000));
    const prefix = await checkReceivedPrefix({ store: memory, manifest, keys, output, concurrency: 4 });
    expect(prefix).toMatchObject({ chunks: 5, rawBytes: 5 * CHUNK, discardBytes: 1000 });
    const expected = new StreamDigest(keys);
    for (let i = 0; i < 5; i++)
      expected.add(
        i,
        createHmac('sha256', keys.digestKey)
          .update(data.subarray(i * CHUNK, (i + 1) * CHUNK))
          .digest(),
      );
    const sink = new MemorySink();
    let keysGiven: StreamKeys | undefined;
    const received = await receive(
      receiveOptions(memory, sink, {
        encryptionKey: key,
        start: async (_manifest, _signal, given) => {
          keysGiven = given;
          return prefix;
        },
      }),
    );
    expect(keysGiven?.keyCheck).toBe(keys.keyCheck);
    expect(same(sink.bytes(), data.subarray(5 * CHUNK))).toBe(true);
    expect(received).toMatchObject({ digest, resumedFrom: 5 });
  });

  it('with the keys: refuses a modified prefix, naming the raw HMAC-SHA256', async () => {
    const data = randomBytes(6 * CHUNK, 312);
    const { memory, manifest } = await encryptedStream(data);
    const keys = streamKeysFor(manifest, key, 'test') as StreamKeys;
    const modified = Uint8Array.from(data.subarray(0, 4 * CHUNK));
    modified[3 * CHUNK + 5] = (modified[3 * CHUNK + 5] as number) ^ 0x40;
    const error = await rejection(checkReceivedPrefix({ store: memory, manifest, keys, output: memoryOutput(modified), concurrency: 4 }));
    expect(error).toMatchObject({ code: 'BP_OUTPUT_MISMATCH', exitCode: 4 });
    expect(error.message).toContain(
      `its chunk 3 (bytes ${3 * CHUNK}…${4 * CHUNK - 1}) differs from the stream's chunk ${chunkKey(3)} (raw HMAC-SHA256)`,
    );
  });

  it('with another stream’s keys or none: never accepts the prefix', async () => {
    const data = randomBytes(3 * CHUNK, 313);
    const { memory, manifest } = await encryptedStream(data);
    const output = memoryOutput(data);
    const none = await rejection(checkReceivedPrefix({ store: memory, manifest, output, concurrency: 4 }));
    expect(none).toMatchObject({ code: 'BP_CHUNK_ENCRYPTED' });
    const wrong = wrongKey.forStream(streamIdToBytes(manifest.streamId));
    const mismatch = await rejection(checkReceivedPrefix({ store: memory, manifest, keys: wrong, output, concurrency: 4 }));
    expect(mismatch).toMatchObject({ code: 'BP_OUTPUT_MISMATCH' });
  });
});

describe('send --takeover of an encrypted stream', () => {
  /** An encrypted stream whose source failed after 4 chunks were stored and announced: aborted. */
  async function abortedStream(
    data: Uint8Array,
    { encryptionKey }: { encryptionKey?: EncryptionKey } = { encryptionKey: key },
  ): Promise<MemoryStore> {
    const memory = new MemoryStore();
    await expect(send(sendOptions(memory, failingAfter(data, 4), { encryptionKey }))).rejects.toBe(sourceFailure);
    expect(await manifestOf(memory)).toMatchObject({ state: 'aborted', watermark: 4 });
    return memory;
  }

  it('with the right key: verifies the stored chunks by their HMACs, encrypts the rest, and a receiver gets identical bytes', async () => {
    const data = randomBytes(7 * CHUNK + 3, 314);
    const memory = await abortedStream(data);
    const store = new FaultyStore(memory);
    const sent = await send(sendOptions(store, pieces(data, 10_007), { takeover: true, encryptionKey: key }));
    expect(sent).toMatchObject({ resumedFrom: 4, chunks: 8, chunksUploaded: 4, tookOver: { state: 'aborted' } });
    expect(chunkPuts(store).sort()).toEqual([4, 5, 6, 7].map(chunkKey));
    const manifest = await manifestOf(memory);
    const keys = key.forStream(streamIdToBytes(manifest.streamId));
    expect(manifest.encryption?.keyCheck).toBe(keys.keyCheck);
    expect(sent.digest).toBe(keyedDigestOf(data, keys));
    for (const objectKey of memory.keys('chunks/'))
      expect(readChunk(memory.peek(objectKey) as Uint8Array, objectKey).header.flags).toBe(ChunkFlag.encrypted);
    const sink = new MemorySink();
    const received = await receive(receiveOptions(memory, sink, { encryptionKey: key }));
    expect(same(sink.bytes(), data)).toBe(true);
    expect(received.digest).toBe(sent.digest);
  });

  for (const [what, encryptionKey, code] of [
    ['a wrong key: BP_KEY_WRONG', wrongKey, 'BP_KEY_WRONG'],
    ['no key: BP_KEY_MISSING', undefined, 'BP_KEY_MISSING'],
  ] as const) {
    it(`with ${what}, and writes nothing`, async () => {
      const data = randomBytes(6 * CHUNK, 315);
      const memory = await abortedStream(data);
      const before = await manifestOf(memory);
      const store = new FaultyStore(memory);
      const error = await rejection(send(sendOptions(store, pieces(data, 10_007), { takeover: true, encryptionKey })));
      expect(error).toMatchObject({ code, exitCode: 2 });
      expect(puts(store)).toEqual([]);
      expect(await manifestOf(memory)).toEqual(before);
    });
  }

  it('of a plain stream with a key: BP_NOT_ENCRYPTED, and writes nothing (no stream half plain, half encrypted)', async () => {
    const data = randomBytes(6 * CHUNK, 316);
    const memory = await abortedStream(data, {});
    expect((await manifestOf(memory)).encryption).toBeUndefined();
    const store = new FaultyStore(memory);
    const error = await rejection(send(sendOptions(store, pieces(data, 10_007), { takeover: true, encryptionKey: key })));
    expect(error).toMatchObject({ code: 'BP_NOT_ENCRYPTED', exitCode: 4 });
    expect(puts(store)).toEqual([]);
  });

  it('with the right key but a changed source: refused by the keyed check of the stored chunks', async () => {
    const data = randomBytes(6 * CHUNK, 317);
    const memory = await abortedStream(data);
    const changed = Uint8Array.from(data);
    changed[2 * CHUNK + 9] = (changed[2 * CHUNK + 9] as number) ^ 0x01;
    const store = new FaultyStore(memory);
    const error = await rejection(send(sendOptions(store, pieces(changed, 10_007), { takeover: true, encryptionKey: key })));
    expect(error.message).toMatch(/raw HMAC-SHA256 differs/);
    expect(chunkPuts(store)).toEqual([]);
  });
});
