import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SlabPool } from '@bucketpipe/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIRECT_IO_ALIGNMENT, openDirect, readAligned, writeAlignedPrefix } from './direct-io.js';
import { FsStore } from './fs-store.js';

let base: string;
let serial = 0;
const freshPath = () => join(base, `file-${++serial}`);

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'bucketpipe-direct-io-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A slab of a pool (page-aligned memory) holding `length` random bytes. */
function filledSlab(length: number, slabSize = 64 * 1024): { slab: Uint8Array; bytes: Buffer } {
  const slab = new SlabPool(slabSize, 1).tryAcquire();
  if (!slab) throw new Error('no slab');
  const bytes = randomBytes(length);
  slab.set(bytes);
  return { slab, bytes };
}

// This machine's file systems (ext4 and tmpfs on Linux 6.x) take O_DIRECT; where one refuses it,
// openDirect says so and nothing below can be checked there.
async function directHandle(path: string, purpose: 'read' | 'write') {
  const handle = await openDirect(path, purpose);
  if (!handle) throw new Error(`the file system of ${base} refuses O_DIRECT: run these tests on one that takes it`);
  return handle;
}

describe('O_DIRECT helpers', () => {
  it('write the whole blocks of a slab and leave the rest to the caller', async () => {
    const path = freshPath();
    const { slab, bytes } = filledSlab(3 * DIRECT_IO_ALIGNMENT + 123);
    const handle = await directHandle(path, 'write');
    try {
      expect(await writeAlignedPrefix(handle, slab.subarray(0, bytes.length))).toBe(3 * DIRECT_IO_ALIGNMENT);
    } finally {
      await handle.close();
    }
    expect(await readFile(path)).toEqual(bytes.subarray(0, 3 * DIRECT_IO_ALIGNMENT));
  });

  it('refuse O_DIRECT from memory that is not block-aligned without writing a byte', async () => {
    const path = freshPath();
    const { slab } = filledSlab(3 * DIRECT_IO_ALIGNMENT);
    const handle = await directHandle(path, 'write');
    try {
      expect(await writeAlignedPrefix(handle, slab.subarray(1, 1 + 2 * DIRECT_IO_ALIGNMENT))).toBe(0);
    } finally {
      await handle.close();
    }
    expect((await stat(path)).size).toBe(0);
  });

  it('refuse to create a file that exists', async () => {
    const path = freshPath();
    await writeFile(path, 'taken');
    await expect(openDirect(path, 'write')).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('read a partial last block into spare room, and stop at whole blocks without it', async () => {
    const path = freshPath();
    const bytes = randomBytes(2 * DIRECT_IO_ALIGNMENT + 500);
    await writeFile(path, bytes);
    const roomy = new SlabPool(64 * 1024, 1).tryAcquire() as Uint8Array;
    const tight = new SlabPool(bytes.length, 1).tryAcquire() as Uint8Array;
    const handle = await directHandle(path, 'read');
    try {
      expect(await readAligned(handle, roomy, 0, bytes.length)).toBe(bytes.length);
      expect(Buffer.from(roomy.subarray(0, bytes.length))).toEqual(bytes);
      expect(await readAligned(handle, tight, 0, bytes.length)).toBe(2 * DIRECT_IO_ALIGNMENT);
      expect(Buffer.from(tight.subarray(0, 2 * DIRECT_IO_ALIGNMENT))).toEqual(bytes.subarray(0, 2 * DIRECT_IO_ALIGNMENT));
      expect(await readAligned(handle, roomy, DIRECT_IO_ALIGNMENT, bytes.length - DIRECT_IO_ALIGNMENT)).toBe(DIRECT_IO_ALIGNMENT + 500);
      expect(Buffer.from(roomy.subarray(0, DIRECT_IO_ALIGNMENT + 500))).toEqual(bytes.subarray(DIRECT_IO_ALIGNMENT));
      expect(await readAligned(handle, roomy.subarray(1), 0, bytes.length)).toBe(0);
    } finally {
      await handle.close();
    }
  });
});

describe('FsStore with O_DIRECT', () => {
  for (const directIo of [true, false]) {
    it(`stores and reads back bodies of every alignment, byte for byte (directIo ${directIo})`, async () => {
      const store = await FsStore.open(freshPath(), { directIo });
      const { slab, bytes } = filledSlab(5 * DIRECT_IO_ALIGNMENT + 7);
      const cases: Array<[string, Uint8Array]> = [
        ['aligned', slab.subarray(0, bytes.length)],
        ['whole-blocks', slab.subarray(0, 4 * DIRECT_IO_ALIGNMENT)],
        ['shorter-than-a-block', slab.subarray(0, 100)],
        ['misaligned', slab.subarray(3, bytes.length)],
        ['empty', slab.subarray(0, 0)],
        ['not-a-slab', new Uint8Array(bytes)],
      ];
      for (const [key, body] of cases) {
        await store.put(key, body);
        expect(await readFile(join(store.root, key)), key).toEqual(Buffer.from(body));
        const roomy = new SlabPool(64 * 1024, 1).tryAcquire() as Uint8Array;
        const tight = new SlabPool(Math.max(1, body.length), 1).tryAcquire() as Uint8Array;
        for (const into of [roomy, tight, undefined]) {
          const got = await store.get(key, { into });
          expect(Buffer.from(got?.body ?? []), key).toEqual(Buffer.from(body));
          if (into) expect(got?.body.buffer, key).toBe(into.buffer);
        }
        const ranged = await store.get(key, { into: roomy, range: { start: DIRECT_IO_ALIGNMENT, end: body.length } });
        expect(Buffer.from(ranged?.body ?? []), key).toEqual(Buffer.from(body.subarray(DIRECT_IO_ALIGNMENT)));
      }
    });
  }

  it('keeps a stored object whole when it is replaced by a shorter one', async () => {
    const store = await FsStore.open(freshPath());
    const long = filledSlab(6 * DIRECT_IO_ALIGNMENT + 1);
    const short = filledSlab(DIRECT_IO_ALIGNMENT + 2);
    await store.put('k', long.slab.subarray(0, long.bytes.length));
    await store.put('k', short.slab.subarray(0, short.bytes.length));
    expect(await readFile(join(store.root, 'k'))).toEqual(short.bytes);
  });
});
