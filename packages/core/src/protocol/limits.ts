export const MIN_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 1024 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_BUFFER_BYTES = 512 * 1024 * 1024;
export const DEFAULT_LEVEL = 1;
export const MIN_LEVEL = -7;
export const MAX_LEVEL = 19;

export function isValidChunkSize(chunkSize: number): boolean {
  return Number.isSafeInteger(chunkSize) && chunkSize >= MIN_CHUNK_SIZE && chunkSize <= MAX_CHUNK_SIZE;
}

export function assertChunkSize(chunkSize: number): void {
  if (!isValidChunkSize(chunkSize)) {
    throw new RangeError(`chunk size must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes, got ${chunkSize}`);
  }
}
