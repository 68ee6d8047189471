import { setTimeout as sleep } from 'node:timers/promises';
import { FaultyStore, MemorySink, MemoryStore, pieces, randomBytes } from '@bucketpipe/store-testkit';
import { describe, expect, it, vi } from 'vitest';
import { chunkObjectBound } from '../codec/codec.js';
import { chunkKey } from '../protocol/chunk.js';
import { MANIFEST_KEY, type Manifest } from '../protocol/manifest.js';
import { streamDigestOf } from '../protocol/stream-digest.js';
import type { ObjectStore } from '../store/store.js';
import { background, CHUNK, failingAfter, manifestOf, pipelineTestKit, same, sourceFailure } from './pipeline-test-kit.js';
import { receive } from './receiver.js';
import { type SendOptions, type SendProgress, send } from './sender.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const { sendOptions, receiveOptions } = pipelineTestKit();

/** A takeover of a sender that has just stopped: any heartbeat age counts as stale. */
const takeover = (more: Partial<SendOptions> = {}): Partial<SendOptions> => ({ takeover: true, staleAfterMs: 0, ...more });

const chunkPuts = (store: FaultyStore) => store.requests.filter((r) => r.op === 'put' && r.key.startsWith('chunks/')).map((r) => r.key);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

async function receiveAll(store: ObjectStore): Promise<Uint8Array> {
  const sink = new MemorySink();
  await receive(receiveOptions(store, sink, { receiverId: 'r' }));
  return sink.bytes();
}

/**
 * A sender that dies like a SIGKILLed process: it sends `data` up to `announced` chunks (watermark
 * in the manifest), then its manifest writes stop landing while it stores `stored` chunks in all
 * (all of `data` may end sooner), then every request it makes hangs forever and it writes nothing more (not even `aborted`).
 */
async function killedSender(memory: MemoryStore, data: Uint8Array, announced: number, stored: number): Promise<void> {
  const store = new FaultyStore(memory);
  const never = new Promise<void>(() => {});
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  async function* source(): AsyncGenerator<Uint8Array> {
    yield* pieces(data.subarray(0, announced * CHUNK), 10_007);
    if (stored > announced) await gate;
    yield* pieces(data.subarray(announced * CHUNK, stored * CHUNK), 10_007);
    // The source hangs; or it has ended, and the sender waits for its command to exit.
    if (stored * CHUNK < data.length) await never;
  }
  void background(send(sendOptions(store, source(), { sourceExit: never })));
  await vi.waitFor(async () => expect((await manifestOf(memory)).watermark).toBe(announced));
  store.inject({ op: 'put', key: MANIFEST_KEY, before: () => never });
  release();
  await vi.waitFor(() => expect(memory.keys('chunks/')).toHaveLength(stored));
  store.inject({ before: () => never });
}

describe('a sender killed midway, then send --takeover', () => {
  it('verifies the stored chunks against the source, uploads only the rest, and a receiver gets identical bytes', async () => {
    const data = randomBytes(20 * CHUNK + 1234, 31);
    const memory = new MemoryStore();
    // A receiver that follows the stream from before the kill to the end, across the takeover.
    const following = background(receiveAll(memory));
    await killedSender(memory, data, 3, 9);
    const dead = await manifestOf(memory);
    expect(dead).toMatchObject({ state: 'sending', watermark: 3 });

    const store = new FaultyStore(memory);
    const progress: SendProgress[] = [];
    const sent = await send(sendOptions(store, pieces(data, 10_007), { ...takeover(), onProgress: (p) => progress.push(p) }));
    expect(sent).toMatchObject({
      streamId: dead.streamId,
      chunks: 21,
      rawBytes: data.length,
      resumedFrom: 3,
      chunksReused: 6,
      chunksUploaded: 12,
    });
    expect(sent.tookOver).toMatchObject({ state: 'sending', sender: dead.sender });
    expect(sent.digest).toBe(streamDigestOf(data, CHUNK));
    // Chunks below the watermark are only read (their 128-byte headers), never written; so are the
    // dead sender's chunks above it (3 … 8), found by one listing, whose headers match the source.
    expect(chunkPuts(store).sort()).toEqual(range(9, 21).map(chunkKey));
    expect(store.count('get', /^chunks\//)).toBe(9);
    const manifest = await manifestOf(memory);
    expect(manifest).toMatchObject({ streamId: dead.streamId, createdAt: dead.createdAt, state: 'complete', watermark: 21 });
    expect(manifest.sender.startedAt).not.toBe(dead.sender.startedAt);
    const stored = memory.keys('chunks/').reduce((sum, key) => sum + (memory.peek(key)?.length ?? 0), 0);
    expect(manifest.storedBytes).toBe(stored);

    expect(progress.filter((p) => p.phase === 'verifying').map((p) => p.chunksRead)).toEqual([1, 2, 3]);
    expect(progress.at(-1)).toMatchObject({ phase: 'sending', resumedFrom: 3, watermark: 21 });
    expect(same(await receiveAll(memory), data), 'a new receiver gets identical bytes').toBe(true);
    expect(same(await following, data), 'a receiver that followed across the takeover too').toBe(true);
  });

  it('uploads again a chunk beyond the watermark that does not match the source (it was never announced)', async () => {
    const data = randomBytes(8 * CHUNK, 35);
    const memory = new MemoryStore();
    await killedSender(memory, data, 2, 5);
    // The same up to the watermark, other bytes in chunk 3 (stored by the dead sender, never announced).
    const source = Uint8Array.from(data);
    source[3 * CHUNK + 7] = (source[3 * CHUNK + 7] ?? 0) ^ 0xff;
    const store = new FaultyStore(memory);
    const sent = await send(sendOptions(store, pieces(source, 10_007), takeover()));
    expect(sent).toMatchObject({ resumedFrom: 2, chunksReused: 2, chunksUploaded: 4, digest: streamDigestOf(source, CHUNK) });
    expect(chunkPuts(store).sort()).toEqual([3, 5, 6, 7].map(chunkKey));
    expect(same(await receiveAll(memory), source)).toBe(true);
  });

  it('finishes a stream whose every chunk was stored before the sender died, uploading nothing', async () => {
    const data = randomBytes(5 * CHUNK + 99, 32);
    const memory = new MemoryStore();
    await killedSender(memory, data, 6, 6);
    const store = new FaultyStore(memory);
    const sent = await send(sendOptions(store, pieces(data, 10_007), takeover()));
    expect(sent).toMatchObject({ chunks: 6, resumedFrom: 6, chunksUploaded: 0, digest: streamDigestOf(data, CHUNK) });
    expect(chunkPuts(store)).toEqual([]);
    expect((await manifestOf(memory)).state).toBe('complete');
    expect(same(await receiveAll(memory), data)).toBe(true);
  });

  it('reads the stored headers ahead, in parallel, while it reads the source', async () => {
    const data = randomBytes(24 * CHUNK, 33);
    const memory = new MemoryStore();
    await killedSender(memory, data, 20, 20);
    const store = new FaultyStore(memory);
    let active = 0;
    let maxActive = 0;
    store.inject({
      op: 'get',
      key: /^chunks\//,
      before: async () => {
        maxActive = Math.max(maxActive, ++active);
        await sleep(5);
        active--;
      },
    });
    // The smallest buffer the sender accepts: verification holds one chunk of it.
    const sent = await send(sendOptions(store, pieces(data, 10_007), takeover({ bufferBytes: 2 * chunkObjectBound(CHUNK) })));
    expect(sent).toMatchObject({ resumedFrom: 20, chunks: 24 });
    expect(maxActive).toBe(4); // --concurrency
  });
});

describe('a resume whose source differs from the stored stream', () => {
  it('stops at the first differing chunk, names it, and leaves the stream as it was', async () => {
    const data = randomBytes(10 * CHUNK, 34);
    const memory = new MemoryStore();
    await killedSender(memory, data, 6, 8);
    const before = memory.peek(MANIFEST_KEY);
    const keys = memory.keys();
    const other = Uint8Array.from(data);
    other.set([(other[4 * CHUNK + 17] ?? 0) ^ 0x20], 4 * CHUNK + 17); // chunk 4 differs
    const store = new FaultyStore(memory);
    const error = await send(sendOptions(store, pieces(other, 10_007), takeover())).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_SOURCE_CHANGED', exitCode: 5 });
    expect((error as Error).message).toMatch(
      /^the source does not match the stored stream at chunk chunks\/000000000004: its raw SHA-256 differs .*nothing was written and the stored stream is as it was/,
    );
    expect(store.count('put')).toBe(0);
    expect(memory.peek(MANIFEST_KEY)).toEqual(before);
    expect(memory.keys()).toEqual(keys);
    // The right source can still resume it.
    const sent = await send(sendOptions(memory, pieces(data, 10_007), takeover()));
    expect(sent).toMatchObject({ resumedFrom: 6, digest: streamDigestOf(data, CHUNK) });
  });

  it('stops when the source is shorter than the stored stream', async () => {
    const data = randomBytes(10 * CHUNK, 35);
    const memory = new MemoryStore();
    await killedSender(memory, data, 6, 6);
    const store = new FaultyStore(memory);
    const error = await send(sendOptions(store, pieces(data.subarray(0, 4 * CHUNK + 5), 10_007), takeover())).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_SOURCE_CHANGED' });
    expect((error as Error).message).toContain('chunk chunks/000000000004: the source gives 5 bytes for it, the stored chunk holds 65536');
    expect(store.count('put')).toBe(0);
    expect((await manifestOf(memory)).state).toBe('sending');
  });

  it('stops at a chunk missing below the watermark, writing nothing', async () => {
    const data = randomBytes(8 * CHUNK, 36);
    const memory = new MemoryStore();
    await killedSender(memory, data, 5, 5);
    await memory.delete([chunkKey(2)]);
    const store = new FaultyStore(memory);
    const error = await send(sendOptions(store, pieces(data, 10_007), takeover())).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_CHUNK_MISSING', exitCode: 5 });
    expect((error as Error).message).toMatch(/^chunk chunks\/000000000002 is missing .*cannot be resumed/);
    expect(store.count('put')).toBe(0);
  });
});

describe('what --takeover refuses', () => {
  it('a live sender (fresh heartbeat): refused before reading the source, and the sender carries on', async () => {
    const memory = new MemoryStore();
    const data = randomBytes(3 * CHUNK + 10, 37);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    async function* held(): AsyncGenerator<Uint8Array> {
      yield* pieces(data, 10_007);
      await gate;
    }
    const first = background(send(sendOptions(memory, held())));
    await vi.waitFor(async () => expect((await manifestOf(memory)).watermark).toBe(3));
    const store = new FaultyStore(memory);
    let pulled = false;
    async function* second(): AsyncGenerator<Uint8Array> {
      pulled = true;
      yield* pieces(data, 10_007);
    }
    const error = await send(sendOptions(store, second(), { takeover: true })).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_SENDER_LIVE', exitCode: 4 });
    expect((error as Error).message).toMatch(
      /has a live sender \(.*, pid \d+ on .*, heartbeat \d+\.\ds ago, less than the 60s --stale-after limit\)/,
    );
    expect(pulled).toBe(false);
    expect(store.count('put')).toBe(0);
    release();
    await expect(first).resolves.toMatchObject({ chunks: 4 });
  });

  it('a complete stream from another source, which must also end where the stream ends', async () => {
    const memory = new MemoryStore();
    const data = randomBytes(2 * CHUNK, 38);
    await send(sendOptions(memory, pieces(data, 10_007)));
    const store = new FaultyStore(memory);
    const other = Uint8Array.from(data);
    other[CHUNK + 5] = (other[CHUNK + 5] ?? 0) ^ 1;
    await expect(send(sendOptions(store, pieces(other, 10_007), takeover()))).rejects.toMatchObject({ code: 'BP_SOURCE_CHANGED' });
    const longer = new Uint8Array(2 * CHUNK + 1);
    longer.set(data);
    await expect(send(sendOptions(store, pieces(longer, 10_007), takeover()))).rejects.toMatchObject({
      code: 'BP_SOURCE_CHANGED',
      message: expect.stringMatching(/the source goes on after the 2 chunks .* which is complete/),
    });
    expect(store.count('put')).toBe(0);
  });

  it('another chunk size or level than the stream was started with', async () => {
    const data = randomBytes(4 * CHUNK, 39);
    const memory = new MemoryStore();
    await killedSender(memory, data, 2, 2);
    const error = await send(sendOptions(memory, pieces(data, 10_007), takeover({ level: 3 }))).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_TAKEOVER_OPTIONS', exitCode: 2 });
    expect((error as Error).message).toContain('was started with --chunk-size 64.0 KiB and --level 1, not 64.0 KiB and 3');
  });

  it('loses a race cleanly: the manifest changed between reading and claiming it', async () => {
    const data = randomBytes(8 * CHUNK, 40);
    const memory = new MemoryStore();
    await killedSender(memory, data, 4, 4);
    const store = new FaultyStore(memory);
    let intruder: Manifest | undefined;
    // While this sender verifies, another process (the old sender, alive after all) writes the manifest.
    store.inject({
      op: 'get',
      key: chunkKey(0),
      before: async () => {
        const current = await manifestOf(memory);
        intruder = { ...current, sender: { ...current.sender, id: 'intruder' } };
        await memory.put(MANIFEST_KEY, Buffer.from(JSON.stringify(intruder)));
      },
    });
    const error = await send(sendOptions(store, pieces(data, 10_007), takeover())).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_TAKEOVER_RACE', exitCode: 4 });
    expect((error as Error).message).toMatch(/changed while this sender was taking it over .*this sender wrote nothing/);
    expect((await manifestOf(memory)).sender.id).toBe('intruder');
    expect(chunkPuts(store)).toEqual([]);
  });
});

describe('other streams --takeover may continue', () => {
  it('an aborted stream: back to sending, its abort reason gone, then complete', async () => {
    const data = randomBytes(6 * CHUNK + 7, 41);
    const memory = new MemoryStore();
    await expect(send(sendOptions(memory, failingAfter(data, 4)))).rejects.toBe(sourceFailure);
    const aborted = await manifestOf(memory);
    // 4 chunks were read; how many were stored before the failure aborted the uploads depends on
    // the machine's load (usually all 4). The takeover continues from whatever the watermark says.
    expect(aborted.state).toBe('aborted');
    expect(aborted.watermark).toBeLessThanOrEqual(4);
    const refused = await send(sendOptions(memory, pieces(data, 10_007))).catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(
      /is aborted \(source command .*\): to resume it, run the same send command again with --takeover/,
    );

    const store = new FaultyStore(memory);
    const states: string[] = [];
    store.inject({
      op: 'put',
      key: MANIFEST_KEY,
      before: (_, body) => void states.push(JSON.parse(Buffer.from(body ?? []).toString()).state),
    });
    // An aborted stream has no live sender: no heartbeat age is needed.
    const sent = await send(sendOptions(store, pieces(data, 10_007), { takeover: true }));
    expect(sent).toMatchObject({ resumedFrom: aborted.watermark, chunks: 7, tookOver: { state: 'aborted' } });
    expect(states[0]).toBe('sending');
    expect(states.at(-1)).toBe('complete');
    const manifest = await manifestOf(memory);
    expect(manifest.abortReason).toBeUndefined();
    expect(same(await receiveAll(memory), data)).toBe(true);
  });

  it("keeps the stream's size estimate unless the new sender brings its own", async () => {
    const data = randomBytes(3 * CHUNK + 5, 43);
    for (const [given, kept] of [
      [undefined, 1000],
      [2000, 2000],
    ] as const) {
      const memory = new MemoryStore();
      await send(sendOptions(memory, failingAfter(data, 1), { expectedRawBytes: 1000 })).catch(() => {});
      expect(await manifestOf(memory)).toMatchObject({ state: 'aborted', expectedRawBytes: 1000 });
      await send(sendOptions(memory, pieces(data, 10_007), { takeover: true, expectedRawBytes: given }));
      expect(await manifestOf(memory)).toMatchObject({ state: 'complete', expectedRawBytes: kept });
    }
  });

  it('no stream at all: starts a new one', async () => {
    const memory = new MemoryStore();
    const data = randomBytes(2 * CHUNK + 3, 42);
    const sent = await send(sendOptions(memory, pieces(data, 10_007), { takeover: true }));
    expect(sent).toMatchObject({ resumedFrom: 0, chunksUploaded: 3, tookOver: undefined });
    expect(same(await receiveAll(memory), data)).toBe(true);
  });

  it('without --takeover, a stale stream is refused with a hint to use it', async () => {
    const data = randomBytes(4 * CHUNK, 43);
    const memory = new MemoryStore();
    await killedSender(memory, data, 2, 2);
    const manifest = await manifestOf(memory);
    const old = new Date(Date.now() - 120_000).toISOString();
    await memory.put(MANIFEST_KEY, Buffer.from(JSON.stringify({ ...manifest, sender: { ...manifest.sender, heartbeatAt: old } })));
    const error = await send(sendOptions(memory, pieces(data, 10_007))).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BP_STREAM_EXISTS' });
    expect((error as Error).message).toMatch(
      /already has a sender \(.*heartbeat 120s ago, more than 60s: it looks dead\): .*run the same send command again with --takeover/,
    );
    // ... and with it (the default staleness limit), it is taken over.
    const sent = await send(sendOptions(memory, pieces(data, 10_007), { takeover: true }));
    expect(sent).toMatchObject({ resumedFrom: 2, chunks: 4 });
  });

  it('an interrupted verification writes nothing', async () => {
    const data = randomBytes(8 * CHUNK, 44);
    const memory = new MemoryStore();
    await killedSender(memory, data, 6, 6);
    const before = memory.peek(MANIFEST_KEY);
    const controller = new AbortController();
    const reason = new Error('interrupted by SIGINT');
    const store = new FaultyStore(memory);
    store.inject({ op: 'get', key: chunkKey(3), before: () => controller.abort(reason) });
    await expect(send(sendOptions(store, pieces(data, 10_007), takeover({ signal: controller.signal })))).rejects.toBe(reason);
    expect(store.count('put')).toBe(0);
    expect(memory.peek(MANIFEST_KEY)).toEqual(before);
  });
});

describe('send --takeover of a stream that is complete already (a restart after the sender finished)', () => {
  it('reads the whole source, checks it against the stored chunks and the digest, writes nothing and ends as done', async () => {
    const memory = new MemoryStore();
    const data = randomBytes(3 * CHUNK + 1234, 41);
    const first = await send(sendOptions(memory, pieces(data, 10_007)));
    const store = new FaultyStore(memory);
    const again = await send(sendOptions(store, pieces(data, 10_007), takeover()));
    expect(again).toMatchObject({ streamId: first.streamId, chunks: 4, chunksUploaded: 0, resumedFrom: 4, digest: first.digest });
    expect(again.tookOver).toMatchObject({ state: 'complete' });
    expect(store.count('put')).toBe(0);
    expect(Buffer.from(await receiveAll(memory)).equals(Buffer.from(data))).toBe(true);
  });

  it('also for a stream of whole chunks only, and for an empty one', async () => {
    for (const data of [randomBytes(2 * CHUNK, 42), new Uint8Array(0)]) {
      const memory = new MemoryStore();
      await send(sendOptions(memory, pieces(data, 10_007)));
      const store = new FaultyStore(memory);
      await expect(send(sendOptions(store, pieces(data, 10_007), takeover()))).resolves.toMatchObject({ chunksUploaded: 0 });
      expect(store.count('put')).toBe(0);
    }
  });
});
