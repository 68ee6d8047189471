import { createHash, type Hash } from 'node:crypto';

/**
 * The end-to-end digest of a stream: SHA-256 over the raw SHA-256 of every chunk (32 bytes each),
 * in chunk order. It covers every raw byte in order as strongly as a SHA-256 of the whole stream,
 * but reuses the per-chunk digests the codec workers compute anyway, instead of hashing every byte
 * a second time on one thread (about 0.5 CPU-s per GB on each side, measured on the 2-core bench
 * machine; see docs/PERFORMANCE.md). Chunks may be added out of order.
 */
export class StreamDigest {
  #hash: Hash = createHash('sha256');
  #next = 0;
  #early = new Map<number, Uint8Array>();

  /** Chunks folded into the digest so far (all chunks below this index). */
  get chunks(): number {
    return this.#next;
  }

  add(index: number, rawSha256: Uint8Array): void {
    if (rawSha256.length !== 32) throw new RangeError(`chunk ${index}: a raw SHA-256 has 32 bytes, got ${rawSha256.length}`);
    if (index < this.#next || this.#early.has(index)) throw new Error(`bug: chunk ${index} added to the stream digest twice`);
    this.#early.set(index, Uint8Array.from(rawSha256));
    for (let next = this.#early.get(this.#next); next; next = this.#early.get(this.#next)) {
      this.#early.delete(this.#next);
      this.#hash.update(next);
      this.#next++;
    }
  }

  /** Hex digest; every chunk from 0 on must have been added, none missing. */
  digest(): string {
    if (this.#early.size > 0) throw new Error(`bug: stream digest finished with chunk ${this.#next} missing`);
    return this.#hash.digest('hex');
  }
}

/** The digest of a whole raw stream held in memory, cut into `chunkSize` chunks (tests, tools). */
export function streamDigestOf(bytes: Uint8Array, chunkSize: number): string {
  const digest = new StreamDigest();
  for (let index = 0, offset = 0; offset < bytes.length; index++, offset += chunkSize) {
    digest.add(
      index,
      createHash('sha256')
        .update(bytes.subarray(offset, offset + chunkSize))
        .digest(),
    );
  }
  return digest.digest();
}
