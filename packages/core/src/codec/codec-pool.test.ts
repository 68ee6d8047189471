import { partlyCompressibleBytes } from '@bucketpipe/store-testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { streamIdToBytes } from '../protocol/stream-id.js';
import { chunkObjectBound } from './codec.js';
import { CodecPool } from './codec-pool.js';
import { SlabPool } from './slab-pool.js';

const streamId = streamIdToBytes('0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b');
const CHUNK = 256 * 1024;

describe('CodecPool', () => {
  const codec = new CodecPool(2);
  afterAll(() => codec.close());

  it('shares slab-pool buffers with the workers: results are views of the caller’s own buffers, which stay usable', async () => {
    const raws = new SlabPool(CHUNK, 2);
    const objects = new SlabPool(chunkObjectBound(CHUNK), 2);
    const raw = raws.tryAcquire() as Uint8Array;
    raw.set(partlyCompressibleBytes(CHUNK, 5));
    const original = raw.slice();
    const out = objects.tryAcquire() as Uint8Array;

    const encoded = await codec.encode({ raw, rawLength: CHUNK, out, streamId, index: 3, level: 1 });
    expect(encoded.out.buffer).toBe(out.buffer);
    expect(encoded.raw.buffer).toBe(raw.buffer);
    expect(raw.length).toBe(CHUNK); // not detached
    expect(encoded.objectLength).toBeLessThan(CHUNK);

    const into = raws.tryAcquire() as Uint8Array;
    const object = out.subarray(0, encoded.objectLength);
    const decoded = await codec.decode({ object, key: 'chunks/3', raw: into, streamId, index: 3, rawLength: CHUNK });
    expect(decoded.raw.buffer).toBe(into.buffer);
    expect(decoded.object.buffer).toBe(out.buffer);
    expect(Buffer.compare(decoded.raw.subarray(0, decoded.rawLength), original)).toBe(0);
    expect(Buffer.from(decoded.rawDigest)).toEqual(Buffer.from(encoded.rawDigest));
    // Identity is what lets the pools take them back.
    raws.release(decoded.raw);
    raws.release(encoded.raw);
    objects.release(decoded.object);
    expect(raws.inUse + objects.inUse).toBe(0);
  });

  it('transfers buffers that are not shared: the caller’s views are detached, the result holds the bytes', async () => {
    const raw = new Uint8Array(partlyCompressibleBytes(CHUNK, 6));
    const original = raw.slice();
    const out = new Uint8Array(new ArrayBuffer(chunkObjectBound(CHUNK)));
    const encoded = await codec.encode({ raw, rawLength: CHUNK, out, streamId, index: 0, level: 1 });
    expect(raw.length).toBe(0);
    expect(out.length).toBe(0);
    expect(Buffer.compare(encoded.raw, original)).toBe(0);
    expect(encoded.out.length).toBe(chunkObjectBound(CHUNK));
  });
});
