import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IterableChunkReader } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { StreamEndCheck } from './stream-end-check.js';
import { RECORD_BYTES, readBegin } from './stream-records.js';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../fixtures', name));
const streams = { full: fixture('full.zstream'), incremental: fixture('incremental.zstream'), replicated: fixture('replicated.zstream') };

/** Reads `bytes` through the check in chunks of `chunkSize`, the way the sender does; the bytes it gave. */
async function readThrough(bytes: Uint8Array, chunkSize: number, required = false): Promise<number> {
  // Pieces of odd sizes, as a pipe delivers them.
  async function* pieces() {
    for (let at = 0; at < bytes.length; at += 1000) yield bytes.subarray(at, at + 1000);
  }
  const check = new StreamEndCheck(new IterableChunkReader(pieces()), { description: 'the source', required });
  const buffer = new Uint8Array(chunkSize);
  let total = 0;
  for (;;) {
    const got = await check.fill(buffer, chunkSize);
    total += got;
    if (got < chunkSize) return total;
  }
}

/** A BEGIN and an END record of a stream of `guid`, in big-endian order (a SPARC or POWER sender). */
function bigEndianStream(guid: bigint, body: number): Uint8Array {
  const stream = new Uint8Array(RECORD_BYTES * 2 + body);
  const view = new DataView(stream.buffer);
  view.setUint32(0, 0, false);
  view.setBigUint64(8, 0x2f5bacbacn, false);
  view.setBigUint64(16, 1n, false);
  view.setBigUint64(40, guid, false);
  stream.set(Buffer.from('pool/be@s1'), 56);
  const end = stream.length - RECORD_BYTES;
  view.setUint32(end, 5, false);
  view.setBigUint64(end + 40, guid, false);
  return stream;
}

describe('StreamEndCheck', () => {
  it('reads real zfs send streams of zfs-fuse whole, whatever the chunk size', async () => {
    for (const [name, bytes] of Object.entries(streams)) {
      for (const chunkSize of [512, 1024, 4096, bytes.length, bytes.length + 1]) {
        expect(await readThrough(bytes, chunkSize), `${name} in chunks of ${chunkSize}`).toBe(bytes.length);
      }
    }
    expect(readBegin(streams.replicated)).toMatchObject({ compound: true, toName: 'zt/ds@b' });
    expect(readBegin(streams.full)).toMatchObject({ compound: false, toName: 'zt/ds@a', littleEndian: true });
  });

  it('fails a stream cut short anywhere: mid-record, on a record boundary, just before the END, at a chunk boundary', async () => {
    for (const [name, bytes] of Object.entries(streams)) {
      const cuts = new Set([
        RECORD_BYTES,
        RECORD_BYTES + 1,
        1000,
        4096,
        bytes.length - RECORD_BYTES,
        bytes.length - RECORD_BYTES - 1,
        bytes.length - 1,
      ]);
      for (let at = RECORD_BYTES; at < bytes.length; at += 97) cuts.add(at);
      for (const cut of cuts) {
        const chunkSize = cut === 4096 ? 1024 : 512; // 4096: the cut falls exactly on a chunk boundary
        await expect(readThrough(bytes.subarray(0, cut), chunkSize), `${name} cut at ${cut}`).rejects.toMatchObject({
          code: 'BP_SOURCE_TRUNCATED',
          message: expect.stringMatching(
            new RegExp(`^the source ended after ${cut} bytes without the END record of the ZFS send stream of zt/ds@[ab]`),
          ),
        });
      }
    }
  });

  it('fails a compound (-R) stream that ends with the END of its last snapshot but not the final one', async () => {
    const bytes = streams.replicated;
    await expect(readThrough(bytes.subarray(0, bytes.length - RECORD_BYTES), 512)).rejects.toMatchObject({ code: 'BP_SOURCE_TRUNCATED' });
  });

  it('reads a big-endian stream in its own byte order', async () => {
    const stream = bigEndianStream(0x1234_5678_9abc_def0n, 5000);
    expect(readBegin(stream)).toMatchObject({ littleEndian: false, toGuid: String(0x1234_5678_9abc_def0n), toName: 'pool/be@s1' });
    expect(await readThrough(stream, 1024)).toBe(stream.length);
    await expect(readThrough(stream.subarray(0, stream.length - 8), 1024)).rejects.toMatchObject({ code: 'BP_SOURCE_TRUNCATED' });
    // An END of another stream (other GUID) is not this stream's end.
    const other = bigEndianStream(0x1234_5678_9abc_def0n, 5000);
    new DataView(other.buffer).setBigUint64(other.length - RECORD_BYTES + 40, 7n, false);
    await expect(readThrough(other, 1024)).rejects.toMatchObject({ code: 'BP_SOURCE_TRUNCATED' });
  });

  it('lets other bytes through, unless a ZFS stream is required', async () => {
    const text = Buffer.from('not a zfs stream '.repeat(100));
    expect(await readThrough(text, 512)).toBe(text.length);
    expect(await readThrough(new Uint8Array(0), 512)).toBe(0);
    await expect(readThrough(text, 512, true)).rejects.toMatchObject({
      code: 'BP_SOURCE_NOT_ZFS',
      message: /the source is not a ZFS send stream/,
    });
    await expect(readThrough(new Uint8Array(0), 512, true)).rejects.toMatchObject({
      code: 'BP_SOURCE_NOT_ZFS',
      message: /gave no bytes at all/,
    });
    expect(await readThrough(streams.full, 512, true)).toBe(streams.full.length);
  });
});
