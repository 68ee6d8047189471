import { FaultyStore, flipByte, MemoryStore, pieces, randomBytes, truncate } from '@bucketpipe/store-testkit';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { chunkObjectBound } from '../codec/codec.js';
import { CodecPool } from '../codec/codec-pool.js';
import { ExitCode, StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import { MIN_CHUNK_SIZE } from '../protocol/limits.js';
import { encodeManifest, MANIFEST_KEY, type Manifest, readManifest } from '../protocol/manifest.js';
import { streamDigestOf } from '../protocol/stream-digest.js';
import type { RetryPolicy } from '../store/retry.js';
import { type ObjectStore, StoreError } from '../store/store.js';
import { craftChunk } from './pipeline-test-kit.js';
import { send } from './sender.js';
import { type VerifyOptions, type VerifyProgress, type VerifyReport, verifyExitCode, verifyStream } from './verify.js';

// The testkit is built against the package (dist) of @bucketpipe/core; point that at these sources,
// so that the StoreError it throws is the class the code under test checks with instanceof.
vi.mock('@bucketpipe/core', () => import('../index.js'));

const CHUNK = MIN_CHUNK_SIZE; // 64 KiB
const CHUNKS = 6;
const DATA = randomBytes(5 * CHUNK + 12_345, 11); // 6 chunks, the last one short
const fastRetry: RetryPolicy = { attempts: 3, baseDelayMs: 1, maxDelayMs: 4 };
let codec: CodecPool;

beforeAll(() => {
  codec = new CodecPool(2);
});
afterAll(async () => {
  await codec.close();
});

async function storedStream(data: Uint8Array = DATA): Promise<MemoryStore> {
  const store = new MemoryStore();
  await send({
    store,
    source: pieces(data, 10_007),
    chunkSize: CHUNK,
    level: 1,
    concurrency: 4,
    bufferBytes: 8 * chunkObjectBound(CHUNK),
    manifestIntervalMs: 5,
    heartbeatIntervalMs: 1_000,
    codec,
    retry: fastRetry,
  });
  return store;
}

function verify(store: ObjectStore, more: Partial<VerifyOptions> = {}): Promise<VerifyReport> {
  return verifyStream({ store, concurrency: 3, codec, retry: fastRetry, ...more });
}

async function manifestOf(store: ObjectStore): Promise<Manifest> {
  const found = await readManifest(store);
  if (!found) throw new Error('no manifest');
  return found.manifest;
}

async function rewriteManifest(store: MemoryStore, change: (m: Manifest) => Manifest): Promise<void> {
  await store.put(MANIFEST_KEY, encodeManifest(change(await manifestOf(store))));
}

async function damage(store: MemoryStore, index: number, how: (body: Uint8Array) => Uint8Array): Promise<void> {
  await store.put(chunkKey(index), how(store.peek(chunkKey(index)) as Uint8Array));
}

/** What a sender writes as `storedBytes` for a watermark: the sizes of the chunk objects below it. */
function storedBytesBelow(store: MemoryStore, watermark: number): number {
  let total = 0;
  for (let index = 0; index < watermark; index++) total += (store.peek(chunkKey(index)) as Uint8Array).length;
  return total;
}

const codes = (report: VerifyReport) => report.problems.map((p) => [p.key, p.code]);

describe('verifyStream', () => {
  it('passes a good stream: every chunk decoded, lengths and digest checked', async () => {
    const store = await storedStream();
    const progress: VerifyProgress[] = [];
    const report = await verify(store, { onProgress: (p) => progress.push(p) });
    expect(report.problems).toEqual([]);
    expect(report.verdict).toBe('ok');
    expect(verifyExitCode(report.verdict)).toBe(ExitCode.ok);
    expect(report).toMatchObject({ chunksExpected: CHUNKS, chunksChecked: CHUNKS, chunksBad: 0, rawBytes: DATA.length });
    expect(report.storedBytes).toBe((await manifestOf(store)).storedBytes);
    expect(report.digest).toEqual({ expected: streamDigestOf(DATA, CHUNK), actual: streamDigestOf(DATA, CHUNK), matches: true });
    const { storedBytes } = await manifestOf(store);
    expect(progress.at(-1)).toEqual({
      chunksChecked: CHUNKS,
      chunksExpected: CHUNKS,
      storedBytes,
      storedBytesExpected: storedBytes,
      problems: 0,
    });
  });

  it('passes an empty stream', async () => {
    const report = await verify(await storedStream(new Uint8Array(0)));
    expect(report).toMatchObject({ verdict: 'ok', chunksExpected: 0, chunksChecked: 0, problems: [] });
    expect(report.digest?.matches).toBe(true);
  });

  it('reports every bad chunk, not just the first: a flipped payload byte and a flipped header byte', async () => {
    const store = await storedStream();
    await damage(store, 1, flipByte(-100));
    await damage(store, 4, flipByte(40)); // the raw length field: the header CRC fails
    const report = await verify(store);
    expect(codes(report)).toEqual([
      [chunkKey(1), 'BP_CHUNK_CHECKSUM'],
      [chunkKey(4), 'BP_CHUNK_CORRUPT'],
    ]);
    expect(report.problems[0]?.message).toBe(`chunk ${chunkKey(1)} failed its payload CRC-32 check (altered or damaged in the store)`);
    expect(report.problems[1]?.message).toMatch(/header checksum mismatch$/);
    expect(report).toMatchObject({ verdict: 'failed', chunksChecked: CHUNKS, chunksBad: 2, digest: null });
    expect(verifyExitCode(report.verdict)).toBe(ExitCode.integrity);
  });

  it('reports a truncated chunk and one with extra bytes', async () => {
    const store = await storedStream();
    await damage(store, 2, truncate(-1000));
    await damage(store, 3, (body) => Buffer.concat([body, Buffer.from('junk')]));
    const report = await verify(store);
    expect(codes(report)).toEqual([
      [chunkKey(2), 'BP_CHUNK_CORRUPT'],
      [chunkKey(3), 'BP_CHUNK_CORRUPT'],
    ]);
    expect(report.problems[0]?.message).toMatch(/is corrupt: truncated: payload is \d+ bytes, header says \d+$/);
  });

  it('reports a chunk copied from another stream and one stored under another index', async () => {
    const store = await storedStream();
    const other = await storedStream();
    await store.put(chunkKey(2), other.peek(chunkKey(2)) as Uint8Array);
    await store.put(chunkKey(3), store.peek(chunkKey(0)) as Uint8Array);
    const report = await verify(store);
    expect(codes(report)).toEqual([
      [chunkKey(2), 'BP_CHUNK_FOREIGN'],
      [chunkKey(3), 'BP_CHUNK_MISPLACED'],
    ]);
  });

  it('reports a chunk whose raw length is wrong for its place: a short chunk in the middle, a last chunk of the wrong length', async () => {
    const store = await storedStream();
    const { streamId } = await manifestOf(store);
    await store.put(chunkKey(1), craftChunk(streamId, 1, DATA.subarray(CHUNK, CHUNK + 1000)));
    await store.put(chunkKey(5), craftChunk(streamId, 5, DATA.subarray(5 * CHUNK, 5 * CHUNK + 1000)));
    const report = await verify(store);
    expect(codes(report)).toEqual([
      [chunkKey(1), 'BP_CHUNK_LENGTH'],
      [chunkKey(5), 'BP_CHUNK_LENGTH'],
    ]);
    expect(report.problems[1]?.message).toBe(`chunk ${chunkKey(5)} holds 1000 raw bytes, expected 12345`);
  });

  it('reports missing chunks without waiting for them: one alone, and a run at the end as one problem', async () => {
    const store = await storedStream();
    await store.delete([chunkKey(1), chunkKey(4), chunkKey(5)]);
    const started = performance.now();
    const report = await verify(store);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(report.problems).toEqual([
      {
        key: chunkKey(1),
        code: 'BP_CHUNK_MISSING',
        message: expect.stringMatching(
          /^chunk chunks\/000000000001 is missing from memory:\/\/store; the manifest says every chunk below 6 is stored$/,
        ),
      },
      {
        key: chunkKey(4),
        lastKey: chunkKey(5),
        code: 'BP_CHUNK_MISSING',
        message: expect.stringMatching(/^chunks chunks\/000000000004 to chunks\/000000000005 \(2 chunks\) are missing/),
      },
    ]);
    expect(report).toMatchObject({ verdict: 'failed', chunksChecked: 3, chunksBad: 3, digest: null });
  });

  it('reports a chunk that is listed but gone when read as missing', async () => {
    const store = new FaultyStore(await storedStream());
    store.inject({ op: 'get', key: chunkKey(2), absent: true });
    const report = await verify(store);
    expect(codes(report)).toEqual([[chunkKey(2), 'BP_CHUNK_MISSING']]);
  });

  it('reads a bad chunk once more, and does not report damage that was only in transit', async () => {
    const store = new FaultyStore(await storedStream());
    store.inject({ op: 'get', key: chunkKey(3), times: 1, corrupt: flipByte(-10) });
    const report = await verify(store);
    expect(report.problems).toEqual([]);
    expect(store.count('get', chunkKey(3))).toBe(2);
  });

  it('reports a final.digest that does not match intact chunks', async () => {
    const store = await storedStream();
    await rewriteManifest(store, (m) => ({ ...m, final: { ...(m.final as NonNullable<Manifest['final']>), digest: 'ab'.repeat(32) } }));
    const report = await verify(store);
    expect(codes(report)).toEqual([[MANIFEST_KEY, 'BP_STREAM_CHECKSUM']]);
    expect(report.digest).toEqual({ expected: 'ab'.repeat(32), actual: streamDigestOf(DATA, CHUNK), matches: false });
    expect(report).toMatchObject({ verdict: 'failed', chunksBad: 0 });
  });

  it('reports chunk objects beyond final.chunks of a complete stream, and objects under chunks/ that are not chunks', async () => {
    const store = await storedStream();
    await store.put(chunkKey(CHUNKS), store.peek(chunkKey(0)) as Uint8Array);
    await store.put('chunks/notes.txt', Buffer.from('hello'));
    const report = await verify(store);
    expect(codes(report)).toEqual([
      [chunkKey(CHUNKS), 'BP_CHUNK_UNEXPECTED'],
      ['chunks/notes.txt', 'BP_CHUNK_UNEXPECTED'],
    ]);
    expect(report).toMatchObject({ verdict: 'failed', chunksChecked: CHUNKS, chunksBad: 0 });
  });

  it('verifies a stream still being written up to its watermark and says it is incomplete', async () => {
    const store = await storedStream();
    const storedBytes = storedBytesBelow(store, 3);
    await rewriteManifest(store, ({ final: _, ...m }) => ({ ...m, state: 'sending', watermark: 3, rawBytes: 3 * CHUNK, storedBytes }));
    await damage(store, 4, flipByte(-10)); // beyond the watermark: not the verifier's business yet
    const report = await verify(store);
    expect(report).toMatchObject({
      verdict: 'incomplete',
      chunksExpected: 3,
      chunksChecked: 3,
      chunksBeyondWatermark: 3,
      digest: null,
      problems: [],
    });
    expect(verifyExitCode(report.verdict)).toBe(ExitCode.ok);
  });

  it("compares the manifest's rawBytes and storedBytes with the chunks below the watermark (BP_MANIFEST_COUNTS)", async () => {
    const store = await storedStream();
    const good = await manifestOf(store);
    expect(good.storedBytes).toBe(storedBytesBelow(store, CHUNKS));
    await rewriteManifest(store, (m) => ({ ...m, storedBytes: m.storedBytes + 1 }));
    const stored = await verify(store);
    expect(codes(stored)).toEqual([[MANIFEST_KEY, 'BP_MANIFEST_COUNTS']]);
    expect(stored.problems[0]?.message).toContain(`storedBytes ${good.storedBytes + 1}`);
    expect(stored).toMatchObject({ verdict: 'failed', chunksBad: 0, digest: { matches: true } });
    expect(verifyExitCode(stored.verdict)).toBe(ExitCode.integrity);

    // rawBytes of a complete stream is tied to final by the parser; of a sending one only the chunks tell.
    await rewriteManifest(store, ({ final: _, ...m }) => ({
      ...m,
      state: 'sending',
      storedBytes: good.storedBytes,
      rawBytes: m.rawBytes - 1,
    }));
    expect(codes(await verify(store))).toEqual([[MANIFEST_KEY, 'BP_MANIFEST_COUNTS']]);
    // Not when chunks are bad: their sizes say nothing then.
    await rewriteManifest(store, (m) => ({ ...m, rawBytes: good.rawBytes }));
    await damage(store, 1, flipByte(-10));
    await rewriteManifest(store, (m) => ({ ...m, storedBytes: 1 }));
    expect(codes(await verify(store))).toEqual([[chunkKey(1), 'BP_CHUNK_CHECKSUM']]);
  });

  it('accepts a short last chunk below the watermark of a sending stream, but not a short one before it', async () => {
    const store = await storedStream();
    await rewriteManifest(store, ({ final: _, ...m }) => ({ ...m, state: 'sending' }));
    expect((await verify(store)).verdict).toBe('incomplete');
    const { streamId } = await manifestOf(store);
    await store.put(chunkKey(2), craftChunk(streamId, 2, DATA.subarray(2 * CHUNK, 2 * CHUNK + 10)));
    const report = await verify(store);
    expect(codes(report)).toEqual([[chunkKey(2), 'BP_CHUNK_LENGTH']]);
    expect(report.verdict).toBe('failed');
  });

  it('reports an aborted stream (exit 6) and still checks the chunks it stored; bad chunks make it exit 5', async () => {
    const store = await storedStream();
    const storedBytes = storedBytesBelow(store, 4);
    await rewriteManifest(store, ({ final: _, ...m }) => ({
      ...m,
      state: 'aborted',
      abortReason: 'source exited with 3',
      watermark: 4,
      rawBytes: 4 * CHUNK,
      storedBytes,
    }));
    const report = await verify(store);
    expect(report).toMatchObject({ verdict: 'aborted', chunksChecked: 4, chunksBeyondWatermark: 2, problems: [] });
    expect(verifyExitCode(report.verdict)).toBe(ExitCode.sourceFailed);
    await damage(store, 0, flipByte(-10));
    const damaged = await verify(store);
    expect(codes(damaged)).toEqual([[chunkKey(0), 'BP_CHUNK_CHECKSUM']]);
    expect(verifyExitCode(damaged.verdict)).toBe(ExitCode.integrity);
  });

  it('fails with a coded error when there is no stream or its manifest is malformed', async () => {
    await expect(verify(new MemoryStore())).rejects.toSatisfy((e) => e instanceof StoreError && e.kind === 'not-found');
    const store = await storedStream();
    await store.put(MANIFEST_KEY, Buffer.from('{"format":"bucketpipe.manifest","version":1}'));
    await expect(verify(store)).rejects.toSatisfy((e) => e instanceof StreamConflictError && e.code === 'BP_MANIFEST_MALFORMED');
  });

  it('stops on a store error instead of reporting chunks it could not read', async () => {
    const store = new FaultyStore(await storedStream());
    store.inject({ op: 'get', key: chunkKey(2), fail: 'auth' });
    await expect(verify(store)).rejects.toSatisfy((e) => e instanceof StoreError && e.kind === 'auth');
  });

  it('stops on a codec failure that is not about the chunk (a crashed worker) instead of blaming the chunk', async () => {
    const store = await storedStream();
    const crashed = { decode: () => Promise.reject(new Error('codec worker exited unexpectedly with code 1')) } as unknown as CodecPool;
    await expect(verify(store, { codec: crashed })).rejects.toThrow('codec worker exited unexpectedly');
  });

  it('keeps at most `concurrency` chunks in flight', async () => {
    const store = new FaultyStore(await storedStream());
    let active = 0;
    let peak = 0;
    store.inject({
      op: 'get',
      key: /^chunks\//,
      before: async () => {
        peak = Math.max(peak, ++active);
        await new Promise((resolve) => setTimeout(resolve, 5));
        active--;
      },
    });
    const report = await verify(store, { concurrency: 2 });
    expect(report.verdict).toBe('ok');
    expect(peak).toBe(2);
  });

  it('keeps at most maxProblems problems and counts the rest', async () => {
    const store = await storedStream();
    const other = await storedStream();
    for (let i = 0; i < CHUNKS; i++) await store.put(chunkKey(i), other.peek(chunkKey(i)) as Uint8Array);
    const report = await verify(store, { maxProblems: 2 });
    expect(report.problems).toHaveLength(2);
    expect(report).toMatchObject({ problemsOmitted: CHUNKS - 2, chunksBad: CHUNKS });
  });

  it('stops when aborted', async () => {
    const store = await storedStream();
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(verify(store, { signal: controller.signal })).rejects.toThrow('stop');
  });
});
