import { IntegrityError } from '../errors.js';
import { CHUNKS_PREFIX, chunkKey, HEADER_FRAME_LENGTH, parseChunkKey } from '../protocol/chunk.js';
import { checkStoredHeader } from '../protocol/chunk-headers.js';
import { sameDigest } from '../protocol/encryption.js';
import { type RetryPolicy, withRetry } from '../store/retry.js';
import type { ObjectStore } from '../store/store.js';

/**
 * The chunks a dead sender stored at or beyond the manifest's watermark — uploads it had in flight
 * or finished but not yet announced — by index, with their object sizes. One listing.
 */
export async function chunksStoredFrom(
  store: ObjectStore,
  from: number,
  options: { retry?: RetryPolicy; signal?: AbortSignal },
): Promise<Map<number, number>> {
  return withRetry(
    async () => {
      const found = new Map<number, number>();
      const startAfter = from > 0 ? chunkKey(from - 1) : undefined;
      for await (const { key, size } of store.list(CHUNKS_PREFIX, { startAfter, signal: options.signal })) {
        const index = parseChunkKey(key);
        if (index !== null && index >= from) found.set(index, size);
      }
      return found;
    },
    { policy: options.retry, signal: options.signal },
  );
}

/**
 * Whether the stored chunk `index` (an object of `size` bytes) is the chunk this sender would
 * upload: a header of this stream and index whose raw length and raw digest are the source's.
 * Anything else — absent, damaged, of another stream — is not reused but written over.
 */
export async function storedChunkMatches(
  store: ObjectStore,
  chunk: { index: number; size: number; rawLength: number; rawDigest: Uint8Array },
  stream: { streamId: Uint8Array; encrypted: boolean },
  options: { retry?: RetryPolicy; signal?: AbortSignal },
): Promise<boolean> {
  const key = chunkKey(chunk.index);
  const object = await withRetry(() => store.get(key, { range: { start: 0, end: HEADER_FRAME_LENGTH }, signal: options.signal }), {
    policy: options.retry,
    signal: options.signal,
  });
  if (!object) return false;
  try {
    const header = checkStoredHeader(object.body, key, chunk.index, stream.streamId, notReusable, stream.encrypted);
    return (
      header.rawLength === chunk.rawLength &&
      sameDigest(header.rawDigest, chunk.rawDigest) &&
      HEADER_FRAME_LENGTH + header.payloadLength === chunk.size
    );
  } catch (error) {
    if (error instanceof IntegrityError) return false;
    throw error;
  }
}

const notReusable = (key: string, code: string, what: string) => new IntegrityError(code, `${key} ${what}`);
