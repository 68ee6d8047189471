import { randomUUID } from 'node:crypto';
import { FaultyStore, MemoryStore } from '@bucketpipe/store-testkit';
import { describe, expect, it } from 'vitest';
import { StreamConflictError } from '../errors.js';
import { chunkKey } from '../protocol/chunk.js';
import { encodeManifest, MANIFEST_KEY, type Manifest, type StreamState } from '../protocol/manifest.js';
import { type ReceiverCursor, type ReceiverState, receiverKey } from '../protocol/receiver-cursor.js';
import type { ObjectStore } from '../store/store.js';
import { listLocation, listStreams } from './stream-listing.js';
import { removeStream } from './stream-removal.js';

/** A stream's objects written directly, no sender involved. */
interface FakeStream {
  state: StreamState;
  chunks: number;
  /** Bytes of each stored chunk object. */
  chunkBytes?: number;
  heartbeatAgoMs?: number;
  createdAgoMs?: number;
  receivers?: Array<{ id: string; state: ReceiverState; streamId?: string | null }>;
}

const CHUNK_SIZE = 64 * 1024;

async function writeFakeStream(store: ObjectStore, root: string, spec: FakeStream, now = Date.now()): Promise<Manifest> {
  const at = (ago: number) => new Date(now - ago).toISOString();
  const stored = spec.chunkBytes ?? 100;
  const rawBytes = spec.chunks * CHUNK_SIZE;
  const manifest: Manifest = {
    format: 'bucketpipe.manifest',
    version: 1,
    streamId: randomUUID(),
    createdAt: at(spec.createdAgoMs ?? 3_600_000),
    updatedAt: at(spec.heartbeatAgoMs ?? 1000),
    chunkSize: CHUNK_SIZE,
    codec: 'zstd',
    level: 1,
    state: spec.state,
    watermark: spec.chunks,
    rawBytes,
    storedBytes: spec.chunks * stored,
    sender: { id: 'snd', host: 'src-vm', pid: 1, startedAt: at(3_600_000), heartbeatAt: at(spec.heartbeatAgoMs ?? 1000) },
    ...(spec.state === 'complete' ? { final: { chunks: spec.chunks, rawBytes, digest: 'a'.repeat(64) } } : {}),
    ...(spec.state === 'aborted' ? { abortReason: 'source failed' } : {}),
  };
  for (let i = 0; i < spec.chunks; i++) await store.put(`${root}${chunkKey(i)}`, new Uint8Array(stored));
  await store.put(`${root}${MANIFEST_KEY}`, encodeManifest(manifest));
  for (const r of spec.receivers ?? []) {
    const cursor: ReceiverCursor = {
      format: 'bucketpipe.receiver',
      version: 1,
      receiverId: r.id,
      streamId: r.streamId === undefined ? manifest.streamId : r.streamId,
      host: `${r.id}-host`,
      pid: 2,
      startedAt: at(60_000),
      updatedAt: at(2000),
      position: r.state === 'done' ? spec.chunks : 0,
      rawBytes: r.state === 'done' ? rawBytes : 0,
      state: r.state,
    };
    await store.put(`${root}${receiverKey(r.id)}`, Buffer.from(JSON.stringify(cursor)));
  }
  return manifest;
}

const names = (streams: Array<{ path: string }>) => streams.map((s) => s.path);

describe('listStreams', () => {
  it('finds the root itself and nested streams, ordered by path, with their receivers', async () => {
    const store = new MemoryStore();
    await writeFakeStream(store, '', { state: 'complete', chunks: 3, receivers: [{ id: 'r1', state: 'done' }] });
    await writeFakeStream(store, 'db/pg/', {
      state: 'sending',
      chunks: 5,
      receivers: [
        { id: 'a', state: 'receiving' },
        { id: 'b', state: 'done' },
      ],
    });
    await writeFakeStream(store, 'db/pg/nested/', { state: 'aborted', chunks: 1 });
    await writeFakeStream(store, 'db-other/', { state: 'complete', chunks: 0 });
    await store.put('db/not-a-stream/chunks/000000000000', new Uint8Array(1));
    await store.put('loose/file', new Uint8Array(1));
    const streams = await listStreams(store);
    expect(names(streams)).toEqual(['', 'db-other', 'db/pg', 'db/pg/nested']);
    expect(streams.map((s) => s.manifest?.state)).toEqual(['complete', 'complete', 'sending', 'aborted']);
    expect(streams[2]?.receivers.map((r) => `${r.receiverId}:${r.state}`)).toEqual(['a:receiving', 'b:done']);
    expect(streams[0]?.receivers.map((r) => r.receiverId)).toEqual(['r1']);
    expect(streams[3]?.receivers).toEqual([]);
  });

  it('skips past every chunk key instead of listing it: requests do not grow with the chunks', async () => {
    const cost = async (chunks: number) => {
      const store = new FaultyStore(new MemoryStore());
      await writeFakeStream(store, 'a/', { state: 'complete', chunks, receivers: [{ id: 'r', state: 'done' }] });
      await writeFakeStream(store, 'b/', { state: 'complete', chunks });
      store.resetCounts();
      let yielded = 0;
      const counting = {
        ...store,
        description: store.description,
        get: store.get.bind(store),
        list: (prefix: string, options?: { startAfter?: string }) => {
          const inner = store.list(prefix, options);
          return (async function* () {
            for await (const item of inner) {
              yielded++;
              yield item;
            }
          })();
        },
      } as unknown as ObjectStore;
      expect(names(await listStreams(counting))).toEqual(['a', 'b']);
      return { lists: store.count('list'), gets: store.count('get'), yielded };
    };
    const small = await cost(2);
    const large = await cost(2000);
    expect(large).toEqual(small);
    // a/chunks/…0, a/manifest.json, a/receivers/r.json, b/chunks/…0, b/manifest.json
    expect(large).toEqual({ lists: 3, gets: 3, yielded: 5 });
  });

  it('reports a malformed manifest as a problem instead of failing the listing', async () => {
    const store = new MemoryStore();
    await writeFakeStream(store, 'good/', { state: 'complete', chunks: 1 });
    await store.put('bad/manifest.json', Buffer.from('{"format":"bucketpipe.manifest","version":1}'));
    const streams = await listStreams(store);
    expect(names(streams)).toEqual(['bad', 'good']);
    expect(streams[0]?.manifest).toBeNull();
    expect(streams[0]?.problem?.code).toBe('BP_MANIFEST_MALFORMED');
  });
});

describe('listLocation with groups', () => {
  it('lists a prefix holding the marker as one group and skips the streams under its members prefix: requests do not grow with them', async () => {
    const cost = async (members: number) => {
      const memory = new MemoryStore();
      await writeFakeStream(memory, 'a/', { state: 'complete', chunks: 2 });
      await memory.put('mig/series.json', new Uint8Array(1));
      await memory.put('mig/receivers/r.json', new Uint8Array(1));
      for (let seq = 0; seq < members; seq++) {
        await writeFakeStream(memory, `mig/streams/${String(seq).padStart(12, '0')}/`, { state: 'complete', chunks: 3 });
      }
      await writeFakeStream(memory, 'mig/streamsx/', { state: 'complete', chunks: 1 }); // beside the members, not under them
      await writeFakeStream(memory, 'z/', { state: 'sending', chunks: 1 });
      const store = new FaultyStore(memory);
      const listed = await listLocation(store, { groups: { marker: 'series.json', members: 'streams/' } });
      expect(listed.groups).toEqual(['mig']);
      expect(names(listed.streams)).toEqual(['a', 'mig/streamsx', 'z']);
      return { lists: store.count('list'), gets: store.count('get') };
    };
    expect(await cost(500)).toEqual(await cost(2));
    // Without groups the members are streams like any other.
    const plain = new MemoryStore();
    await plain.put('mig/series.json', new Uint8Array(1));
    await writeFakeStream(plain, 'mig/streams/000000000000/', { state: 'complete', chunks: 1 });
    expect(names(await listStreams(plain))).toEqual(['mig/streams/000000000000']);
  });
});

describe('removeStream', () => {
  const conflict = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StreamConflictError);
    return error as StreamConflictError;
  };

  it('deletes chunks, cursors and the manifest last, in batches, and leaves nested streams alone', async () => {
    const memory = new MemoryStore();
    const store = new FaultyStore(memory);
    await writeFakeStream(store, '', { state: 'complete', chunks: 2500, chunkBytes: 10, receivers: [{ id: 'r', state: 'done' }] });
    await writeFakeStream(store, 'nested/', { state: 'complete', chunks: 2 });
    const batches: number[] = [];
    let seenManifest = false;
    const inner = store.delete.bind(store);
    store.delete = async (keys) => {
      if (seenManifest) throw new Error('deleted after the manifest');
      seenManifest = keys.includes('manifest.json');
      if (seenManifest) expect(memory.keys().filter((k) => !k.startsWith('nested/'))).toEqual(['manifest.json']);
      batches.push(keys.length);
      return inner(keys);
    };
    const summary = await removeStream(store, { batchSize: 1000 });
    expect(summary.chunks).toEqual({ objects: 2500, bytes: 25_000 });
    expect(summary.receivers.objects).toBe(1);
    expect(summary.manifest.objects).toBe(1);
    expect(summary.total.objects).toBe(2502);
    expect(summary.overridden).toEqual([]);
    expect(Math.max(...batches)).toBe(1000);
    expect(batches.at(-1)).toBe(1);
    expect(seenManifest).toBe(true);
    expect(memory.keys()).toEqual(memory.keys('nested/'));
    expect(memory.keys('nested/').length).toBe(3);
  });

  it('refuses while a receiver has not finished, naming it, and deletes nothing; --force deletes', async () => {
    const store = new MemoryStore();
    await writeFakeStream(store, '', {
      state: 'complete',
      chunks: 3,
      receivers: [
        { id: 'done-one', state: 'done' },
        { id: 'slow', state: 'receiving' },
        { id: 'old', state: 'receiving', streamId: '00000000-0000-4000-8000-000000000000' },
      ],
    });
    const before = store.keys();
    const error = await conflict(removeStream(store));
    expect(error.code).toBe('BP_STREAM_IN_USE');
    expect(error.message).toMatch(/receiver slow on slow-host has not finished \(receiving, chunk 0\/3, updated 2s ago\).*--force/);
    expect(error.message).not.toMatch(/done-one|old/);
    expect(store.keys()).toEqual(before);
    const forced = await removeStream(store, { force: true });
    expect(forced.overridden).toHaveLength(1);
    expect(store.keys()).toEqual([]);
  });

  it('refuses a live sender, not a stale one', async () => {
    const live = new MemoryStore();
    await writeFakeStream(live, '', { state: 'sending', chunks: 2, heartbeatAgoMs: 5000 });
    expect((await conflict(removeStream(live))).message).toMatch(/sender snd on src-vm is still sending \(heartbeat 5s ago\)/);
    expect(live.has('manifest.json')).toBe(true);
    const stale = new MemoryStore();
    await writeFakeStream(stale, '', { state: 'sending', chunks: 2, heartbeatAgoMs: 120_000 });
    expect((await removeStream(stale)).total.objects).toBe(3);
    expect(stale.keys()).toEqual([]);
  });

  it('keeps the manifest when a delete fails, so that rm can run again', async () => {
    const store = new FaultyStore(new MemoryStore());
    await writeFakeStream(store, '', { state: 'complete', chunks: 5 });
    store.inject({ op: 'delete', key: /^chunks\//, nth: 1, fail: 'fatal' });
    await expect(removeStream(store, { batchSize: 2, concurrency: 1 })).rejects.toThrow(/injected fatal/);
    expect((store.inner as MemoryStore).has('manifest.json')).toBe(true);
    expect((await removeStream(store)).total.objects).toBe(6);
  });

  it('says so when there is no stream, and --dry-run deletes nothing', async () => {
    const store = new MemoryStore();
    await expect(removeStream(store)).rejects.toMatchObject({ code: 'BP_STREAM_NOT_FOUND', exitCode: 3 });
    await expect(removeStream(store, { force: true })).rejects.toMatchObject({ code: 'BP_STREAM_NOT_FOUND' });
    await writeFakeStream(store, '', { state: 'complete', chunks: 2 });
    const dry = await removeStream(store, { dryRun: true });
    expect(dry.total.objects).toBe(3);
    expect(store.keys().length).toBe(3);
  });

  it('needs --force for an unreadable manifest, and for leftovers without one', async () => {
    const store = new MemoryStore();
    await store.put('manifest.json', Buffer.from('not json'));
    await store.put('chunks/000000000000', new Uint8Array(4));
    expect((await conflict(removeStream(store))).message).toMatch(/malformed .*rm --force deletes it anyway/);
    await store.delete(['manifest.json']);
    await expect(removeStream(store)).rejects.toMatchObject({ code: 'BP_STREAM_NOT_FOUND' });
    const forced = await removeStream(store, { force: true });
    expect(forced.overridden).toEqual(['no manifest.json']);
    expect(store.keys()).toEqual([]);
  });
});
