import { chunkObjectBound } from './codec.js';

export const MIN_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 1024 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_BUFFER_BYTES = 512 * 1024 * 1024;
export const DEFAULT_LEVEL = 1;
export const MIN_LEVEL = -7;
export const MAX_LEVEL = 19;

/**
 * How many chunk-sized slabs a memory budget buys. The sender needs two per chunk while it is
 * compressed (raw in, object out) and one while it uploads; fewer than two cannot make progress.
 */
export function senderSlabs(bufferBytes: number, chunkSize: number): number {
  return Math.floor(bufferBytes / chunkObjectBound(chunkSize));
}

/** The smallest --buffer that works with `chunkSize`. */
export function minimumBuffer(chunkSize: number): number {
  return 2 * chunkObjectBound(chunkSize);
}

export function assertChunkSize(chunkSize: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(`chunk size must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes, got ${chunkSize}`);
  }
}
