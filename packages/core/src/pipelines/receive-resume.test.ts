import { createHash } from 'node:crypto';
import { FaultyStore, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { IntegrityError, StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import type { Manifest } from '../protocol/manifest.js';
import { receiverKey } from '../protocol/receiver-cursor.js';
import { StreamDigest } from '../protocol/stream-digest.js';
import { CHUNK, digestOf, manifestOf, pipelineTestKit, same, TEST_RECEIVER } from './pipeline-test-kit.js';
import { checkReceivedPrefix, type ReceiveStart, type ResumableOutput } from './receive-resume.js';
import { receive } from './receiver.js';
import { send } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { sendOptions, receiveOptions } = pipelineTestKit();

async function storedStream(data: Uint8Array): Promise<{ memory: MemoryStore; manifest: Manifest }> {
  const memory = new MemoryStore();
  await send(sendOptions(memory, pieces(data, 10_007)));
  return { memory, manifest: await manifestOf(memory) };
}

/** A file's worth of bytes, read the way the CLI reads a file: at positions, in pieces. */
function memoryOutput(bytes: Uint8Array): ResumableOutput & { reads: number } {
  const output = {
    description: 'out.bin',
    length: bytes.length,
    reads: 0,
    read: async (buffer: Uint8Array, position: number) => {
      output.reads++;
      const piece = bytes.subarray(position, position + buffer.length);
      buffer.set(piece);
      return piece.length;
    },
  };
  return output;
}

/** The start a sink holding the first `chunks` chunks of `data` has, digests computed here. */
function startOf(data: Uint8Array, chunks: number): ReceiveStart {
  const digest = new StreamDigest();
  for (let i = 0; i < chunks; i++) digest.add(i, sha256(data.subarray(i * CHUNK, (i + 1) * CHUNK)));
  return { chunks, rawBytes: Math.min(data.length, chunks * CHUNK), digest };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest();

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('a receive that starts after the chunks its sink holds', () => {
  it('delivers exactly the rest, never fetches the chunks before the start, and the seeded digest passes the final check', async () => {
    const data = randomBytes(12 * CHUNK + 777, 71);
    const { memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const put = vi.spyOn(memory, 'put');
    const sink = new MemorySink();
    const received = await receive(receiveOptions(store, sink, { start: async () => startOf(data, 5) }));
    expect(same(sink.bytes(), data.subarray(5 * CHUNK)), 'the rest, byte for byte').toBe(true);
    expect(sink.finished).toBe(true);
    expect(received).toMatchObject({
      chunks: 13,
      rawBytes: data.length,
      digest: digestOf(data),
      resumedFrom: 5,
      rawBytesResumed: 5 * CHUNK,
    });
    for (let i = 0; i < 5; i++) expect(store.count('get', chunkKey(i)), chunkKey(i)).toBe(0);
    for (let i = 5; i < 13; i++) expect(store.count('get', chunkKey(i)), chunkKey(i)).toBe(1);
    // The cursor is published with the resumed position from its first write on.
    const cursors = put.mock.calls
      .filter(([key]) => key === receiverKey(TEST_RECEIVER))
      .map(([, body]) => JSON.parse(Buffer.from(body).toString('utf8')) as { position: number; rawBytes: number; state: string });
    expect(cursors[0]).toMatchObject({ position: 5, rawBytes: 5 * CHUNK, state: 'receiving' });
    expect(cursors.at(-1)).toMatchObject({ position: 13, rawBytes: data.length, state: 'done' });
  });

  it('a sink that already holds the whole stream is only finished', async () => {
    const data = randomBytes(4 * CHUNK + 5, 72);
    const { memory } = await storedStream(data);
    const store = new FaultyStore(memory);
    const sink = new MemorySink();
    const received = await receive(receiveOptions(store, sink, { start: async () => ({ ...startOf(data, 5), rawBytes: data.length }) }));
    expect(sink.byteLength).toBe(0);
    expect(sink.finished).toBe(true);
    expect(received).toMatchObject({ chunks: 5, rawBytes: data.length, digest: digestOf(data), resumedFrom: 5 });
    expect(store.count('get', /^chunks\//)).toBe(0);
  });

  it('a wrong seed (the sink holds other bytes than it claims) is caught by the final digest check: the sink is never finished', async () => {
    const data = randomBytes(6 * CHUNK, 73);
    const { memory } = await storedStream(data);
    const other = Uint8Array.from(data);
    other[CHUNK + 10] = (other[CHUNK + 10] as number) ^ 1;
    const sink = new MemorySink();
    const error = await rejection(receive(receiveOptions(memory, sink, { start: async () => startOf(other, 3) })));
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.code).toBe('BP_STREAM_CHECKSUM');
    expect(sink.finished).toBe(false);
    expect(sink.aborted).toBe(true);
  });

  it('a start beyond the watermark or with a digest of other chunks is refused as a bug before anything is written', async () => {
    const data = randomBytes(3 * CHUNK, 74);
    const { memory } = await storedStream(data);
    const sink = new MemorySink();
    await expect(receive(receiveOptions(memory, sink, { start: async () => startOf(data, 4) }))).rejects.toThrow(/bug: cannot start/);
    await expect(
      receive(receiveOptions(memory, sink, { start: async () => ({ ...startOf(data, 2), digest: startOf(data, 1).digest }) })),
    ).rejects.toThrow(/bug: the stream digest to start with holds 1 chunks, not 2/);
    expect(sink.byteLength).toBe(0);
  });
});

describe('checkReceivedPrefix: what an output from an earlier run holds', () => {
  const data = randomBytes(10 * CHUNK + 1234, 75);
  let stored: Awaited<ReturnType<typeof storedStream>> | undefined;
  const stream = async () => {
    stored ??= await storedStream(data);
    return stored;
  };

  it('keeps the whole chunks, cuts off a partly written one, reading only chunk headers (128-byte ranges)', async () => {
    const { memory, manifest } = await stream();
    const store = new FaultyStore(memory);
    const get = vi.spyOn(memory, 'get');
    const output = memoryOutput(data.subarray(0, 6 * CHUNK + 999));
    const prefix = await checkReceivedPrefix({ store, manifest, output, concurrency: 4 });
    expect(prefix).toMatchObject({ chunks: 6, rawBytes: 6 * CHUNK, discardBytes: 999 });
    expect(prefix.digest.chunks).toBe(6);
    expect(store.count('get', /^chunks\//)).toBe(6);
    for (const [, options] of get.mock.calls) expect(options?.range).toEqual({ start: 0, end: 128 });
    // Then the receive continues after them and the whole stream checks out.
    const sink = new MemorySink();
    const received = await receive(receiveOptions(memory, sink, { start: async () => prefix }));
    expect(same(Buffer.concat([data.subarray(0, 6 * CHUNK), sink.bytes()]), data)).toBe(true);
    expect(received.digest).toBe(digestOf(data));
  });

  it('a complete output, short last chunk included, is all kept', async () => {
    const { memory, manifest } = await stream();
    const prefix = await checkReceivedPrefix({ store: memory, manifest, output: memoryOutput(data), concurrency: 4 });
    expect(prefix).toMatchObject({ chunks: 11, rawBytes: data.length, discardBytes: 0 });
    const sink = new MemorySink();
    expect((await receive(receiveOptions(memory, sink, { start: async () => prefix }))).digest).toBe(digestOf(data));
    expect(sink.byteLength).toBe(0);
  });

  it('an output of another stream is refused at chunk 0, and the output is only read', async () => {
    const { memory, manifest } = await stream();
    const error = await rejection(
      checkReceivedPrefix({ store: memory, manifest, output: memoryOutput(randomBytes(3 * CHUNK, 76)), concurrency: 4 }),
    );
    expect(error).toBeInstanceOf(StreamConflictError);
    expect(error.code).toBe('BP_OUTPUT_MISMATCH');
    expect(error.message).toMatch(
      /^out\.bin does not hold the start of stream [0-9a-f-]+: its chunk 0 \(bytes 0…65535\) differs from the stream's chunk chunks\/000000000000 \(raw SHA-256\); it holds another stream, or was modified\. Nothing was written to it/,
    );
  });

  it('an output modified in chunk 7 is refused naming that chunk, and says how to keep the 7 that match', async () => {
    const { memory, manifest } = await stream();
    const modified = Uint8Array.from(data.subarray(0, 9 * CHUNK));
    modified[7 * CHUNK + 3] = (modified[7 * CHUNK + 3] as number) ^ 0x80;
    const error = await rejection(checkReceivedPrefix({ store: memory, manifest, output: memoryOutput(modified), concurrency: 4 }));
    expect(error.code).toBe('BP_OUTPUT_MISMATCH');
    expect(error.message).toContain(`its chunk 7 (bytes ${7 * CHUNK}…${8 * CHUNK - 1}) differs`);
    expect(error.message).toContain(`\`truncate -s ${7 * CHUNK}\` keeps them`);
  });

  it('an output longer than the complete stream is refused', async () => {
    const { memory, manifest } = await stream();
    const longer = Buffer.concat([data, Buffer.from('more')]);
    const error = await rejection(checkReceivedPrefix({ store: memory, manifest, output: memoryOutput(longer), concurrency: 4 }));
    expect(error.code).toBe('BP_OUTPUT_MISMATCH');
    expect(error.message).toContain(`more than the whole stream (${data.length} bytes)`);
  });

  it('of a stream still being sent, only chunks the watermark covers are kept (a copy may lag behind the one written from)', async () => {
    const { memory, manifest } = await stream();
    const live: Manifest = { ...manifest, state: 'sending', watermark: 4, rawBytes: 4 * CHUNK, final: undefined };
    const store = new FaultyStore(memory);
    const prefix = await checkReceivedPrefix({ store, manifest: live, output: memoryOutput(data.subarray(0, 9 * CHUNK)), concurrency: 4 });
    expect(prefix).toMatchObject({ chunks: 4, rawBytes: 4 * CHUNK, discardBytes: 5 * CHUNK });
    expect(store.count('get', /^chunks\//)).toBe(4);
  });

  it('a damaged chunk header stops the check with that chunk’s code', async () => {
    const { manifest } = await stream();
    const memory = new MemoryStore();
    await send(sendOptions(memory, pieces(data, 10_007)));
    const copy = (await manifestOf(memory)).streamId;
    // The same bytes under another stream id: every header is foreign to `manifest`.
    expect(copy).not.toBe(manifest.streamId);
    const error = await rejection(checkReceivedPrefix({ store: memory, manifest, output: memoryOutput(data), concurrency: 4 }));
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.code).toBe('BP_CHUNK_FOREIGN');
  });
});
